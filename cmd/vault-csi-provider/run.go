package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	"github.com/okevault/vault-csi-provider/internal/auth"
	"github.com/okevault/vault-csi-provider/internal/budget"
	"github.com/okevault/vault-csi-provider/internal/cache"
	"github.com/okevault/vault-csi-provider/internal/config"
	"github.com/okevault/vault-csi-provider/internal/leases"
	"github.com/okevault/vault-csi-provider/internal/logging"
	"github.com/okevault/vault-csi-provider/internal/metrics"
	"github.com/okevault/vault-csi-provider/internal/objectversion"
	"github.com/okevault/vault-csi-provider/internal/podwatch"
	"github.com/okevault/vault-csi-provider/internal/vault"
	"github.com/okevault/vault-csi-provider/provider"
)

// maxVaultClients bounds the base Vault clients (one per address and TLS
// setting); SecretProviderClass authors choose these values.
const maxVaultClients = 64

// ignoredEnv are variables the Vault client package would read as an
// identity; internal/vault overrides them, and the operator is told.
var ignoredEnv = []string{"VAULT_TOKEN", "VAULT_AGENT_ADDR"}

// saNamespaceFile is where a pod finds its own namespace.
const saNamespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	f, err := parseFlags(args, getenv, stderr)
	if err != nil {
		return err
	}
	if f.printVersion {
		return printVersion(stdout, f.versionOutput, currentVersion())
	}
	logger, err := logging.New(stderr, f.logFormat, f.logLevel)
	if err != nil {
		return err
	}
	// Where no logger reaches (a panic in a call shared by mounts), slog's
	// default is used: it must be this one.
	slog.SetDefault(logger)
	if f.debug {
		logger.Warn("-debug is deprecated: use -log-level=debug", "logLevel", f.logLevel)
	}
	if getenv("GOMEMLIMIT") == "" {
		// What the bounds let live (mounts, parses, caches, the process's
		// own heap) stays under this soft limit, so the garbage collector
		// keeps the heap near it instead of at twice the live bytes.
		debug.SetMemoryLimit(f.maxTotalBytes + f.maxMountBytes + f.readCacheBytes + f.dynamicCacheBytes + 32<<20)
	}
	for _, k := range ignoredEnv {
		if getenv(k) != "" {
			// The name only: the value may be a token.
			logger.Warn("ignoring "+k+": every mount logs in to Vault with its pod's own service-account token", "variable", k)
		}
	}

	opts := provider.Options{
		Defaults:        f.defaults,
		Logger:          logger,
		Version:         version,
		MountTimeout:    f.mountTimeout,
		LoginPerPod:     f.loginPerPod,
		ReadConcurrency: f.readConcurrency,
		MaxResponseSize: f.maxResponseSize,
		ShareJWTLogins:  f.shareJWTLogins,
		Budget:          budget.NewPool(f.maxTotalBytes),
		MaxMountBytes:   f.maxMountBytes,
	}
	if opts.Clients, err = vault.NewClients(maxVaultClients, f.defaults.AllowedAddresses); err != nil {
		return err
	}
	if opts.Logins, err = cache.New(f.cacheSize); err != nil {
		return err
	}
	if opts.Reads, err = cache.NewReads(f.readCacheSize, f.readCacheBytes, f.readCacheTTL); err != nil {
		return err
	}
	if f.dynamicScope != leases.ScopeOff {
		if opts.Leases, err = leases.New(f.dynamicCacheSize, f.dynamicCacheBytes, logger); err != nil {
			return err
		}
		opts.LeaseScope = f.dynamicScope
	}
	var keys *objectversion.Keys // run below: the HMAC key follows its Secret
	kube, err := kubeClient(f.kubeconfig)
	switch {
	case err != nil && f.tokenRequestFallback:
		return fmt.Errorf("-token-request-fallback needs a Kubernetes client: %w", err)
	case err != nil && f.podAttributes != nil:
		return fmt.Errorf("-allowed-pod-attributes needs a Kubernetes client to read pods: %w", err)
	case err != nil && f.revokeOnPodDelete:
		return fmt.Errorf("-revoke-on-pod-delete needs a Kubernetes client: %w", err)
	case err != nil:
		logger.Warn("no Kubernetes client: object versions will be empty", "error", err.Error())
	default:
		ns := f.hmacSecretNamespace
		if ns == "" {
			b, rerr := os.ReadFile(saNamespaceFile)
			ns = strings.TrimSpace(string(b))
			if rerr != nil || ns == "" {
				return fmt.Errorf("no namespace for the HMAC secret: set -hmac-secret-namespace or $POD_NAMESPACE")
			}
		}
		keys = objectversion.NewKeys(kube, ns, f.hmacSecretName)
		opts.Keys = keys
		if f.tokenRequestFallback {
			opts.Tokens = &auth.TokenRequester{Client: kube}
		}
		if f.podAttributes != nil {
			opts.PodAttributes = &provider.PodAttributes{Pods: kube, Allowed: f.podAttributes}
		}
	}

	if f.metricsAddr != "" {
		opts.Metrics = metrics.New(version, opts.Logins)
		opts.Metrics.WatchLeases(opts.Leases)
	}

	lis, err := listen(ctx, f.endpoint)
	if err != nil {
		return err
	}
	defer lis.removeIfOwn()

	srv := grpc.NewServer(grpc.MaxRecvMsgSize(provider.MaxRequestSize), grpc.ChainUnaryInterceptor(provider.RecoverUnary(logger)))
	v1alpha1.RegisterCSIDriverProviderServer(srv, provider.New(opts))
	grpcHealth := health.NewServer()
	healthpb.RegisterHealthServer(srv, grpcHealth)
	var serving atomic.Bool

	g, ctx := errgroup.WithContext(ctx)
	if keys != nil {
		g.Go(func() error { return keys.Run(ctx) })
	}
	if opts.Leases != nil {
		g.Go(func() error {
			opts.Leases.Run(ctx) // renews remembered leases until shutdown
			return nil
		})
	}
	if f.revokeOnPodDelete {
		g.Go(func() error {
			stop, err := podwatch.Start(ctx, kube, f.nodeName, func(ctx context.Context, uid string) {
				if n := opts.Leases.RevokePod(ctx, uid); n > 0 {
					logger.Info("revoked a deleted pod's dynamic secrets", "podUID", uid, "leases", n)
				}
			})
			if err != nil {
				if ctx.Err() != nil {
					return nil // shut down before the pods were listed
				}
				return fmt.Errorf("-revoke-on-pod-delete: %w", err)
			}
			<-ctx.Done()
			stop()
			return nil
		})
	}
	g.Go(func() error {
		serving.Store(true)
		logger.Info("serving", "endpoint", f.endpoint, "version", version)
		return srv.Serve(lis)
	})
	g.Go(func() error {
		<-ctx.Done()
		serving.Store(false)
		grpcHealth.Shutdown()
		logger.Info("shutting down", "drain", f.shutdownTimeout.String())
		stopped := make(chan struct{})
		go func() { srv.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(f.shutdownTimeout):
			logger.Warn("drain timed out: cancelling in-flight mounts")
			srv.Stop()
		}
		return nil
	})
	ready := func(ctx context.Context) error {
		if !serving.Load() {
			return errors.New("socket not listening")
		}
		if f.readyRequiresVault {
			return vaultHealth(ctx, opts.Clients, f.defaults)
		}
		return nil
	}
	servers := map[string]func() http.Handler{
		f.healthAddr:  func() http.Handler { return healthMux(ready) },
		f.metricsAddr: func() http.Handler { return metricsMux(opts.Metrics) },
		f.pprofAddr:   pprofMux,
	}
	for addr, handler := range servers {
		if addr != "" {
			serveHTTP(ctx, g, addr, handler())
		}
	}
	err = g.Wait()
	logger.Info("stopped")
	return err
}

