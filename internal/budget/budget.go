// Package budget bounds the bytes the provider holds for mounts: each
// mount has its own budget, drawn from one process-wide pool, so neither
// one SecretProviderClass nor many together can take the node's provider
// down. Bytes are charged as they arrive (response bodies as they are read,
// their decoded form before it is built, files as they are made) and all
// of a mount's are given back when it ends, failed or not.
package budget

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// ErrExhausted marks a charge over a budget: ResourceExhausted at the edge.
var ErrExhausted = errors.New("memory budget exhausted")

// small is what a mount may hold and still draw on the pool's reserve.
const small = 1 << 20

// Pool is the process-wide budget that mounts draw from. Its last quarter
// is kept for mounts holding under 1 MiB, which are nearly all of them: a
// few mounts each holding much cannot starve the others.
type Pool struct {
	limit int64
	used  atomic.Int64
}

// NewPool returns a pool of limit bytes.
func NewPool(limit int64) *Pool { return &Pool{limit: limit} }

// Used is how many bytes mounts hold now.
func (p *Pool) Used() int64 { return p.used.Load() }

// Mount opens a mount's budget of limit bytes, drawn from p. Close it when
// the mount ends. A nil pool gives a nil budget, which charges nothing.
func (p *Pool) Mount(_ string, limit int64) *Mount {
	if p == nil {
		return nil
	}
	return &Mount{pool: p, limit: limit}
}

// Mount is one mount's budget. A nil *Mount charges nothing. Calls may
// come from the mount's goroutines, and from a login or read it shared with
// other mounts, which can go on after it ends: after Close a charge fails,
// so such a call cannot hold more than it could before (it would decode a
// response no budget counts), and a refund is ignored.
type Mount struct {
	pool   *Pool
	limit  int64
	mu     sync.Mutex
	used   int64
	closed bool
}

// Take charges n bytes, or fails with an error wrapping ErrExhausted and
// charges nothing.
func (m *Mount) Take(n int64) error {
	if m == nil || n <= 0 {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.closed:
		return fmt.Errorf("%w: the mount that started this shared call has ended", ErrExhausted)
	case m.used+n > m.limit:
		return fmt.Errorf("%w: the mount would hold more than %d bytes (-max-mount-bytes)", ErrExhausted, m.limit)
	}
	limit := m.pool.limit
	if m.used+n > small {
		limit -= limit / 4
	}
	// Compare and swap, so the pool's count never shows more than it
	// allows, even for a moment.
	for {
		cur := m.pool.used.Load()
		if cur+n > limit {
			return fmt.Errorf("%w: mounts on this node together would hold more than %d bytes (-max-total-bytes); the mount may succeed once others end", ErrExhausted, m.pool.limit)
		}
		if m.pool.used.CompareAndSwap(cur, cur+n) {
			m.used += n
			return nil
		}
	}
}

// Give refunds n bytes charged before.
func (m *Mount) Give(n int64) {
	if m == nil || n <= 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return // Close refunded everything
	}
	n = min(n, m.used)
	m.used -= n
	m.pool.used.Add(-n)
}

// Close gives back everything the mount holds.
func (m *Mount) Close() {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.closed {
		m.closed = true
		m.pool.used.Add(-m.used)
		m.used = 0
	}
}
