// Command vault-csi-provider is the Vault provider for the Secrets Store CSI
// Driver: a gRPC server on a unix socket that the driver calls on each pod
// mount. Its flags are those of hashicorp/vault-csi-provider, plus a few.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/signal"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/okevault/vault-csi-provider/internal/config"
	"github.com/okevault/vault-csi-provider/internal/leases"
	"github.com/okevault/vault-csi-provider/provider"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

// providerName is the driver's rule for provider names (and socket files).
var providerName = regexp.MustCompile(`^[a-zA-Z0-9_-]{0,30}$`)

// flags are the command line, after the environment has filled what the
// flags leave unset (environment < flags < SecretProviderClass parameters).
type flags struct {
	endpoint, providerDir, providerName string
	logLevel, logFormat                 string
	healthAddr, metricsAddr, pprofAddr  string
	readyRequiresVault                  bool
	hmacSecretName, hmacSecretNamespace string
	kubeconfig                          string
	cacheSize, readCacheSize            int
	readCacheTTL                        time.Duration
	tokenRequestFallback, loginPerPod   bool
	mountTimeout, shutdownTimeout       time.Duration
	readConcurrency, maxResponseSize    int
	dynamicScope                        leases.Scope
	dynamicCacheSize                    int
	revokeOnPodDelete                   bool
	nodeName                            string
	printVersion                        bool
	// versionOutput is -output: the format -version prints in.
	versionOutput string
	// debug is the peer's deprecated -debug; run warns when it is set.
	debug bool
	// podAttributes are the keys pods may set through volumeAttributes;
	// nil (the flag unset) lets pods set any, as the driver does.
	podAttributes []string
	// The text of flags parseFlags turns into the fields above.
	podAttributesFlag, dynamicScopeFlag, allowedAddressesFlag string
	allowedTLSDirectoriesFlag                                 string
	defaults                                                  config.Defaults
	// Bounds on the bytes held (see SECURITY.md, "Bounds").
	maxMountBytes, maxTotalBytes      int64
	readCacheBytes, dynamicCacheBytes int64
	shareJWTLogins                    bool
}