// listen opens the socket with mode 0600: only root on the node (the driver)
// may call a provider that hands out secrets. A stale socket from a previous
// run is removed; any other file in the way is an error.
func listen(ctx context.Context, path string) (*ownedListener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("endpoint %s exists and is not a socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	}
	// The umask makes the socket 0600 from the start, with no window in
	// which it is wider; nothing else creates files at this point.
	old := syscall.Umask(0o177)
	lis, err := (&net.ListenConfig{}).Listen(ctx, "unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	// During a rolling update with surge, the next provider on the node
	// replaces this socket before this one stops: closing must not unlink
	// the path, which may be the successor's by then (removeOwnSocket).
	lis.(*net.UnixListener).SetUnlinkOnClose(false)
	fi, err := os.Stat(path)
	if err != nil {
		_ = lis.Close()
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	return &ownedListener{Listener: lis, path: path, file: fi}, nil
}

// ownedListener remembers which file its socket is, so shutdown removes the
// path only while it is still this provider's.
type ownedListener struct {
	net.Listener
	path string
	file fs.FileInfo
}

// removeIfOwn removes the socket file if it is still the one this listener
// created; a successor's socket at the same path stays.
func (l *ownedListener) removeIfOwn() {
	if fi, err := os.Stat(l.path); err == nil && os.SameFile(fi, l.file) {
		_ = os.Remove(l.path)
	}
}

// serveHTTP runs an HTTP server on addr in g until ctx ends.
func serveHTTP(ctx context.Context, g *errgroup.Group, addr string, h http.Handler) {
	hs := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 5 * time.Second}
	g.Go(func() error {
		if err := hs.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http server on %s: %w", addr, err)
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		return hs.Shutdown(sctx)
	})
}

// healthMux serves /health/ready (vault-helm's probe path) and /healthz
// (liveness: the process answers).
func healthMux(ready func(context.Context) error) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health/ready", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		if err := ready(ctx); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	return mux
}

// vaultHealth checks the default Vault answers sys/health as initialised
// and unsealed (a standby counts: it forwards).
func vaultHealth(ctx context.Context, clients *vault.Clients, d config.Defaults) error {
	addr := d.VaultAddress
	if addr == "" {
		addr = config.DefaultVaultAddress
	}
	c, err := clients.Client(ctx, addr, d.VaultNamespace, d.TLS)
	if err != nil {
		return err
	}
	h, err := c.Sys().HealthWithContext(ctx)
	switch {
	case err != nil:
		return fmt.Errorf("vault %s: unreachable", addr)
	case !h.Initialized:
		return fmt.Errorf("vault %s: not initialized", addr)
	case h.Sealed:
		return fmt.Errorf("vault %s: sealed", addr)
	}
	return nil
}

func metricsMux(m *metrics.Metrics) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	return mux
}

func pprofMux() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

func kubeClient(kubeconfig string) (kubernetes.Interface, error) {
	var cfg *rest.Config
	var err error
	if kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	} else {
		cfg, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}
