package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
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
	"github.com/okevault/vault-csi-provider/internal/cache"
	"github.com/okevault/vault-csi-provider/internal/logging"
	"github.com/okevault/vault-csi-provider/internal/objectversion"
	"github.com/okevault/vault-csi-provider/internal/vault"
	"github.com/okevault/vault-csi-provider/provider"
)

// maxVaultClients bounds the base Vault clients (one per address and TLS
// setting); SecretProviderClass authors choose these values.
const maxVaultClients = 64

// saNamespaceFile is where a pod finds its own namespace.
const saNamespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	f, err := parseFlags(args, getenv, stderr)
	if err != nil {
		return err
	}
	if f.printVersion {
		_, err := fmt.Fprintf(stdout, "%s %s\n", provider.RuntimeName, version)
		return err
	}
	logger, err := logging.New(stderr, f.logFormat, f.logLevel)
	if err != nil {
		return err
	}

	opts := provider.Options{
		Defaults:        f.defaults,
		Logger:          logger,
		Version:         version,
		MountTimeout:    f.mountTimeout,
		ReadConcurrency: f.readConcurrency,
	}
	if opts.Clients, err = vault.NewClients(maxVaultClients); err != nil {
		return err
	}
	if opts.Logins, err = cache.New(f.cacheSize); err != nil {
		return err
	}
	kube, err := kubeClient(f.kubeconfig)
	switch {
	case err != nil && f.tokenRequestFallback:
		return fmt.Errorf("-token-request-fallback needs a Kubernetes client: %w", err)
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
		opts.Keys = objectversion.NewKeys(kube, ns, f.hmacSecretName)
		if f.tokenRequestFallback {
			opts.Tokens = &auth.TokenRequester{Client: kube}
		}
	}

	lis, err := listen(f.endpoint)
	if err != nil {
		return err
	}
	defer os.Remove(f.endpoint)

	srv := grpc.NewServer()
	v1alpha1.RegisterCSIDriverProviderServer(srv, provider.New(opts))
	grpcHealth := health.NewServer()
	healthpb.RegisterHealthServer(srv, grpcHealth)
	var ready atomic.Bool

	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		ready.Store(true)
		logger.Info("serving", "endpoint", f.endpoint, "version", version)
		return srv.Serve(lis)
	})
	g.Go(func() error {
		<-ctx.Done()
		ready.Store(false)
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
	if f.healthAddr != "" {
		hs := &http.Server{Addr: f.healthAddr, Handler: healthMux(&ready), ReadHeaderTimeout: 5 * time.Second}
		g.Go(func() error {
			if err := hs.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("health server: %w", err)
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
	err = g.Wait()
	logger.Info("stopped")
	return err
}

// listen opens the socket with mode 0600: only root on the node (the driver)
// may call a provider that hands out secrets. A stale socket from a previous
// run is removed; any other file in the way is an error.
func listen(path string) (net.Listener, error) {
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
	lis, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	return lis, nil
}

// healthMux serves /health/ready (vault-helm's probe path; ready once the
// socket listens) and /healthz (liveness: the process answers).
func healthMux(ready *atomic.Bool) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health/ready", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
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
