package vault

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/okevault/vault-csi-provider/internal/config"
	"github.com/okevault/vault-csi-provider/internal/redact"
)

// TestRedirects uses test HTTP servers, not Vault: the point is where a
// server's 307 may send the provider, and a hostile server is what makes
// one to a metadata address. The active node is a stand-in answering the
// read; provider's TestRealStandbyRedirect runs a real Vault standby.
func TestRedirects(t *testing.T) {
	var activeHits atomic.Int32
	active := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		activeHits.Add(1)
		_, _ = w.Write([]byte(`{"data":{"k":"v"}}`))
	}))
	defer active.Close()
	// localhost and 127.0.0.1 are one machine but two hosts to the check.
	elsewhere := strings.Replace(active.URL, "127.0.0.1", "localhost", 1)
	standby := func(to string) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, to+r.URL.RequestURI(), http.StatusTemporaryRedirect)
		}))
	}
	allow := func(list string) config.Addresses {
		a, err := config.ParseAddresses(list)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	for _, tc := range []struct {
		name    string
		to      string
		allowed func(standby string) config.Addresses
		ok      bool
	}{
		{"no list: same scheme and host, another port", active.URL, func(string) config.Addresses { return config.Addresses{} }, true},
		{"no list: another host", elsewhere, func(string) config.Addresses { return config.Addresses{} }, false},
		{"no list: a metadata address", "http://169.254.169.254", func(string) config.Addresses { return config.Addresses{} }, false},
		{"listed active node", elsewhere, func(s string) config.Addresses { return allow(s + "," + elsewhere) }, true},
		{"active node not listed", active.URL, func(s string) config.Addresses { return allow(s) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := standby(tc.to)
			defer s.Close()
			base := baseClient(t, s.URL, tc.allowed(s.URL))
			before := activeHits.Load()
			r, err := Do(t.Context(), base, redact.New("t"), Request{Method: http.MethodGet, Path: "kv/a"})
			if tc.ok {
				if err != nil || r.Data["k"] != "v" {
					t.Fatalf("Do = %v, %v; want the active node's answer", r, err)
				}
				return
			}
			var ve *Error
			if !errors.Is(err, ErrRedirect) || !errors.As(err, &ve) || !strings.Contains(ve.Msg, "-allowed-vault-addresses") {
				t.Fatalf("Do = %v; want a refused redirect naming -allowed-vault-addresses", err)
			}
			if activeHits.Load() != before {
				t.Error("the refused address was reached")
			}
			if strings.Contains(err.Error(), "169.254") {
				t.Errorf("the error names where the server pointed: %v", err)
			}
		})
	}
}
