// Package mlog is a local stand-in for monis.app/mlog, which the Go module proxy
// does not serve. It covers only the calls the Secrets Store CSI Driver makes,
// on top of klog.
package mlog

import (
	"context"
	"fmt"
	"os"

	"k8s.io/klog/v2"
)

// LogFormat is the driver's choice of log format; klog's text format is used for both.
type LogFormat string

const (
	FormatText LogFormat = "text"
	FormatJSON LogFormat = "json"
)

// Setup returns the function that flushes logs on exit.
func Setup() func() { return klog.Flush }

// ValidateAndSetKlogLevelAndFormatGlobally accepts any non-negative level.
func ValidateAndSetKlogLevelAndFormatGlobally(_ context.Context, level klog.Level, _ LogFormat) error {
	if level < 0 {
		return fmt.Errorf("invalid log level %d", level)
	}
	return nil
}

// Error logs err with msg.
func Error(msg string, err error, keysAndValues ...any) {
	klog.ErrorS(err, msg, keysAndValues...)
}

// Fatal logs err and exits.
func Fatal(err error, keysAndValues ...any) {
	klog.ErrorS(err, "fatal error", keysAndValues...)
	klog.Flush()
	os.Exit(1)
}
