package provider_test

import (
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/okevault/vault-csi-provider/internal/budget"
	"github.com/okevault/vault-csi-provider/internal/cache"
	"github.com/okevault/vault-csi-provider/internal/config"
	"github.com/okevault/vault-csi-provider/internal/leases"
	"github.com/okevault/vault-csi-provider/provider"
)

// standIn answers logins and reads as Vault would, counting logins and reads
// per kind of request. It stands in for Vault where what is tested is what
// the provider shares or holds, counted at the server; what Vault does with
// a login is tested against the real one on the bed.
type standIn struct {
	mu            sync.Mutex
	logins, reads int
	tokens        int
	body          []byte // the read's answer
}

func (s *standIn) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if strings.HasSuffix(r.URL.Path, "/login") {
		s.logins++
		s.tokens++
		_ = json.NewEncoder(w).Encode(map[string]any{"auth": map[string]any{"client_token": "hvs.t" + strings.Repeat("x", s.tokens), "lease_duration": 3600}})
		return
	}
	if r.URL.Path == "/v1/sys/leases/lookup" {
		_, _ = w.Write([]byte(`{"data":{"ttl":3600,"renewable":false}}`))
		return
	}
	s.reads++
	_, _ = w.Write(s.body)
}

func (s *standIn) counts() (logins, reads int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logins, s.reads
}

// saToken is an unsigned service-account JWT for a pod of sa in ns, whose
// claims the provider reads to pick the login to share.
func saToken(ns, sa, pod string) string {
	claims, _ := json.Marshal(map[string]any{"kubernetes.io": map[string]any{
		"namespace": ns, "serviceaccount": map[string]any{"name": sa, "uid": "sa-uid"}, "pod": map[string]any{"name": pod, "uid": pod + "-uid"},
	}})
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"none"}`)) + "." + enc(claims) + ".sig"
}

func podOf(name string) pod {
	return pod{namespace: "shop", name: name, uid: name + "-uid", serviceAccount: "web"}
}

// TestJWTLoginsPerPod: under vaultAuthType jwt, roles may bind claims of one
// pod, so two pods of one service account log in for themselves, and get
// no dynamic secret the other was issued, unless the operator says the roles
// allow sharing; under Kubernetes auth they share both (with
// -dynamic-secrets-scope=identity).
func TestJWTLoginsPerPod(t *testing.T) {
	for _, tc := range []struct {
		name       string
		authType   string
		share      bool
		wantLogins int
	}{
		{"jwt: per pod by default", "jwt", false, 2},
		{"jwt: shared when the operator allows it", "jwt", true, 1},
		{"kubernetes: shared", "kubernetes", false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vault := &standIn{body: []byte(`{"lease_id":"database/creds/r/1","lease_duration":3600,"renewable":false,"data":{"k":"v"}}`)}
			srv := httptest.NewServer(vault)
			defer srv.Close()
			store, err := leases.New(100, 1<<20, nil)
			if err != nil {
				t.Fatal(err)
			}
			p := serve(t, provider.Options{ShareJWTLogins: tc.share, Leases: store, LeaseScope: leases.ScopeIdentity})
			params := map[string]string{"roleName": "r", "vaultAddress": srv.URL, "vaultAuthType": tc.authType, "objects": "- {objectName: k, secretPath: kv/a, secretKey: k}"}
			for _, name := range []string{"web-0", "web-1"} {
				if _, err := p.client.Mount(t.Context(), request(t, podOf(name), params, "vault", saToken("shop", "web", name))); err != nil {
					t.Fatal(err)
				}
			}
			if logins, issued := vault.counts(); logins != tc.wantLogins || issued != tc.wantLogins {
				t.Errorf("%d logins and %d dynamic secrets issued for two pods of one service account, want %d of each", logins, issued, tc.wantLogins)
			}
		})
	}
}

// TestTLSSettingsNeverShare: a class that skips TLS verification and one
// that verifies reach one Vault as one service account, yet share neither
// a login nor a read (cached or in flight): what one learnt over an
// unverified connection must not answer the other.
func TestTLSSettingsNeverShare(t *testing.T) {
	vault := &standIn{body: []byte(`{"data":{"k":"v"}}`)}
	srv := httptest.NewTLSServer(vault)
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	reads, err := cache.NewReads(100, 1<<20, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	p := serve(t, provider.Options{Reads: reads, Defaults: config.Defaults{AllowedTLSDirectories: []string{filepath.Dir(ca)}}})
	objects := "- {objectName: k, secretPath: kv/a, secretKey: k}"
	for _, tls := range []map[string]string{
		{"vaultSkipTLSVerify": "true"},
		{"vaultCACertPath": ca},
		{"vaultCACertPath": ca}, // the same settings again: shared
	} {
		params := map[string]string{"roleName": "r", "vaultAddress": srv.URL, "objects": objects}
		for k, v := range tls {
			params[k] = v
		}
		if _, err := p.client.Mount(t.Context(), request(t, podOf("web-0"), params, "vault", saToken("shop", "web", "web-0"))); err != nil {
			t.Fatal(err)
		}
	}
	if logins, reads := vault.counts(); logins != 2 || reads != 2 {
		t.Errorf("%d logins and %d reads; want 2 of each: one per TLS setting", logins, reads)
	}
}

// TestMountBudget: a server answering with more than a mount may hold fails
// that mount with ResourceExhausted, and what it held is given back; a
// mount within its budget still succeeds.
func TestMountBudget(t *testing.T) {
	big := []byte(`{"data":{"k":"` + strings.Repeat("x", 3<<20) + `"}}`)
	vault := &standIn{body: big}
	srv := httptest.NewServer(vault)
	defer srv.Close()
	pool := budget.NewPool(64 << 20)
	p := serve(t, provider.Options{Budget: pool, MaxMountBytes: 16 << 20})
	var objects strings.Builder
	for _, n := range []string{"a", "b", "c"} {
		objects.WriteString("- {objectName: " + n + ", secretPath: kv/" + n + ", secretKey: k}\n")
	}
	params := map[string]string{"roleName": "r", "vaultAddress": srv.URL, "objects": objects.String()}
	resp, err := p.client.Mount(t.Context(), request(t, podOf("web-0"), params, "vault", saToken("shop", "web", "web-0")))
	wantCode(t, resp, err, codes.ResourceExhausted, "-max-mount-bytes")
	if pool.Used() != 0 {
		t.Errorf("%d bytes still held after the mount failed", pool.Used())
	}
	params["objects"] = "- {objectName: a, secretPath: kv/a, secretKey: k}"
	if _, err := p.client.Mount(t.Context(), request(t, podOf("web-1"), params, "vault", saToken("shop", "web", "web-1"))); err != nil {
		t.Errorf("one 3 MiB secret, within the budget: %v", err)
	}
	if pool.Used() != 0 {
		t.Errorf("%d bytes still held after the mount succeeded", pool.Used())
	}
}
