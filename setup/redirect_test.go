package setup

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// listener is a server on 127.0.0.1 that records the token of each request
// it gets.
type listener struct {
	*httptest.Server
	mu     sync.Mutex
	tokens []string
}

func newListener(t *testing.T, h http.HandlerFunc) *listener {
	t.Helper()
	l := &listener{}
	l.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.mu.Lock()
		l.tokens = append(l.tokens, r.Header.Get("X-Vault-Token"))
		l.mu.Unlock()
		h(w, r)
	}))
	t.Cleanup(l.Close)
	return l
}

func (l *listener) seen() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.tokens...)
}

// TestRedirectNotFollowedElsewhere: a Vault standby answering 307 with
// another address (another listener on 127.0.0.1) does not get setup's
// client there, nor its token; a redirect to the address setup chose (the
// same scheme, host and port) is followed.
func TestRedirectNotFollowedElsewhere(t *testing.T) {
	const token = "hvs.setup-token"
	elsewhere := newListener(t, func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"data":{"reached":"elsewhere"}}`))
	})
	var standby *listener
	standby = newListener(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/secret/elsewhere":
			http.Redirect(w, r, elsewhere.URL+r.URL.Path, http.StatusTemporaryRedirect)
		case "/v1/secret/here":
			http.Redirect(w, r, standby.URL+"/v1/secret/moved", http.StatusTemporaryRedirect)
		default:
			_, _ = w.Write([]byte(`{"data":{"reached":"` + r.URL.Path + `"}}`))
		}
	})
	c, err := NewVaultClient(standby.URL, token, "", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}

	s, err := c.Logical().ReadWithContext(t.Context(), "secret/elsewhere")
	if err == nil || !strings.Contains(err.Error(), "redirect") {
		t.Errorf("a redirect to %s: %v, %v; want an error naming the redirect", elsewhere.URL, s, err)
	}
	if got := elsewhere.seen(); len(got) > 0 {
		t.Errorf("the other listener was reached %d times, with tokens %q", len(got), got)
	}

	s, err = c.Logical().ReadWithContext(t.Context(), "secret/here")
	if err != nil || s == nil || s.Data["reached"] != "/v1/secret/moved" {
		t.Fatalf("a redirect to the same address: %v, %v; want it followed", s, err)
	}
	for _, tok := range standby.seen() {
		if tok != token {
			t.Errorf("the chosen server got token %q", tok)
		}
	}
}
