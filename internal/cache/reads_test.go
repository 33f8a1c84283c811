package cache

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/okevault/vault-csi-provider/internal/vault"
)

func TestReadsShareWithinTTL(t *testing.T) {
	r, err := NewReads(10, 64<<20, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(0, 0)
	r.now = func() time.Time { return now }
	var calls atomic.Int32
	read := func(context.Context) (*vault.Response, error) {
		calls.Add(1)
		return &vault.Response{Body: []byte("v")}, nil
	}
	for range 3 {
		if _, err := r.Get(t.Context(), "id|secret/data/a", read); err != nil {
			t.Fatal(err)
		}
	}
	if calls.Load() != 1 {
		t.Errorf("%d reads within the TTL, want 1", calls.Load())
	}
	if _, err := r.Get(t.Context(), "other-id|secret/data/a", read); err != nil || calls.Load() != 2 {
		t.Errorf("another identity must read for itself: %d reads, %v", calls.Load(), err)
	}
	now = now.Add(11 * time.Second)
	if _, _ = r.Get(t.Context(), "id|secret/data/a", read); calls.Load() != 3 {
		t.Errorf("after the TTL: %d reads, want a fresh one (3)", calls.Load())
	}
}

func TestReadsZeroTTLCachesNothing(t *testing.T) {
	r, _ := NewReads(10, 64<<20, 0)
	var calls atomic.Int32
	read := func(context.Context) (*vault.Response, error) {
		calls.Add(1)
		return &vault.Response{}, nil
	}
	for range 3 {
		_, _ = r.Get(t.Context(), "k", read)
	}
	if calls.Load() != 3 {
		t.Errorf("with TTL 0, %d reads for 3 sequential mounts, want 3", calls.Load())
	}
}

func TestReadsErrorsNotCached(t *testing.T) {
	r, _ := NewReads(10, 64<<20, time.Minute)
	fail := func(context.Context) (*vault.Response, error) { return nil, errors.New("403") }
	if _, err := r.Get(t.Context(), "k", fail); err == nil {
		t.Fatal("error swallowed")
	}
	ok := func(context.Context) (*vault.Response, error) { return &vault.Response{Body: []byte("ok")}, nil }
	if resp, err := r.Get(t.Context(), "k", ok); err != nil || string(resp.Body) != "ok" {
		t.Errorf("after a failure: %v, %v", resp, err)
	}
}

func TestReadsDoNotKeepLeasedResponses(t *testing.T) {
	r, _ := NewReads(10, 64<<20, time.Minute)
	var calls atomic.Int32
	read := func(context.Context) (*vault.Response, error) {
		calls.Add(1)
		return &vault.Response{Body: []byte(`{"lease_id":"database/creds/app/x","lease_duration":3600,"data":{"username":"u"}}`)}, nil
	}
	for range 2 {
		if _, err := r.Get(t.Context(), "id|database/creds/app", read); err != nil {
			t.Fatal(err)
		}
	}
	if calls.Load() != 2 {
		t.Errorf("%d reads for two mounts of a leased GET, want 2: dynamic credentials are not shared by the read cache", calls.Load())
	}
}

func TestReadsDoNotShareLeasesInFlight(t *testing.T) {
	r, _ := NewReads(10, 64<<20, 0)
	var calls atomic.Int32
	release := make(chan struct{})
	read := func(context.Context) (*vault.Response, error) {
		n := calls.Add(1)
		if n == 1 {
			<-release // the first read holds the others in flight behind it
		}
		return &vault.Response{Body: []byte(fmt.Sprintf(`{"lease_id":"database/creds/app/%d","lease_duration":3600}`, n))}, nil
	}
	results := make(chan string, 3)
	for range 3 {
		go func() {
			resp, err := r.Get(context.Background(), "id|database/creds/app", read)
			if err != nil {
				results <- err.Error()
				return
			}
			l, _ := vault.LeaseOf(resp.Body)
			results <- l.ID
		}()
	}
	time.Sleep(20 * time.Millisecond) // let the mounts pile up behind the first read
	close(release)
	seen := map[string]bool{}
	for range 3 {
		seen[<-results] = true
	}
	if len(seen) != 3 {
		t.Errorf("3 concurrent mounts got leases %v, want 3 different ones", seen)
	}
}

// TestReadsBoundedInBytes: the oldest responses go to keep the cache within
// its bytes; one larger than all of them is not kept.
func TestReadsBoundedInBytes(t *testing.T) {
	r, err := NewReads(100, 250, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	sized := func(n int64) func(context.Context) (*vault.Response, error) {
		return func(context.Context) (*vault.Response, error) {
			calls.Add(1)
			return &vault.Response{Size: n}, nil
		}
	}
	for _, k := range []string{"a", "b", "c", "c"} {
		if _, err := r.Get(t.Context(), k, sized(100)); err != nil {
			t.Fatal(err)
		}
	}
	if r.Bytes() != 200 || calls.Load() != 3 {
		t.Errorf("%d bytes kept after %d reads; want 200 (b and c) after 3", r.Bytes(), calls.Load())
	}
	if _, _ = r.Get(t.Context(), "a", sized(100)); calls.Load() != 4 {
		t.Error(`"a" was served after its eviction`)
	}
	_, _ = r.Get(t.Context(), "huge", sized(251))
	_, _ = r.Get(t.Context(), "huge", sized(251))
	if calls.Load() != 6 {
		t.Errorf("a response over the bound was kept: %d reads, want 6", calls.Load())
	}
}
