package provider

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/vault/api"

	"github.com/okevault/vault-csi-provider/internal/config"
	"github.com/okevault/vault-csi-provider/internal/panics"
	"github.com/okevault/vault-csi-provider/internal/redact"
	"github.com/okevault/vault-csi-provider/internal/vault"
)

// TestReadWorkerPanicFailsOnlyItsMount injects a panic into a mount's read
// workers, the goroutines errgroup starts (and does not recover), and
// checks that only that batch fails, with ErrPanic, and the process goes
// on: the next batch on the same server reads normally. The fault is
// hand-written because nothing real panics on demand: the Vault client's
// transport asks its Proxy hook about each request in the calling
// goroutine, and the hook panics while armed.
func TestReadWorkerPanicFailsOnlyItsMount(t *testing.T) {
	vaultLike := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"data":{"k":"v"}}`))
	}))
	defer vaultLike.Close()
	var armed atomic.Bool
	armed.Store(true)
	cfg := api.DefaultConfig()
	cfg.Address = vaultLike.URL
	cfg.HttpClient.Transport = &http.Transport{Proxy: func(*http.Request) (*url.URL, error) {
		if armed.Load() {
			panic("injected fault in a read worker")
		}
		return nil, nil
	}}
	base, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := New(Options{Logger: slog.New(slog.DiscardHandler)})
	objects := []config.Object{{Name: "a", Path: "secret/a"}, {Name: "b", Path: "secret/b"}, {Name: "c", Path: "secret/c"}}
	lg := vault.Login{Token: redact.New("hvs.test")}
	before := panics.Count()

	out := map[string]*vault.Response{}
	_, _, err = s.readBatch(context.Background(), base, &session{}, lg, objects, out)
	if !errors.Is(err, panics.ErrPanic) {
		t.Fatalf("a batch whose workers panic: %v, want an error wrapping ErrPanic", err)
	}
	if panics.Count() == before {
		t.Error("the workers' panics were not counted")
	}

	armed.Store(false)
	out = map[string]*vault.Response{}
	if _, _, err := s.readBatch(context.Background(), base, &session{}, lg, objects, out); err != nil {
		t.Fatalf("the next batch, fault disarmed: %v", err)
	}
	if len(out) != len(objects) {
		t.Errorf("the next batch read %d objects, want %d", len(out), len(objects))
	}
}
