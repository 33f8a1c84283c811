package budget

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
)

func TestMountAndPool(t *testing.T) {
	// Each mount in a namespace of its own: a namespace's share (8 MiB
	// here) is not what this test is about.
	p := NewPool(32 << 20)
	a, b, c, d := p.Mount("a", 8<<20), p.Mount("b", 8<<20), p.Mount("c", 8<<20), p.Mount("d", 8<<20)
	for _, m := range []*Mount{a, c, d} {
		if err := m.Take(7 << 20); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Take(2 << 20); !errors.Is(err, ErrExhausted) || !strings.Contains(err.Error(), "-max-mount-bytes") {
		t.Errorf("over the mount's budget: %v", err)
	}
	if err := b.Take(4 << 20); !errors.Is(err, ErrExhausted) || !strings.Contains(err.Error(), "-max-total-bytes") {
		t.Errorf("a fourth large mount over the pool's first three quarters: %v", err)
	}
	// A small mount may use the reserve the large ones may not.
	if err := b.Take(512 << 10); err != nil {
		t.Errorf("a small mount: %v", err)
	}
	a.Give(1 << 20)
	if got := p.Used(); got != 20<<20+512<<10 {
		t.Errorf("used = %d after a refund", got)
	}
	for _, m := range []*Mount{a, b, c, d} {
		m.Close()
	}
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
	if (*Pool)(nil).Mount("ns", 1) != nil {
		t.Error("a nil pool gave a budget")
	}
}

// TestConcurrentMounts: however mounts race, the pool never goes over, and
// every byte comes back.
func TestConcurrentMounts(t *testing.T) {
	p := NewPool(1 << 20)
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Go(func() {
			m := p.Mount(fmt.Sprint("ns", i%5), 1<<20)
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

// TestNamespaceShare: mounts of one namespace together hold at most a
// quarter of the pool, so while they hold all they may, another
// namespace's mount still gets what it asks for.
func TestNamespaceShare(t *testing.T) {
	p := NewPool(32 << 20)
	var greedy []*Mount
	defer func() {
		for _, m := range greedy {
			m.Close()
		}
	}()
	// Many small mounts (each under the 1 MiB that may use the reserve),
	// as slow-drip pods make, until the namespace is refused.
	var held int64
	for range 64 {
		m := p.Mount("greedy", 16<<20)
		greedy = append(greedy, m)
		if err := m.Take(1000 << 10); err != nil {
			if !errors.Is(err, ErrExhausted) || !strings.Contains(err.Error(), `namespace "greedy"`) || !strings.Contains(err.Error(), "-max-total-bytes") {
				t.Fatalf("refusal does not name the namespace and the flag: %v", err)
			}
			break
		}
		held += 1000 << 10
	}
	if held > 8<<20 {
		t.Fatalf("one namespace holds %d bytes, over a quarter of the pool (%d)", held, 8<<20)
	}
	if held < 7<<20 {
		t.Fatalf("one namespace was refused at %d bytes, well under its share", held)
	}
	// One large mount of the same namespace is held to the share too.
	big := p.Mount("greedy2", 16<<20)
	defer big.Close()
	if err := big.Take(9 << 20); !errors.Is(err, ErrExhausted) {
		t.Errorf("a mount over its namespace's share: %v", err)
	}
	if err := big.Take(8 << 20); err != nil {
		t.Errorf("a mount of another namespace, up to its share: %v", err)
	}
	innocent := p.Mount("shop", 16<<20)
	defer innocent.Close()
	if err := innocent.Take(4 << 20); err != nil {
		t.Errorf("another namespace's mount while one holds its share: %v", err)
	}
	// Bytes given back are the namespace's again.
	for _, m := range greedy {
		m.Close()
	}
	again := p.Mount("greedy", 16<<20)
	defer again.Close()
	if err := again.Take(6 << 20); err != nil {
		t.Errorf("the namespace after its mounts ended: %v", err)
	}
}
