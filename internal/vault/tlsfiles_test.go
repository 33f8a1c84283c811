package vault

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/okevault/vault-csi-provider/internal/config"
)

// fifo makes a named pipe that a writer holds open and never writes to: a
// blocking open or read of it never returns, as with a process's own
// stdout under a container runtime.
func fifo(t *testing.T, path string) string {
	t.Helper()
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	// O_RDWR opens a FIFO without waiting for a reader, and holds the write
	// end open.
	w, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	return path
}

// certPEM is a PEM certificate file's contents.
func certPEM(t *testing.T) []byte {
	t.Helper()
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: selfSigned(t).Leaf.Raw})
}

func write(t *testing.T, path string, b []byte) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// within runs Client under a deadline of deadline and fails the test if it
// has not returned in d: a client lookup that hangs is the failure these
// tests look for.
func within(t *testing.T, d, deadline time.Duration, clients *Clients, addr string, tc config.TLS) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), deadline)
	done := make(chan error, 1)
	go func() {
		defer cancel()
		_, err := clients.Client(ctx, addr, "", tc)
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Fatalf("Client(%s, %+v) still blocked after %s", addr, tc, d)
		return nil
	}
}

// threads is the process's OS thread count.
func threads(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no Threads in /proc/self/status")
	return 0
}

// TestTLSFilesAreBounded names, as a class may, files that never end, never
// answer or are too large, in each TLS parameter. Every one fails at once,
// naming the parameter and saying why, instead of allocating until the
// provider is killed or parking a thread on the pipe.
func TestTLSFilesAreBounded(t *testing.T) {
	dir := t.TempDir()
	good := write(t, filepath.Join(dir, "ca.pem"), certPEM(t))
	zero := filepath.Join(dir, "zero")
	if err := os.Symlink("/dev/zero", zero); err != nil {
		t.Fatal(err)
	}
	pipe := fifo(t, filepath.Join(dir, "fifo"))
	big := write(t, filepath.Join(dir, "big.pem"), []byte(strings.Repeat("a", 1<<20+1)))
	many := filepath.Join(dir, "many")
	for i := range maxCAFilesForTest + 1 {
		write(t, filepath.Join(many, fmt.Sprintf("%d.pem", i)), certPEM(t))
	}
	withPipe := filepath.Join(dir, "with-pipe")
	write(t, filepath.Join(withPipe, "a.pem"), certPEM(t))
	fifo(t, filepath.Join(withPipe, "b.pem"))

	clients, err := NewClients(64, config.Addresses{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, param, reason string
		tls                 config.TLS
	}{
		{"an endless device", "vaultCACertPath", "not a regular file", config.TLS{CACert: zero}},
		{"a pipe held open", "vaultCACertPath", "not a regular file", config.TLS{CACert: pipe}},
		{"a directory as the CA file", "vaultCACertPath", "not a regular file", config.TLS{CACert: dir}},
		{"over 1 MiB", "vaultCACertPath", "larger than", config.TLS{CACert: big}},
		{"a pipe as the client key", "vaultTLSClientKeyPath", "not a regular file", config.TLS{ClientCert: good, ClientKey: pipe}},
		{"a pipe as the client certificate", "vaultTLSClientCertPath", "not a regular file", config.TLS{ClientCert: pipe, ClientKey: good}},
		{"too many files in the CA directory", "vaultCADirectory", "more than", config.TLS{CADirectory: many}},
		{"a pipe in the CA directory", "vaultCADirectory", "not a regular file", config.TLS{CADirectory: withPipe}},
		{"a pipe as the CA directory", "vaultCADirectory", "not a directory", config.TLS{CADirectory: pipe}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := within(t, 10*time.Second, 5*time.Second, clients, "https://127.0.0.1:8200", tc.tls)
			var ce *config.Error
			if !errors.As(err, &ce) || ce.Param != tc.param || !strings.Contains(ce.Reason, tc.reason) {
				t.Fatalf("Client = %v; want a parameter error on %s saying %q", err, tc.param, tc.reason)
			}
		})
	}
}

