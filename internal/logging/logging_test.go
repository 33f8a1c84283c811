package logging

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"

	"k8s.io/klog/v2"
)

func TestNew(t *testing.T) {
	var buf bytes.Buffer
	logger, err := New(&buf, "json", "debug")
	if err != nil {
		t.Fatal(err)
	}
	logger.Debug("hello", "k", "v")
	klog.InfoS("from klog", "component", "client-go")
	klog.Flush()

	var lines []map[string]any
	for _, l := range bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n")) {
		var m map[string]any
		if err := json.Unmarshal(l, &m); err != nil {
			t.Fatalf("line %q is not JSON: %v", l, err)
		}
		lines = append(lines, m)
	}
	if len(lines) != 2 || lines[0]["msg"] != "hello" || lines[1]["msg"] != "from klog" {
		t.Fatalf("got %v, want the slog line then the klog line", lines)
	}
}

func TestLevelOff(t *testing.T) {
	var buf bytes.Buffer
	logger, err := New(&buf, "json", "off")
	if err != nil {
		t.Fatal(err)
	}
	logger.Error("even an error")
	klog.ErrorS(nil, "nor klog")
	klog.Flush()
	if buf.Len() > 0 {
		t.Errorf("-log-level=off wrote %q", buf.String())
	}
}

func TestParseLevel(t *testing.T) {
	for in, want := range map[string]slog.Level{"trace": LevelTrace, "debug": slog.LevelDebug, "": slog.LevelInfo, "INFO": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError, "off": LevelOff} {
		got, err := ParseLevel(in)
		if err != nil || got != want {
			t.Errorf("ParseLevel(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseLevel("loud"); err == nil {
		t.Error("ParseLevel(loud) succeeded")
	}
	if _, err := New(&bytes.Buffer{}, "xml", "info"); err == nil {
		t.Error(`New with format "xml" succeeded`)
	}
}