// newFlagSet declares every flag into f: the peer's (same names, defaults
// and meaning) and this provider's own.
func newFlagSet(f *flags, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("vault-csi-provider", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.endpoint, "endpoint", "/tmp/vault.sock", "path of the unix socket the driver dials (unix:// prefix optional)")
	fs.StringVar(&f.providerDir, "provider-dir", "", "providers directory; the socket is <dir>/<provider-name>.sock (instead of -endpoint)")
	fs.StringVar(&f.providerName, "provider-name", "vault", "provider name, as SecretProviderClass spec.provider names it")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: trace, debug, info, warn, error or off")
	fs.BoolVar(&f.debug, "debug", false, "deprecated: use -log-level=debug (sets the debug level unless -log-level is given)")
	fs.StringVar(&f.logFormat, "log-format", "json", "log format: json or text")
	fs.BoolVar(&f.printVersion, "version", false, "print the version information and exit")
	fs.StringVar(&f.versionOutput, "output", "json", "format of -version: yaml, json or json-pretty")
	fs.StringVar(&f.healthAddr, "health-addr", ":8080", "address of the health endpoints /health/ready and /healthz (empty: off)")
	fs.StringVar(&f.metricsAddr, "metrics-addr", "", "address of the Prometheus /metrics endpoint (empty: off)")
	fs.StringVar(&f.pprofAddr, "pprof-addr", "", "loopback address of the Go profiler /debug/pprof/ (empty: off)")
	fs.BoolVar(&f.readyRequiresVault, "ready-requires-vault", false, "/health/ready also requires Vault's sys/health at -vault-addr to answer")
	fs.StringVar(&f.hmacSecretName, "hmac-secret-name", "vault-csi-provider-hmac-key", "Kubernetes Secret holding the HMAC key for object versions")
	fs.StringVar(&f.hmacSecretNamespace, "hmac-secret-namespace", "", "namespace of the HMAC Secret (default: $POD_NAMESPACE, else the provider's own namespace)")
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig for running outside a cluster (default: $KUBECONFIG, else in-cluster)")
	fs.IntVar(&f.cacheSize, "cache-size", 1000, "how many Vault logins (identities) to keep")
	fs.BoolVar(&f.tokenRequestFallback, "token-request-fallback", false, "create pod tokens with the TokenRequest API when the driver sends none (needs serviceaccounts/token create)")
	fs.DurationVar(&f.readCacheTTL, "read-cache-ttl", 0, "share a read's response with later mounts of the same identity for this long (0: share only reads in flight at the same moment)")
	fs.IntVar(&f.readCacheSize, "read-cache-size", 1000, "how many read responses -read-cache-ttl keeps")
	fs.BoolVar(&f.loginPerPod, "login-per-pod", false, "one Vault login per pod instead of one per service account (pods of one service account get the same Vault policies either way)")
	fs.DurationVar(&f.mountTimeout, "mount-timeout", 30*time.Second, "deadline of one Mount, inside kubelet's")
	fs.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 10*time.Second, "how long in-flight mounts may finish on SIGTERM")
	fs.IntVar(&f.readConcurrency, "read-concurrency", 8, "Vault requests one Mount may have in flight")
	fs.StringVar(&f.podAttributesFlag, "allowed-pod-attributes", "", "comma-separated parameters pods may set through their volume's volumeAttributes (the driver lets them override the SecretProviderClass); when set, a mount whose pod sets any other is refused. Needs get on pods")
	fs.IntVar(&f.maxResponseSize, "max-response-size", provider.DefaultMaxResponseSize, "largest mount response in bytes: the driver's --max-call-recv-msg-size; a mount whose files exceed it fails with ResourceExhausted")
	fs.StringVar(&f.dynamicScopeFlag, "dynamic-secrets-scope", "pod", "who shares a dynamic secret (a response with a lease) across rotation polls: pod, identity (the pods of one service account and role) or off (issue on every mount)")
	fs.IntVar(&f.dynamicCacheSize, "dynamic-secrets-cache-size", 10000, "how many dynamic secrets (pod or identity, and request) to remember")
	fs.BoolVar(&f.revokeOnPodDelete, "revoke-on-pod-delete", false, "revoke a pod's dynamic secrets when the pod is deleted (needs -dynamic-secrets-scope=pod, -node-name, pods list/watch, and sys/leases/revoke in the roles' policies)")
	fs.StringVar(&f.nodeName, "node-name", "", "this node's name, whose pods -revoke-on-pod-delete watches (default: $NODE_NAME)")
	fs.Int64Var(&f.maxMountBytes, "max-mount-bytes", 16<<20, "bytes one mount may hold: Vault's answers as they arrive, their decoded form and the files made; over it the mount fails with ResourceExhausted")
	fs.Int64Var(&f.maxTotalBytes, "max-total-bytes", 32<<20, "bytes all mounts in flight may hold together; a mount over it fails with ResourceExhausted")
	fs.Int64Var(&f.readCacheBytes, "read-cache-bytes", 16<<20, "bytes the read cache (-read-cache-ttl) may hold")
	fs.Int64Var(&f.dynamicCacheBytes, "dynamic-secrets-cache-bytes", 16<<20, "bytes the remembered dynamic secrets may hold")
	fs.BoolVar(&f.shareJWTLogins, "share-jwt-logins", false, "let the pods of one service account share a vaultAuthType jwt login, as under Kubernetes auth; only safe when no JWT role binds claims finer than the service account (bound_claims, claim_mappings on pod or node)")
	fs.StringVar(&f.allowedAddressesFlag, "allowed-vault-addresses", "", "comma-separated Vault addresses mounts may name and redirects may lead to; scheme, host and port must match exactly (empty: any address; redirects only to the same scheme and host)")
	fs.StringVar(&f.allowedTLSDirectoriesFlag, "allowed-tls-directories", "", "comma-separated directories whose files a SecretProviderClass may name in vaultCACertPath, vaultCADirectory, vaultTLSClientCertPath and vaultTLSClientKeyPath, besides the -vault-tls-* files (empty: only those)")
	d := &f.defaults
	fs.StringVar(&d.VaultAddress, "vault-addr", "", "default Vault address (default: $VAULT_ADDR, else https://127.0.0.1:8200)")
	// The peer's default, shown as such; left unset, the mount follows
	// vaultAuthType (jwt for jwt), see parseFlags.
	fs.StringVar(&d.AuthMountPath, "vault-mount", string(config.AuthKubernetes), "default Vault auth mount path (unset: kubernetes, or jwt for vaultAuthType jwt)")
	fs.StringVar(&d.VaultNamespace, "vault-namespace", "", "default Vault Enterprise namespace (default: $VAULT_NAMESPACE)")
	fs.StringVar(&d.TLS.CACert, "vault-tls-ca-cert", "", "PEM CA certificate file for Vault (default: $VAULT_CACERT)")
	fs.StringVar(&d.TLS.CADirectory, "vault-tls-ca-directory", "", "directory of PEM CA certificates for Vault (default: $VAULT_CAPATH)")
	fs.StringVar(&d.TLS.ServerName, "vault-tls-server-name", "", "SNI name for Vault (default: $VAULT_TLS_SERVER_NAME)")
	fs.StringVar(&d.TLS.ClientCert, "vault-tls-client-cert", "", "PEM client certificate for Vault (default: $VAULT_CLIENT_CERT)")
	fs.StringVar(&d.TLS.ClientKey, "vault-tls-client-key", "", "PEM client key for Vault (default: $VAULT_CLIENT_KEY)")
	fs.BoolVar(&d.TLS.SkipVerify, "vault-tls-skip-verify", false, "skip Vault TLS verification: for labs only (default: $VAULT_SKIP_VERIFY)")
	return fs
}

