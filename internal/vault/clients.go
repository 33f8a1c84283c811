package vault

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/hashicorp/vault/api"
	"golang.org/x/sync/singleflight"

	"github.com/okevault/vault-csi-provider/internal/config"
)

// Clients hands out base clients (no token) keyed by address, namespace and
// TLS settings. The key comes from SecretProviderClass parameters, which any
// namespace owner controls, so the set is bounded.
type Clients struct {
	// cache is safe for concurrent use; no lock of Clients' own is held
	// while a client is made, so a class whose files are slow to read
	// holds up only the mounts that name the same files.
	cache  *lru.Cache[string, cached]
	builds singleflight.Group
	// Timeout bounds one HTTP exchange; the mount's context bounds the whole.
	Timeout time.Duration
	// allowed are where redirects may lead (see config.Addresses).
	allowed config.Addresses
}

// ErrRedirect marks a request that a server redirected to an address the
// provider may not reach.
var ErrRedirect = errors.New("redirect refused")

// NewClients keeps at most size base clients, whose requests follow
// redirects only as allowed permits.
func NewClients(size int, allowed config.Addresses) (*Clients, error) {
	// An evicted client's idle connections would otherwise stay open until
	// the transport's idle timeout, to servers no mount uses any more.
	c, err := lru.NewWithEvict(size, func(_ string, e cached) { e.http.CloseIdleConnections() })
	if err != nil {
		return nil, err
	}
	return &Clients{cache: c, Timeout: 30 * time.Second, allowed: allowed}, nil
}

// maxHeaderBytes bounds a response's headers (HTTP/1 and, through the
// transport's HTTP/2 setup, HTTP/2's header list). Vault sends a handful,
// under 1 KiB; 64 KiB leaves room for what a load balancer or proxy in front
// of it adds (cookies, tracing). Go's default, 10 MiB, let a server named by
// a class make every read in flight hold that much in small distinct
// headers, outside the mount budgets.
const maxHeaderBytes = 64 << 10

// cached is a base client, its HTTP client (shared by its clones) and the
// state of the TLS files it was made from.
type cached struct {
	client *api.Client
	http   *http.Client
	files  string
}

// Client is the shared base client for a Vault address, namespace and TLS
// settings. Callers clone it before setting a token. A client whose CA,
// client certificate or key file has changed since it was made is made
// again: kubelet swaps a mounted Secret's files in place when the Secret
// changes (Vault's operator rotating its CA, or a Vault made anew), and a
// provider holding the old CA would fail every mount until restarted.
// Mounts that need the same client while it is made wait for that one
// build, each until its own context ends. Every error but the context's is
// a *config.Error naming the parameter at fault.
func (c *Clients) Client(ctx context.Context, addr, namespace string, tls config.TLS) (*api.Client, error) {
	key := clientKey(addr, namespace, tls)
	files := tlsFilesState(tls)
	if e, ok := c.cache.Get(key); ok && e.files == files {
		return e.client, nil
	}
	built := c.builds.DoChan(key+"\x00"+files, func() (any, error) {
		cl, hc, err := newClient(addr, namespace, tls, c.Timeout, c.allowed)
		var ce *config.Error
		if err != nil && !errors.As(err, &ce) {
			err = &config.Error{Param: "vaultAddress and TLS parameters", Reason: err.Error()}
		}
		if err != nil {
			return nil, err
		}
		// Add replaces a key's client without calling the eviction hook.
		if old, ok := c.cache.Peek(key); ok {
			defer old.http.CloseIdleConnections()
		}
		c.cache.Add(key, cached{client: cl, http: hc, files: files})
		return cl, nil
	})
	select {
	case r := <-built:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*api.Client), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// tlsFilesState describes the TLS files (and the CA directory) by what stat
// says of each: a file replaced or rewritten changes it. Stat follows
// kubelet's ..data symlinks to the files of the Secret's current version.
func tlsFilesState(tls config.TLS) string {
	var b strings.Builder
	for _, name := range []string{tls.CACert, tls.CADirectory, tls.ClientCert, tls.ClientKey} {
		if name == "" {
			continue
		}
		fi, err := os.Stat(name)
		if err != nil {
			// newClient reports a missing file; a file that comes back is a change.
			fmt.Fprintf(&b, "%s:missing;", name)
			continue
		}
		var ino uint64
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			ino = st.Ino
		}
		fmt.Fprintf(&b, "%s:%d:%d:%d;", name, ino, fi.Size(), fi.ModTime().UnixNano())
	}
	return b.String()
}

