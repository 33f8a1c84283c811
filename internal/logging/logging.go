// Package logging builds the provider's slog logger and routes klog (used by
// client-go) into it, so every line has one format.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"math"
	"strings"

	"k8s.io/klog/v2"
)

// LevelTrace is below debug; the peer's -log-level accepts "trace".
const LevelTrace = slog.LevelDebug - 4

// LevelOff is above every level: the peer's -log-level=off logs nothing.
const LevelOff = slog.Level(math.MaxInt)

// ParseLevel accepts the peer's -log-level values: trace, debug, info, warn,
// error and off.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "off":
		return LevelOff, nil
	case "trace":
		return LevelTrace, nil
	case "debug":
		return slog.LevelDebug, nil
	case "info", "":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("unknown log level %q: want trace, debug, info, warn, error or off", s)
}

// New returns a logger writing format ("json" or "text") at level to w, and
// makes it klog's sink.
func New(w io.Writer, format, level string) (*slog.Logger, error) {
	lvl, err := ParseLevel(level)
	if err != nil {
		return nil, err
	}
	opts := &slog.HandlerOptions{Level: lvl}
	var h slog.Handler
	switch format {
	case "json", "":
		h = slog.NewJSONHandler(w, opts)
	case "text":
		h = slog.NewTextHandler(w, opts)
	default:
		return nil, fmt.Errorf("unknown log format %q: want json or text", format)
	}
	if lvl == LevelOff {
		// klog hands errors to the handler without asking Enabled.
		h = slog.DiscardHandler
	}
	logger := slog.New(h)
	klog.SetSlogLogger(logger)
	return logger, nil
}
