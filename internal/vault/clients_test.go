package vault

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/okevault/vault-csi-provider/internal/config"
	"github.com/okevault/vault-csi-provider/internal/redact"
)

// TestClientsIgnoreTheEnvironment sets every way the api package could pick
// up an identity from the provider's own environment, and records what
// reaches the server: a stand-in that only notes headers, since the point is
// what the client sends, not what Vault does with it (the bed test in
// test/e2e runs the real binary against the real Vault with VAULT_TOKEN set).
func TestClientsIgnoreTheEnvironment(t *testing.T) {
	var (
		mu   sync.Mutex
		seen = map[string]http.Header{}
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.URL.Path] = r.Header.Clone()
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/v1/auth/kubernetes/login" {
			_, _ = w.Write([]byte(`{"auth":{"client_token":"pod-token","lease_duration":60}}`))
			return
		}
		_, _ = w.Write([]byte(`{"data":{"k":"v"}}`))
	}))
	defer srv.Close()

	home := t.TempDir()
	if err := os.WriteFile(filepath.Join(home, ".vault-token"), []byte("file-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOME", home)
	t.Setenv("VAULT_TOKEN", "env-token")
	t.Setenv("VAULT_NAMESPACE", "env-namespace")
	t.Setenv("VAULT_AGENT_ADDR", "http://127.0.0.1:1") // an agent would answer here

	clients, err := NewClients(4, config.Addresses{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{"", "team-a"} {
		base, err := clients.Client(t.Context(), srv.URL, ns, config.TLS{})
		if err != nil {
			t.Fatal(err)
		}
		if base.Token() != "" {
			t.Errorf("namespace %q: base client carries a token from the environment", ns)
		}
		clone, err := base.Clone()
		if err != nil {
			t.Fatal(err)
		}
		if clone.Token() != "" {
			t.Errorf("namespace %q: a clone carries a token from the environment", ns)
		}
		lg, err := LoginJWT(t.Context(), base, "kubernetes", "r", redact.New("jwt"), nil)
		if err != nil {
			t.Fatalf("login through %s (not the agent address): %v", srv.URL, err)
		}
		if _, err := Do(t.Context(), base, lg.Token, Request{Method: http.MethodGet, Path: "kv/a"}); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		login, read := seen["/v1/auth/kubernetes/login"], seen["/v1/kv/a"]
		mu.Unlock()
		if got := login.Get("X-Vault-Token"); got != "" {
			t.Errorf("namespace %q: the login carried token %q", ns, got)
		}
		if got := read.Get("X-Vault-Token"); got != "pod-token" {
			t.Errorf("namespace %q: the read carried token %q, want the pod's login", ns, got)
		}
		for what, h := range map[string]http.Header{"login": login, "read": read} {
			if got := h.Get("X-Vault-Namespace"); got != ns {
				t.Errorf("%s sent namespace %q, want the mount's %q", what, got, ns)
			}
		}
	}
}

// TestClientsFollowACARotation: the CA file is swapped the way kubelet
// updates a mounted Secret (a new file behind a renamed symlink); the next
// mount's client trusts the new CA, without a restart. The servers are
// httptest's TLS servers, each with a self-signed certificate of its own.
func TestClientsFollowACARotation(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"initialized":true,"sealed":false}`))
	})
	server := func() *httptest.Server {
		srv := httptest.NewUnstartedServer(ok)
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}, MinVersion: tls.VersionTLS12}
		srv.StartTLS()
		return srv
	}
	old, current := server(), server()
	defer old.Close()
	defer current.Close()

	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.crt")
	// kubelet's layout: ca.crt -> ..data/ca.crt, ..data -> a timestamped folder.
	writeVersion := func(version string, srv *httptest.Server) {
		t.Helper()
		v := filepath.Join(dir, version)
		if err := os.Mkdir(v, 0o755); err != nil {
			t.Fatal(err)
		}
		pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.TLS.Certificates[0].Leaf.Raw})
		if err := os.WriteFile(filepath.Join(v, "ca.crt"), pemBytes, 0o644); err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(version, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	writeVersion("..v1", old)
	if err := os.Symlink(filepath.Join("..data", "ca.crt"), ca); err != nil {
		t.Fatal(err)
	}

	clients, err := NewClients(4, config.Addresses{})
	if err != nil {
		t.Fatal(err)
	}
	health := func() error {
		cl, err := clients.Client(t.Context(), current.URL, "", config.TLS{CACert: ca})
		if err != nil {
			return err
		}
		_, err = cl.Sys().Health()
		return err
	}
	if err := health(); err == nil {
		t.Fatal("a client trusting the old CA reached a server of another")
	}
	writeVersion("..v2", current)
	if err := health(); err != nil {
		t.Errorf("after the CA file changed: %v", err)
	}
	first, _ := clients.Client(t.Context(), current.URL, "", config.TLS{CACert: ca})
	again, _ := clients.Client(t.Context(), current.URL, "", config.TLS{CACert: ca})
	if first != again {
		t.Error("an unchanged CA file made a new client")
	}
}

// selfSigned is a certificate for 127.0.0.1 that is its own CA.
func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "vault"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}
