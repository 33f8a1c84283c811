package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// recorder counts the requests a server gets and keeps the headers of each.
type recorder struct {
	mu      sync.Mutex
	headers []http.Header
}

func (r *recorder) record(req *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.headers = append(r.headers, req.Header.Clone())
}

func (r *recorder) seen() []http.Header {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.headers)
}

// TestVaultEnvIgnored sets every VAULT_* variable vault/api reads (its
// client.go and logical.go, v1.23.0) to point elsewhere, then runs apply
// and verify with --vault-addr: every request reaches the chosen Vault (a
// recording proxy in front of a real one), none reaches the server the
// variables name, and none carries the token, namespace, headers or
// wrapping the variables ask for. With --vault-env, $VAULT_ADDR and
// $VAULT_TOKEN are used.
func TestVaultEnvIgnored(t *testing.T) {
	b := startCommandBed(t)

	stray := &recorder{}
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		stray.record(req)
		http.Error(w, "not the chosen Vault", http.StatusBadGateway)
	}))
	t.Cleanup(elsewhere.Close)
	target, err := url.Parse(b.vault.Addr)
	if err != nil {
		t.Fatal(err)
	}
	chosen := &recorder{}
	proxy := httputil.NewSingleHostReverseProxy(target)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		chosen.record(req)
		proxy.ServeHTTP(w, req)
	}))
	t.Cleanup(front.Close)

	caFile := filepath.Join(b.dir, "other-ca.pem")
	if err := os.WriteFile(caFile, b.kube.CAPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	const strayToken = "hvs.stray-token-from-the-shell"
	vars := map[string]string{
		"VAULT_ADDR":              elsewhere.URL,
		"VAULT_AGENT_ADDR":        elsewhere.URL,
		"VAULT_HTTP_PROXY":        elsewhere.URL,
		"VAULT_PROXY_ADDR":        elsewhere.URL,
		"VAULT_TOKEN":             strayToken,
		"VAULT_NAMESPACE":         "stray-namespace",
		"VAULT_HEADERS":           `{"X-Stray": "from-the-shell"}`,
		"VAULT_WRAP_TTL":          "5m",
		"VAULT_CACERT":            caFile,
		"VAULT_CACERT_BYTES":      string(b.kube.CAPEM),
		"VAULT_SKIP_VERIFY":       "true",
		"VAULT_TLS_SERVER_NAME":   "elsewhere.invalid",
		"VAULT_MAX_RETRIES":       "7",
		"VAULT_RATE_LIMIT":        "100",
		"VAULT_CLIENT_TIMEOUT":    "3",
		"VAULT_SRV_LOOKUP":        "true",
		"VAULT_DISABLE_REDIRECTS": "true",
		"VAULT_MFA":               "stray:123456",
	}
	// Each run gets every variable afresh (the command unsets them), and
	// reads the environment as main gives it: os.Getenv.
	runEnv := func(extra map[string]string, args ...string) result {
		t.Helper()
		for k, v := range vars {
			t.Setenv(k, v)
		}
		for k, v := range extra {
			t.Setenv(k, v)
		}
		t.Setenv("TESTAPP_USERNAME", "testapp")
		t.Setenv("TESTAPP_PASSWORD", "pw-1234")
		var out, errOut bytes.Buffer
		code := run(t.Context(), args, os.Getenv, &out, &errOut)
		return result{code, out.String(), errOut.String()}
	}

	for _, cmd := range []string{"apply", "verify"} {
		r := runEnv(nil, append([]string{cmd}, b.flags(front.URL)...)...)
		if r.code != exitOK {
			t.Fatalf("%s with VAULT_* set elsewhere: exit %d\nstdout:\n%s\nstderr:\n%s", cmd, r.code, r.stdout, r.stderr)
		}
		if strings.Contains(r.stdout+r.stderr, strayToken) {
			t.Fatalf("%s printed $VAULT_TOKEN", cmd)
		}
	}
	// With --vault-env the address and token come from the environment.
	flags := slices.DeleteFunc(b.flags(""), func(s string) bool { return s == "--vault-addr" || s == "" })
	flags = slices.DeleteFunc(flags, func(s string) bool { return strings.HasSuffix(s, "vault.token") || s == "--vault-token-file" })
	r := runEnv(map[string]string{"VAULT_ADDR": front.URL, "VAULT_TOKEN": b.vault.RootToken, "VAULT_CACERT": ""}, append([]string{"verify", "--vault-env"}, flags...)...)
	if r.code != exitOK {
		t.Fatalf("verify --vault-env: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}

	if n := len(stray.seen()); n > 0 {
		t.Errorf("%d requests reached the server the VAULT_* variables name", n)
	}
	seen := chosen.seen()
	if len(seen) == 0 {
		t.Fatal("no request reached the chosen Vault")
	}
	for _, h := range seen {
		for _, k := range []string{"X-Vault-Namespace", "X-Stray", "X-Vault-Wrap-Ttl", "X-Vault-Mfa"} {
			if v := h.Get(k); v != "" {
				t.Errorf("a request to the chosen Vault carries %s: %q", k, v)
			}
		}
		if h.Get("X-Vault-Token") == strayToken {
			t.Error("a request to the chosen Vault carries $VAULT_TOKEN")
		}
	}
}
