package vault

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/vault/api"

	"github.com/okevault/vault-csi-provider/internal/budget"
	"github.com/okevault/vault-csi-provider/internal/config"
	"github.com/okevault/vault-csi-provider/internal/redact"
)

// baseClient is the base client for addr, following redirects as allowed.
func baseClient(t *testing.T, addr string, allowed config.Addresses) *api.Client {
	t.Helper()
	clients, err := NewClients(1, allowed)
	if err != nil {
		t.Fatal(err)
	}
	base, err := clients.Client(t.Context(), addr, "", config.TLS{})
	if err != nil {
		t.Fatal(err)
	}
	return base
}

// endless writes JSON-looking bytes until the client stops reading, and
// counts them: a hostile server, which Vault is not.
func endless(status int, sent *atomic.Int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		chunk := []byte(`{"data":{"k":"` + strings.Repeat("x", 64<<10))
		for {
			n, err := w.Write(chunk)
			sent.Add(int64(n))
			if err != nil {
				return
			}
		}
	})
}

// TestBodiesBounded: whatever the status, a response is read only up to its
// bound, and a budget stops it sooner, as the bytes arrive; every charge is
// refunded when the call returns.
func TestBodiesBounded(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		budget int64
		want   error
	}{
		{"endless 200", http.StatusOK, 1 << 30, ErrTooLarge},
		{"endless 400 (the api package reads error bodies whole)", http.StatusBadRequest, 1 << 30, ErrTooLarge},
		{"endless 200 over the mount's budget", http.StatusOK, 1 << 20, budget.ErrExhausted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var sent atomic.Int64
			srv := httptest.NewServer(endless(tc.status, &sent))
			defer srv.Close()
			base := baseClient(t, srv.URL, config.Addresses{})
			pool := budget.NewPool(1 << 30)
			mb := pool.Mount("", tc.budget)
			_, err := Do(t.Context(), base, redact.New("t"), Request{Method: http.MethodGet, Path: "kv/a", Budget: mb})
			if !errors.Is(err, tc.want) {
				t.Fatalf("Do = %v; want %v", err, tc.want)
			}
			if pool.Used() != 0 {
				t.Errorf("%d bytes still charged after Do returned", pool.Used())
			}
			// The transport buffers ahead of the reader; the server still
			// sends far less than it would without a bound.
			if got := sent.Load(); got > 64<<20 {
				t.Errorf("the server sent %d bytes before the client stopped", got)
			}
		})
	}
	t.Run("login over its bound", func(t *testing.T) {
		var sent atomic.Int64
		srv := httptest.NewServer(endless(http.StatusOK, &sent))
		defer srv.Close()
		base := baseClient(t, srv.URL, config.Addresses{})
		_, err := LoginJWT(t.Context(), base, "kubernetes", "r", redact.New("jwt"), nil)
		var ve *Error
		if !errors.Is(err, ErrTooLarge) || !errors.As(err, &ve) || !strings.Contains(ve.Msg, "65536") {
			t.Fatalf("LoginJWT = %v; want ErrTooLarge at %d bytes", err, maxLoginBody)
		}
	})
}

// TestDecodedSizeBounds checks the estimate against shapes that decode to
// many times their size, using the per-value costs measured for them.
func TestDecodedSizeBounds(t *testing.T) {
	const n = 1000
	for shape, perElement := range map[string]int64{
		`{"a":0},`: 310, // a one-entry map: its first group of slots
		`{},`:      64,
		`[],`:      40,
		`0,`:       33,
	} {
		body := []byte(`{"data":{"x":[` + strings.TrimSuffix(strings.Repeat(shape, n), ",") + `]}}`)
		if got, floor := decodedSize(body), int64(len(body))+perElement*n; got < floor {
			t.Errorf("decodedSize of %d × %s = %d, under the measured %d", n, shape, got, floor)
		}
	}
}