func clientKey(addr, namespace string, tls config.TLS) string {
	b, _ := json.Marshal(struct {
		A, N string
		T    config.TLS
	}{addr, namespace, tls})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func newClient(addr, namespace string, tls config.TLS, timeout time.Duration, allowed config.Addresses) (*api.Client, *http.Client, error) {
	cfg := api.DefaultConfig()
	if cfg.Error != nil {
		return nil, nil, fmt.Errorf("vault client defaults: %w", cfg.Error)
	}
	cfg.Address = addr
	// VAULT_AGENT_ADDR would send every pod's login and reads to an agent,
	// which may add its own auto-auth token.
	cfg.AgentAddress = ""
	// Whole-call deadlines come from the mount's context; a per-call timeout
	// in the client also cancels raw writes before their body is read.
	cfg.Timeout = 0
	cfg.HttpClient.Timeout = timeout
	// The default backoff already waits out a 429's Retry-After.
	cfg.MaxRetries = maxRetries
	cfg.CheckRetry = checkRetry
	tr, ok := cfg.HttpClient.Transport.(*http.Transport)
	if !ok {
		return nil, nil, fmt.Errorf("vault client transport is %T, not *http.Transport", cfg.HttpClient.Transport)
	}
	tc, err := tlsConfig(tls, tr.TLSClientConfig.NextProtos)
	if err != nil {
		return nil, nil, err
	}
	tr.TLSClientConfig = tc
	tr.MaxResponseHeaderBytes = maxHeaderBytes
	if err := guardRedirects(tr, addr, allowed); err != nil {
		return nil, nil, err
	}
	cl, err := api.NewClient(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("vault client for %s: %w", addr, err)
	}
	// NewClient reads VAULT_TOKEN from the environment, and Clone calls
	// NewClient again, so every clone would carry it. The provider's own
	// environment must never lend a token to a pod: the base client has no
	// token and its clones copy that emptiness. (The api package reads no
	// token file: ~/.vault-token and agent sinks belong to the CLI and the
	// agent.)
	cl.ClearToken()
	cl.SetCloneToken(true)
	// Clones otherwise start from VAULT_NAMESPACE and lose the namespace set
	// here; with headers cloned, the namespace is the mount's.
	if namespace != "" {
		cl.SetNamespace(namespace)
	} else {
		cl.ClearNamespace()
	}
	cl.SetCloneHeaders(true)
	return cl, cfg.HttpClient, nil
}

// guardRedirects refuses requests to where a redirect must not lead. The api
// package follows one redirect itself (a Vault standby with request
// forwarding off answers 307 with the active node's address), through the
// same transport; that transport asks its Proxy function about every
// request, which is where the check sits: the api package needs the
// transport to stay an *http.Transport, so it cannot be wrapped. Unix
// socket addresses need no check: their dialer reaches the socket whatever
// the URL says.
func guardRedirects(tr *http.Transport, addr string, allowed config.Addresses) error {
	from, err := url.Parse(addr)
	if err != nil {
		return fmt.Errorf("vault address: %w", err)
	}
	if from.Scheme == "unix" {
		return nil
	}
	proxy := tr.Proxy
	tr.Proxy = func(r *http.Request) (*url.URL, error) {
		if !allowed.AllowsRedirect(from, r.URL) {
			return nil, ErrRedirect
		}
		if proxy == nil {
			return nil, nil
		}
		return proxy(r)
	}
	return nil
}
