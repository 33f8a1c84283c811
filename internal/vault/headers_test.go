package vault

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/okevault/vault-csi-provider/internal/config"
	"github.com/okevault/vault-csi-provider/internal/redact"
)

// The servers here are test HTTP servers, not Vault: what is tested is what
// a server named by a class (its author's) can make the provider hold.

// TestResponseHeadersBounded: a server answering a login or a read with
// many small distinct headers (about 150 KB, far under Go's 10 MiB default)
// fails the request as too large, without retries.
func TestResponseHeadersBounded(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		for i := range 2000 {
			w.Header().Set(fmt.Sprintf("X-Pad-%d", i), strings.Repeat("x", 64))
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"auth":{"client_token":"t","lease_duration":60},"data":{"k":"v"}}`))
	}))
	defer srv.Close()
	base := baseClient(t, srv.URL, config.Addresses{})

	_, err := LoginJWT(t.Context(), base, "kubernetes", "r", redact.New("jwt"), nil)
	if !errors.Is(err, ErrTooLarge) {
		t.Errorf("login: %v; want ErrTooLarge", err)
	}
	_, err = Do(t.Context(), base, redact.New("t"), Request{Method: http.MethodGet, Path: "kv/a"})
	if !errors.Is(err, ErrTooLarge) {
		t.Errorf("read: %v; want ErrTooLarge", err)
	}
	if n := hits.Load(); n != 2 {
		t.Errorf("%d requests for a login and a read; a too-large answer is not retried", n)
	}
}

// TestRedirectBodiesClosed: the api package follows a 307 without closing
// the redirect's body, so a server streaming one without end kept the
// connection (and a goroutine reading it) until the client's 30 s timeout.
// The redirect's connection must be closed as soon as the request is done.
func TestRedirectBodiesClosed(t *testing.T) {
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"data":{"k":"v"}}`))
	}))
	defer target.Close()
	closed := make(chan struct{})
	redirecting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(closed)
		w.Header().Set("Location", target.URL+r.URL.RequestURI())
		w.WriteHeader(http.StatusTemporaryRedirect)
		chunk := []byte(strings.Repeat("r", 32<<10))
		for {
			if _, err := w.Write(chunk); err != nil {
				return // the client closed the connection
			}
			w.(http.Flusher).Flush()
		}
	}))
	defer redirecting.Close()

	base := baseClient(t, redirecting.URL, config.Addresses{})
	r, err := Do(t.Context(), base, redact.New("t"), Request{Method: http.MethodGet, Path: "kv/a"})
	if err != nil || r.Data["k"] != "v" {
		t.Fatalf("Do = %v, %v; want the target's answer", r, err)
	}
	select {
	case <-closed:
	case <-time.After(3 * time.Second):
		t.Error("the redirect's connection is still open 3s after the request ended")
	}
}

// TestEvictedClientsCloseConnections: a client evicted from the bounded set
// closes its idle connections instead of keeping them to the idle timeout.
func TestEvictedClientsCloseConnections(t *testing.T) {
	closed := make(chan struct{}, 1)
	first := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"data":{"k":"v"}}`))
	}))
	first.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateClosed {
			closed <- struct{}{}
		}
	}
	first.Start()
	defer first.Close()
	second := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer second.Close()

	clients, err := NewClients(1, config.Addresses{})
	if err != nil {
		t.Fatal(err)
	}
	cl, err := clients.Client(t.Context(), first.URL, "", config.TLS{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Do(t.Context(), cl, redact.New("t"), Request{Method: http.MethodGet, Path: "kv/a"}); err != nil {
		t.Fatal(err)
	}
	if _, err := clients.Client(t.Context(), second.URL, "", config.TLS{}); err != nil { // evicts the first
		t.Fatal(err)
	}
	select {
	case <-closed:
	case <-time.After(3 * time.Second):
		t.Error("the evicted client's idle connection is still open after 3s")
	}
}
