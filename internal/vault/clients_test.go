package vault

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"

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
		base, err := clients.Client(srv.URL, ns, config.TLS{})
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