// maxCAFilesForTest is one more than a CA directory may hold.
const maxCAFilesForTest = 256

// TestCADirectoryAsKubeletMountsIt: a CA directory holding a Secret's files
// the way kubelet writes them (the file a symlink into ..data, itself a
// symlink to a timestamped folder) is trusted: the folders are skipped, the
// files read through their links.
func TestCADirectoryAsKubeletMountsIt(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"initialized":true,"sealed":false}`))
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	defer srv.Close()
	dir := t.TempDir()
	write(t, filepath.Join(dir, "..2026_12_04", "ca.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.TLS.Certificates[0].Leaf.Raw}))
	if err := os.Symlink("..2026_12_04", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join("..data", "ca.crt"), filepath.Join(dir, "ca.crt")); err != nil {
		t.Fatal(err)
	}
	clients, err := NewClients(4, config.Addresses{})
	if err != nil {
		t.Fatal(err)
	}
	cl, err := clients.Client(t.Context(), srv.URL, "", config.TLS{CADirectory: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Sys().HealthWithContext(t.Context()); err != nil {
		t.Fatalf("a server whose CA is in the directory: %v", err)
	}
}

// TestHostileFileBlocksNoOtherMount: while one class's client waits on its
// files (the mount's own deadline ends it), every other class's client
// lookup completes; and no OS thread is left parked on a pipe after the
// hostile lookups end.
func TestHostileFileBlocksNoOtherMount(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	clients, err := NewClients(64, config.Addresses{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	before := threads(t)
	const hostile = 16 // more than the slack allowed below
	errs := make(chan error, hostile)
	for i := range hostile {
		pipe := fifo(t, filepath.Join(dir, fmt.Sprintf("fifo-%d", i)))
		go func() {
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			defer cancel()
			_, err := clients.Client(ctx, "https://127.0.0.1:8200", "", config.TLS{CACert: pipe})
			errs <- err
		}()
	}
	// Innocent lookups, made while the hostile ones are in flight.
	for i := range 4 {
		err := within(t, 3*time.Second, 5*time.Second, clients, srv.URL, config.TLS{ServerName: fmt.Sprint("innocent-", i)})
		if err != nil {
			t.Fatalf("an innocent class's client: %v", err)
		}
	}
	for range hostile {
		select {
		case err := <-errs:
			if err == nil {
				t.Error("a client was made from a pipe")
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a hostile lookup outlived its deadline by 8s")
		}
	}
	// The Go runtime keeps idle threads; what must not happen is one thread
	// per hostile file, parked in open or read.
	if after := threads(t); after > before+4 {
		t.Errorf("threads: %d before %d hostile lookups, %d after", before, hostile, after)
	}
}

// TestNoClientCertificateFromTheEnvironment: the api package's defaults
// read VAULT_CLIENT_CERT and VAULT_CLIENT_KEY and would present that pair
// to every server. The provider takes them as -vault-tls-client-* defaults,
// which config gives only to -vault-addr; a client made without a pair must
// present none, whatever the environment says.
func TestNoClientCertificateFromTheEnvironment(t *testing.T) {
	presented := make(chan int, 1)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		presented <- len(r.TLS.PeerCertificates)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"initialized":true,"sealed":false}`))
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}, ClientAuth: tls.RequestClientCert, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	defer srv.Close()

	dir := t.TempDir()
	own := selfSigned(t)
	keyDER, err := x509.MarshalPKCS8PrivateKey(own.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("VAULT_CLIENT_CERT", write(t, filepath.Join(dir, "c.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: own.Leaf.Raw})))
	t.Setenv("VAULT_CLIENT_KEY", write(t, filepath.Join(dir, "c.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})))

	clients, err := NewClients(4, config.Addresses{})
	if err != nil {
		t.Fatal(err)
	}
	cl, err := clients.Client(t.Context(), srv.URL, "", config.TLS{SkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Sys().HealthWithContext(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := <-presented; n != 0 {
		t.Errorf("the client presented %d certificates from the environment to a server it was given no pair for", n)
	}
}
