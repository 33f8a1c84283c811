package cache

import (
	"context"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/singleflight"

	"github.com/okevault/vault-csi-provider/internal/vault"
)

// Reads shares Vault read responses between mounts of one identity for a
// short TTL, so that a rotation pass over P pods of S service accounts costs
// one read per (identity, path) instead of one per pod. Only reads go
// through it: PUT/POST requests mint dynamic secrets and are never shared.
// A TTL of zero shares only reads in flight at the same moment.
type Reads struct {
	ttl time.Duration
	mu  sync.Mutex
	lru *lru.Cache[string, readEntry]
	// bytes is what the kept responses hold (vault.Response.Size), at most
	// maxBytes: a count of entries alone would let a few huge responses
	// take the provider's memory.
	bytes, maxBytes int64
	group           singleflight.Group
	now             func() time.Time
}

type readEntry struct {
	resp    *vault.Response
	expires time.Time
}

// NewReads keeps at most size responses, holding at most maxBytes
// together, for ttl each.
func NewReads(size int, maxBytes int64, ttl time.Duration) (*Reads, error) {
	r := &Reads{ttl: ttl, maxBytes: maxBytes, now: time.Now}
	c, err := lru.NewWithEvict(size, func(_ string, e readEntry) { r.bytes -= e.resp.Size })
	if err != nil {
		return nil, err
	}
	r.lru = c
	return r, nil
}

// Bytes is what the kept responses hold.
func (r *Reads) Bytes() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.bytes
}

// Get returns the response cached under key (an identity and a request), or
// runs read once across concurrent callers and caches a success. Responses
// are shared read-only.
func (r *Reads) Get(ctx context.Context, key string, read func(context.Context) (*vault.Response, error)) (*vault.Response, error) {
	r.mu.Lock()
	if e, ok := r.lru.Get(key); ok {
		if r.now().Before(e.expires) {
			r.mu.Unlock()
			return e.resp, nil
		}
		r.lru.Remove(key)
	}
	r.mu.Unlock()

	resp, shared, err := share(ctx, &r.group, key, read, func(resp *vault.Response) {
		if r.ttl <= 0 {
			return
		}
		// A GET can mint a dynamic secret (database/creds/...): one with a
		// lease is never kept for later mounts, which may be other pods;
		// the lease store (internal/leases) remembers it per pod instead.
		if _, leased := vault.LeaseOf(resp.Body); leased {
			return
		}
		if resp.Size > r.maxBytes {
			return
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		r.lru.Remove(key) // replacing an entry does not tell the callback
		r.lru.Add(key, readEntry{resp: resp, expires: r.now().Add(r.ttl)})
		r.bytes += resp.Size
		for r.bytes > r.maxBytes {
			r.lru.RemoveOldest()
		}
	})
	if err == nil && shared {
		// Mounts of several pods asked at once and a GET minted a dynamic
		// secret: each reads its own, so no two pods hold one lease.
		if _, leased := vault.LeaseOf(resp.Body); leased {
			return read(ctx)
		}
	}
	return resp, err
}