func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (*flags, error) {
	f := &flags{}
	fs := newFlagSet(f, stderr)
	d := &f.defaults
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	if !set["vault-mount"] {
		d.AuthMountPath = ""
	}
	if f.debug && !set["log-level"] {
		f.logLevel = "debug" // the peer's meaning: an explicit -log-level wins
	}

	for _, e := range []struct {
		flag string
		dst  *string
		env  string
	}{
		{"vault-addr", &d.VaultAddress, "VAULT_ADDR"},
		{"vault-namespace", &d.VaultNamespace, "VAULT_NAMESPACE"},
		{"vault-tls-ca-cert", &d.TLS.CACert, "VAULT_CACERT"},
		{"vault-tls-ca-directory", &d.TLS.CADirectory, "VAULT_CAPATH"},
		{"vault-tls-server-name", &d.TLS.ServerName, "VAULT_TLS_SERVER_NAME"},
		{"vault-tls-client-cert", &d.TLS.ClientCert, "VAULT_CLIENT_CERT"},
		{"vault-tls-client-key", &d.TLS.ClientKey, "VAULT_CLIENT_KEY"},
		{"hmac-secret-namespace", &f.hmacSecretNamespace, "POD_NAMESPACE"},
		{"kubeconfig", &f.kubeconfig, "KUBECONFIG"},
		{"node-name", &f.nodeName, "NODE_NAME"},
	} {
		if !set[e.flag] {
			*e.dst = getenv(e.env)
		}
	}
	var err error
	if v := getenv("VAULT_SKIP_VERIFY"); v != "" && !set["vault-tls-skip-verify"] {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, fmt.Errorf("VAULT_SKIP_VERIFY=%q is not a bool", v)
		}
		d.TLS.SkipVerify = b
	}

	if d.AllowedAddresses, err = config.ParseAddresses(f.allowedAddressesFlag); err != nil {
		return nil, fmt.Errorf("-allowed-vault-addresses: %w", err)
	}
	if d.AllowedTLSDirectories, err = config.ParseDirectories(f.allowedTLSDirectoriesFlag); err != nil {
		return nil, fmt.Errorf("-allowed-tls-directories: %w", err)
	}
	// Mounts that name no address use -vault-addr, which must be allowed
	// too; a bad address is reported by the mounts that use it.
	if u, perr := url.Parse(d.VaultAddress); d.VaultAddress != "" && perr == nil && !d.AllowedAddresses.Allows(u) {
		return nil, errors.New("-vault-addr is not in -allowed-vault-addresses")
	}
	if !providerName.MatchString(f.providerName) || f.providerName == "" {
		return nil, fmt.Errorf("-provider-name %q: must match %s", f.providerName, providerName)
	}
	switch {
	case set["endpoint"] && set["provider-dir"]:
		return nil, errors.New("-endpoint and -provider-dir are alternatives: set one")
	case f.providerDir != "":
		f.endpoint = strings.TrimSuffix(f.providerDir, "/") + "/" + f.providerName + ".sock"
	default:
		f.endpoint = strings.TrimPrefix(f.endpoint, "unix://")
	}
	if f.endpoint == "" {
		return nil, errors.New("-endpoint: empty socket path")
	}
	if f.pprofAddr != "" && !loopback(f.pprofAddr) {
		return nil, fmt.Errorf("-pprof-addr %q: must be a loopback address such as 127.0.0.1:6060", f.pprofAddr)
	}
	if f.healthAddr != "" && (f.healthAddr == f.metricsAddr || f.healthAddr == f.pprofAddr) || f.metricsAddr != "" && f.metricsAddr == f.pprofAddr {
		return nil, errors.New("-health-addr, -metrics-addr and -pprof-addr must differ")
	}
	if f.cacheSize < 1 {
		return nil, fmt.Errorf("-cache-size %d: must be at least 1", f.cacheSize)
	}
	if f.readCacheSize < 1 || f.readCacheTTL < 0 {
		return nil, errors.New("-read-cache-size must be at least 1 and -read-cache-ttl not negative")
	}
	if set["allowed-pod-attributes"] {
		f.podAttributes = []string{}
		for k := range strings.SplitSeq(f.podAttributesFlag, ",") {
			if k = strings.TrimSpace(k); k != "" {
				f.podAttributes = append(f.podAttributes, k)
			}
		}
	}
	if f.maxResponseSize < 1 {
		return nil, fmt.Errorf("-max-response-size %d: must be at least 1", f.maxResponseSize)
	}
	if f.readConcurrency < 1 {
		return nil, fmt.Errorf("-read-concurrency %d: must be at least 1", f.readConcurrency)
	}
	if f.dynamicScope, err = leases.ParseScope(f.dynamicScopeFlag); err != nil {
		return nil, fmt.Errorf("-dynamic-secrets-scope %w", err)
	}
	if f.dynamicCacheSize < 1 {
		return nil, fmt.Errorf("-dynamic-secrets-cache-size %d: must be at least 1", f.dynamicCacheSize)
	}
	if f.revokeOnPodDelete && (f.dynamicScope != leases.ScopePod || f.nodeName == "") {
		return nil, errors.New("-revoke-on-pod-delete needs -dynamic-secrets-scope=pod (shared leases are never revoked for one pod) and -node-name or $NODE_NAME")
	}
	if f.maxMountBytes < 1 || f.maxTotalBytes < f.maxMountBytes || f.readCacheBytes < 1 || f.dynamicCacheBytes < 1 {
		return nil, errors.New("-max-mount-bytes, -read-cache-bytes and -dynamic-secrets-cache-bytes must be at least 1, and -max-total-bytes at least -max-mount-bytes")
	}
	if f.mountTimeout <= 0 || f.shutdownTimeout < 0 {
		return nil, errors.New("-mount-timeout must be positive and -shutdown-timeout not negative")
	}
	return f, nil
}

// loopback reports whether addr listens on loopback only.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func main() { os.Exit(exitCode()) }

// exitCode runs the daemon; main exits with it only after the deferred
// signal handling is undone.
func exitCode() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	default:
		fmt.Fprintln(os.Stderr, "vault-csi-provider:", err)
		return 1
	}
}
