package panics

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

func TestRecover(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	before := Count()
	work := func(fail bool) (err error) {
		defer Recover(t.Context(), log, "a test read", &err)
		if fail {
			panic("hvs.secret-token")
		}
		return nil
	}
	if err := work(true); !errors.Is(err, ErrPanic) || !strings.Contains(err.Error(), "a test read") {
		t.Errorf("a panicking call returned %v, want ErrPanic naming the work", err)
	}
	if err := work(false); err != nil {
		t.Errorf("the next call: %v", err)
	}
	if got := Count() - before; got != 1 {
		t.Errorf("counted %d panics, want 1", got)
	}
	if !strings.Contains(logs.String(), `"work":"a test read"`) || strings.Contains(logs.String(), "hvs.secret-token") {
		t.Errorf("the log must name the work and not hold the panic's value:\n%s", logs.String())
	}
}
