// Package cache keeps Vault logins per identity so that a storm of mounts, or
// the driver's rotation poll, costs one login per identity per token lifetime
// instead of one per mount. It is bounded (LRU), entries expire shortly before
// their Vault token does, and only one login per identity is in flight.
package cache

import (
	"context"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/singleflight"

	"github.com/okevault/vault-csi-provider/internal/vault"
)

// Stats are the cache's counters, for metrics.
type Stats struct{ Hits, Misses, Evictions uint64 }

// Logins caches vault.Login values by an opaque identity key.
type Logins struct {
	mu    sync.Mutex
	lru   *lru.Cache[string, entry]
	group singleflight.Group
	stats Stats
	now   func() time.Time
}

type entry struct {
	login       vault.Login
	usableUntil time.Time // zero: no expiry
}

// New returns a cache holding at most size identities.
func New(size int) (*Logins, error) {
	c, err := lru.New[string, entry](size)
	if err != nil {
		return nil, err
	}
	return &Logins{lru: c, now: time.Now}, nil
}

// Get returns the cached login for key, or runs login (once across
// concurrent callers with the same key) and caches its result. fresh is true
// when the login was made for this call or a concurrent one, so a 403 with it
// means the policy, not the token, is wrong.
func (l *Logins) Get(ctx context.Context, key string, login func(context.Context) (vault.Login, error)) (_ vault.Login, fresh bool, _ error) {
	l.mu.Lock()
	if e, ok := l.lru.Get(key); ok {
		if e.usableUntil.IsZero() || l.now().Before(e.usableUntil) {
			l.stats.Hits++
			l.mu.Unlock()
			return e.login, false, nil
		}
		l.lru.Remove(key)
	}
	l.stats.Misses++
	l.mu.Unlock()

	lg, err := Shared(ctx, &l.group, key, login, func(lg vault.Login) {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.lru.Add(key, entry{login: lg, usableUntil: l.usableUntil(lg.TTL)}) {
			l.stats.Evictions++
		}
	})
	return lg, err == nil, err
}

// usableUntil leaves a margin before the token's end: a fifth of its TTL, at
// most five minutes, so a read never races the token's expiry.
func (l *Logins) usableUntil(ttl time.Duration) time.Time {
	if ttl <= 0 {
		return time.Time{}
	}
	return l.now().Add(ttl - min(ttl/5, 5*time.Minute))
}

// Invalidate drops key's login if it is still the one that failed, so a
// login made meanwhile by another mount survives.
func (l *Logins) Invalidate(key string, failed vault.Login) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.lru.Peek(key); ok && e.login.Token.Reveal() == failed.Token.Reveal() {
		l.lru.Remove(key)
	}
}

// Stats returns a snapshot of the counters.
func (l *Logins) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stats
}

// Len is the number of cached identities.
func (l *Logins) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lru.Len()
}
