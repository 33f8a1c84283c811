package testbed

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// Registry is the CNCF Distribution registry (test/tools/registry), the
// registry behind most hosted ones, serving TLS with a certificate of its
// own CA and asking for a password (htpasswd basic auth), storing on disk.
type Registry struct {
	// Host is its host:port.
	Host string
	// CAFile is the PEM CA its certificate chains to.
	CAFile             string
	Username, Password string

	dir   string
	owned bool
	proc  *process
}

// RegistryOptions say where a Registry listens.
type RegistryOptions struct {
	// Dir holds its files; "" makes a temporary one.
	Dir string
	// IP it listens on and its certificate names; nil: 127.0.0.1.
	IP net.IP
}

// StartRegistry starts a Registry for the test, stopped at its end.
func StartRegistry(t testing.TB, opts RegistryOptions) *Registry {
	t.Helper()
	skipShort(t)
	r, err := NewRegistry(t.Context(), opts)
	must(t, err)
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(r.proc.tail(tailLines))
		}
		if err := r.Close(); err != nil {
			t.Errorf("testbed: %v", err)
		}
	})
	return r
}

// NewRegistry starts a Registry and waits until it answers /v2/ (with 401:
// it asks for the password). ctx bounds the start only.
func NewRegistry(ctx context.Context, opts RegistryOptions) (_ *Registry, err error) {
	bin, err := Bin("registry")
	if err != nil {
		return nil, err
	}
	ip := opts.IP
	if ip == nil {
		ip = net.IPv4(127, 0, 0, 1)
	}
	dir, owned, err := partDir(opts.Dir, "testbed-registry-")
	if err != nil {
		return nil, err
	}
	r := &Registry{dir: dir, owned: owned, Username: "bed", CAFile: filepath.Join(dir, "ca.crt")}
	defer func() {
		if err != nil {
			err = errors.Join(err, r.Close())
		}
	}()
	ca, err := newPKI()
	if err != nil {
		return nil, err
	}
	cert, key, err := ca.issue(certRequest{commonName: "registry", server: true, ips: []net.IP{ip}})
	if err != nil {
		return nil, err
	}
	secret := make([]byte, 16)
	_, _ = rand.Read(secret)
	r.Password = hex.EncodeToString(secret)
	hash, err := bcrypt.GenerateFromPassword([]byte(r.Password), bcrypt.DefaultCost)
	if err != nil {
		return nil, err
	}
	port, err := freePortOn(ip)
	if err != nil {
		return nil, err
	}
	r.Host = net.JoinHostPort(ip.String(), strconv.Itoa(port))
	_, _ = rand.Read(secret)
	config := fmt.Sprintf(`version: 0.1
log: {level: warn, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: %q}, delete: {enabled: true}}
http: {addr: %q, secret: %q, tls: {certificate: %q, key: %q}}
auth: {htpasswd: {realm: okevault-bed, path: %q}}
`, filepath.Join(dir, "data"), r.Host, hex.EncodeToString(secret), filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "htpasswd"))
	for name, b := range map[string][]byte{
		"ca.crt": ca.caPEM, "tls.crt": cert, "tls.key": key, "config.yml": []byte(config),
		"htpasswd": []byte(r.Username + ":" + string(hash) + "\n"),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return nil, err
		}
	}
	// It would export traces to localhost:4318 otherwise.
	if r.proc, err = startProcess(dir, "registry", childEnv("OTEL_SDK_DISABLED=true", "OTEL_TRACES_EXPORTER=none"), bin, "serve", filepath.Join(dir, "config.yml")); err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.caPEM)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	return r, waitReady(ctx, r.proc, "the registry", func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+r.Host+"/v2/", nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			return fmt.Errorf("/v2/ without a password: %s, want 401", resp.Status)
		}
		return nil
	})
}

// freePortOn returns a TCP port on ip that was free a moment ago.
func freePortOn(ip net.IP) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(ip.String(), "0")) //nolint:noctx // a port probe, closed at once
	if err != nil {
		return 0, fmt.Errorf("find a free port on %s: %w", ip, err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Close stops the registry and removes its files.
func (r *Registry) Close() error {
	var errs []error
	if r.proc != nil {
		errs = append(errs, r.proc.stop())
	}
	return errors.Join(append(errs, removeDir(r.dir, r.owned))...)
}
