package cache

import (
	"context"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sync/singleflight"
)

// TestSharedPanicFailsOnlyThatCall: a panic in a call shared by several
// mounts fails each of them with an error (singleflight alone re-raises it
// where nothing can recover, ending the process), and the next call runs.
func TestSharedPanicFailsOnlyThatCall(t *testing.T) {
	var g singleflight.Group
	started, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Go(func() {
			_, errs[i] = Shared(context.Background(), &g, "login", func(context.Context) (string, error) {
				// The first caller's call; the others join it, or, if
				// it ended already, panic in their own.
				once.Do(func() { close(started) })
				<-release
				panic("injected panic in a shared login")
			}, func(string) {})
		})
		if i == 0 {
			<-started
		}
	}
	close(release)
	wg.Wait()
	for i, err := range errs {
		if err == nil || !strings.Contains(err.Error(), "panic") {
			t.Errorf("caller %d: %v, want an error saying the call panicked", i, err)
		}
	}
	v, err := Shared(context.Background(), &g, "login", func(context.Context) (string, error) { return "ok", nil }, func(string) {})
	if v != "ok" || err != nil {
		t.Errorf("the next call: %q, %v", v, err)
	}
}
