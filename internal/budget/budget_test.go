package budget

import (
	"errors"
	"strings"
	"sync"
	"testing"
)

func TestMountAndPool(t *testing.T) {
	p := NewPool(8 << 20)
	a, b, c := p.Mount(4<<20), p.Mount(4<<20), p.Mount(4<<20)
	for _, m := range []*Mount{a, c} {
		if err := m.Take(3 << 20); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Take(2 << 20); !errors.Is(err, ErrExhausted) || !strings.Contains(err.Error(), "-max-mount-bytes") {
		t.Errorf("over the mount's budget: %v", err)
	}
	if err := b.Take(2 << 20); !errors.Is(err, ErrExhausted) || !strings.Contains(err.Error(), "-max-total-bytes") {
		t.Errorf("a second large mount over the pool's first three quarters: %v", err)
	}
	// A small mount may use the reserve the large ones may not.
	if err := b.Take(512 << 10); err != nil {
		t.Errorf("a small mount: %v", err)
	}
	a.Give(1 << 20)
	if got := p.Used(); got != 5<<20+512<<10 {
		t.Errorf("used = %d after a refund", got)
	}
	a.Close()
	b.Close()
	c.Close()
	if p.Used() != 0 {
		t.Errorf("used = %d after every mount closed", p.Used())
	}
	// A read shared with other mounts, going on after the mount that
	// started it: it may hold nothing more.
	if err := a.Take(1); !errors.Is(err, ErrExhausted) {
		t.Errorf("a charge after Close: %v", err)
	}
	a.Give(1 << 20)
	if p.Used() != 0 {
		t.Errorf("charges or refunds after Close reached the pool: %d", p.Used())
	}
	var none *Mount
	if err := none.Take(1 << 40); err != nil {
		t.Errorf("a nil budget refused: %v", err)
	}
	if (*Pool)(nil).Mount(1) != nil {
		t.Error("a nil pool gave a budget")
	}
}

// TestConcurrentMounts: however mounts race, the pool never goes over, and
// every byte comes back.
func TestConcurrentMounts(t *testing.T) {
	p := NewPool(1 << 20)
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			m := p.Mount(1 << 20)
			defer m.Close()
			for range 1000 {
				if m.Take(4096) == nil && p.Used() > 1<<20 {
					t.Error("the pool went over its limit")
				}
			}
		})
	}
	wg.Wait()
	if p.Used() != 0 {
		t.Errorf("used = %d after every mount closed", p.Used())
	}
}
