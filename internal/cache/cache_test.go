package cache

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/okevault/vault-csi-provider/internal/redact"
	"github.com/okevault/vault-csi-provider/internal/vault"
)

// loginCounter stands in for a Vault login: each call issues a new token.
type loginCounter struct{ n atomic.Int32 }

func (c *loginCounter) login(ttl time.Duration) func(context.Context) (vault.Login, error) {
	return func(context.Context) (vault.Login, error) {
		n := c.n.Add(1)
		return vault.Login{Token: redact.New(fmt.Sprintf("token-%d", n)), TTL: ttl}, nil
	}
}

func TestReuseUntilShortlyBeforeExpiry(t *testing.T) {
	l, err := New(10)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_000_000, 0)
	l.now = func() time.Time { return now }
	var c loginCounter
	ctx := t.Context()

	first, fresh, err := l.Get(ctx, "id", c.login(time.Hour))
	if err != nil || !fresh {
		t.Fatalf("first Get: fresh=%v err=%v", fresh, err)
	}
	now = now.Add(54 * time.Minute) // inside the 5-minute margin's bound
	again, fresh, _ := l.Get(ctx, "id", c.login(time.Hour))
	if fresh || again.Token.Reveal() != first.Token.Reveal() {
		t.Fatalf("at 54m: fresh=%v token=%s, want the cached token", fresh, again.Token.Reveal())
	}
	now = now.Add(2 * time.Minute) // 56m: within 5 minutes of the 1h TTL
	renewed, fresh, _ := l.Get(ctx, "id", c.login(time.Hour))
	if !fresh || renewed.Token.Reveal() == first.Token.Reveal() {
		t.Fatalf("at 56m: fresh=%v, want a new login", fresh)
	}
	if got := c.n.Load(); got != 2 {
		t.Errorf("%d logins, want 2", got)
	}
	if s := l.Stats(); s.Hits != 1 || s.Misses != 2 {
		t.Errorf("stats %+v, want 1 hit, 2 misses", s)
	}
}

func TestShortTTLMargin(t *testing.T) {
	l, _ := New(10)
	now := time.Unix(0, 0)
	l.now = func() time.Time { return now }
	var c loginCounter
	_, _, _ = l.Get(t.Context(), "id", c.login(time.Minute))
	now = now.Add(47 * time.Second) // a fifth of 60s is 12s: usable until 48s
	_, fresh, _ := l.Get(t.Context(), "id", c.login(time.Minute))
	if fresh {
		t.Error("at 47s of 60s: a new login, want the cached one")
	}
	now = now.Add(2 * time.Second)
	_, fresh, _ = l.Get(t.Context(), "id", c.login(time.Minute))
	if !fresh {
		t.Error("at 49s of 60s: the cached login, want a new one")
	}
}

func TestIdentitiesNeverShare(t *testing.T) {
	l, _ := New(10)
	var c loginCounter
	a, _, _ := l.Get(t.Context(), "pod-a-identity", c.login(time.Hour))
	b, _, _ := l.Get(t.Context(), "pod-b-identity", c.login(time.Hour))
	if a.Token.Reveal() == b.Token.Reveal() {
		t.Fatal("two identities got the same token")
	}
}

func TestLRUBound(t *testing.T) {
	l, _ := New(2)
	var c loginCounter
	for _, k := range []string{"a", "b", "c"} {
		if _, _, err := l.Get(t.Context(), k, c.login(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	if l.Len() != 2 {
		t.Errorf("Len = %d, want 2", l.Len())
	}
	if s := l.Stats(); s.Evictions != 1 {
		t.Errorf("evictions = %d, want 1", s.Evictions)
	}
	if _, fresh, _ := l.Get(t.Context(), "a", c.login(time.Hour)); !fresh {
		t.Error(`"a" should have been evicted`)
	}
}

func TestOneLoginInFlight(t *testing.T) {
	l, _ := New(10)
	var calls atomic.Int32
	release := make(chan struct{})
	login := func(context.Context) (vault.Login, error) {
		calls.Add(1)
		<-release
		return vault.Login{Token: redact.New("shared"), TTL: time.Hour}, nil
	}
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if lg, _, err := l.Get(context.Background(), "id", login); err != nil || lg.Token.Reveal() != "shared" {
				t.Errorf("Get = %v, %v", lg.Token.Reveal(), err)
			}
		}()
	}
	time.Sleep(20 * time.Millisecond) // let the waiters pile up behind the first login
	close(release)
	wg.Wait()
	if calls.Load() != 1 {
		t.Errorf("%d logins for 20 concurrent mounts of one identity, want 1", calls.Load())
	}
}

func TestCancelledWaiterDoesNotFailOthers(t *testing.T) {
	l, _ := New(10)
	release := make(chan struct{})
	login := func(ctx context.Context) (vault.Login, error) {
		select {
		case <-release:
			return vault.Login{Token: redact.New("t"), TTL: time.Hour}, nil
		case <-ctx.Done():
			return vault.Login{}, ctx.Err()
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { _, _, err := l.Get(ctx, "id", login); done <- err }()
	other := make(chan error)
	go func() { _, _, err := l.Get(context.Background(), "id", login); other <- err }()
	time.Sleep(10 * time.Millisecond)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled caller got %v", err)
	}
	close(release)
	if err := <-other; err != nil {
		t.Errorf("the other caller failed with its neighbour's cancellation: %v", err)
	}
}

func TestSharedLoginEndsAtStartersDeadline(t *testing.T) {
	l, _ := New(10)
	var ended atomic.Bool
	login := func(ctx context.Context) (vault.Login, error) {
		<-ctx.Done() // a Vault that never answers
		ended.Store(true)
		return vault.Login{}, ctx.Err()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, _, err := l.Get(ctx, "id", login); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want the deadline", err)
	}
	// The detached call must not outlive the deadline by more than a moment:
	// a mount joining it later would wait on a call that cannot help.
	time.Sleep(50 * time.Millisecond)
	if !ended.Load() {
		t.Error("the shared login still runs past the deadline of the mount that started it")
	}
}

func TestInvalidateOnlyTheFailedToken(t *testing.T) {
	l, _ := New(10)
	var c loginCounter
	old, _, _ := l.Get(t.Context(), "id", c.login(time.Hour))
	l.Invalidate("id", old)
	renewed, fresh, _ := l.Get(t.Context(), "id", c.login(time.Hour))
	if !fresh {
		t.Fatal("after Invalidate the old login was served")
	}
	l.Invalidate("id", old) // a late 403 for the old token must not drop the new one
	if got, fresh, _ := l.Get(t.Context(), "id", c.login(time.Hour)); fresh || got.Token.Reveal() != renewed.Token.Reveal() {
		t.Error("a stale Invalidate dropped the newer login")
	}
}

func TestLoginErrorNotCached(t *testing.T) {
	l, _ := New(10)
	fail := func(context.Context) (vault.Login, error) { return vault.Login{}, errors.New("denied") }
	if _, _, err := l.Get(t.Context(), "id", fail); err == nil {
		t.Fatal("error was swallowed")
	}
	if l.Len() != 0 {
		t.Error("a failed login was cached")
	}
}
