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
)

// ErrExhausted marks a charge over a budget: ResourceExhausted at the edge.
var ErrExhausted = errors.New("memory budget exhausted")

// small is what a mount may hold and still draw on the pool's reserve.
const small = 1 << 20

// Pool is the process-wide budget that mounts draw from. Its last quarter
// is kept for mounts holding under 1 MiB, which are nearly all of them: a
// few mounts each holding much cannot starve the others.
//
// The mounts of one namespace hold at most a quarter of it together. A
// namespace is a tenant's unit: its SecretProviderClasses serve only its own
// pods, so whoever can create pods there can start as many mounts as they
// like, each under -max-mount-bytes, against a server of their own that
// answers slowly. Capped at a quarter, such a namespace leaves three
// quarters to every other one, so at least three others at their own cap
// (or any number of ordinary ones) still mount. The cap is fixed rather than
// dynamic (more while no one else asks) because bytes cannot be taken back
// from a mount in flight: a share lent while the pool is idle would be held
// when another namespace comes. A single mount can therefore hold no more
// than a quarter of the pool, whatever -max-mount-bytes says.
type Pool struct {
	limit int64
	mu    sync.Mutex
	used  int64
	// namespaces is what each namespace's mounts hold; a namespace is
	// dropped when it holds nothing, so it is bounded by the mounts in
	// flight, not by the names pods send.
	namespaces map[string]int64
}

// NewPool returns a pool of limit bytes.
func NewPool(limit int64) *Pool { return &Pool{limit: limit, namespaces: map[string]int64{}} }

// Used is how many bytes mounts hold now.
func (p *Pool) Used() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.used
}

// take charges n bytes to namespace ns for a mount that would then hold
// total, or fails and charges nothing.
func (p *Pool) take(ns string, n, total int64) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if share := p.limit / 4; p.namespaces[ns]+n > share {
		return fmt.Errorf("%w: the mounts of namespace %q would hold more than %d bytes, a quarter of -max-total-bytes; the mount may succeed once the namespace's others end", ErrExhausted, ns, share)
	}
	limit := p.limit
	if total > small {
		limit -= limit / 4
	}
	if p.used+n > limit {
		return fmt.Errorf("%w: mounts on this node together would hold more than %d bytes (-max-total-bytes); the mount may succeed once others end", ErrExhausted, p.limit)
	}
	p.used += n
	p.namespaces[ns] += n
	return nil
}

// give refunds n bytes of namespace ns.
func (p *Pool) give(ns string, n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.used -= n
	if p.namespaces[ns] -= n; p.namespaces[ns] <= 0 {
		delete(p.namespaces, ns)
	}
}

// Mount opens a mount's budget of limit bytes for a pod of namespace ns,
// drawn from p. Close it when the mount ends. A nil pool gives a nil
// budget, which charges nothing.
func (p *Pool) Mount(ns string, limit int64) *Mount {
	if p == nil {
		return nil
	}
	return &Mount{pool: p, namespace: ns, limit: limit}
}

// Mount is one mount's budget. A nil *Mount charges nothing. Calls may
// come from the mount's goroutines, and from a login or read it shared with
// other mounts, which can go on after it ends: after Close a charge fails,
// so such a call cannot hold more than it could before (it would decode a
// response no budget counts), and a refund is ignored.
type Mount struct {
	pool      *Pool
	namespace string
	limit     int64
	mu        sync.Mutex
	used      int64
	closed    bool
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
	if err := m.pool.take(m.namespace, n, m.used+n); err != nil {
		return err
	}
	m.used += n
	return nil
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
	m.pool.give(m.namespace, n)
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
		m.pool.give(m.namespace, m.used)
		m.used = 0
	}
}
