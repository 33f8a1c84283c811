package panics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync/atomic"
)

// ErrPanic marks work that panicked: Internal at the gRPC edge.
var ErrPanic = errors.New("internal error in the provider (a panic); see its log")

var count atomic.Uint64

// Count is how many panics were recovered since the process started.
func Count() uint64 { return count.Load() }

// Recover stops a panic in the goroutine that defers it (directly, as Go's
// recover requires): it logs what panicked and its stack to log (nil:
// slog's default, which the provider sets to its own), counts it, and sets
// *err (when err is not nil) to an error wrapping ErrPanic.
func Recover(ctx context.Context, log *slog.Logger, what string, err *error) {
	r := recover()
	if r == nil {
		return
	}
	count.Add(1)
	if log == nil {
		log = slog.Default()
	}
	log.LogAttrs(ctx, slog.LevelError, "panicked; only this work failed",
		slog.String("work", what), slog.String("stack", string(debug.Stack())))
	if err != nil {
		*err = fmt.Errorf("%s: %w", what, ErrPanic)
	}
}
