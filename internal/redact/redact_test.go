package redact

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestSecretNeverPrints(t *testing.T) {
	const value = "s.hunter2-token"
	s := New(value)
	type wrapper struct{ Token Secret }

	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	logger.Info("login", "token", s, "wrapped", wrapper{s})
	js, err := json.Marshal(wrapper{s})
	if err != nil {
		t.Fatal(err)
	}
	outputs := map[string]string{
		"%v":         fmt.Sprintf("%v", s),
		"%s":         fmt.Sprintf("[%s]", s),
		"%#v":        fmt.Sprintf("%#v", s),
		"%+v":        fmt.Sprintf("%+v", wrapper{s}),
		"%#v struct": fmt.Sprintf("%#v", wrapper{s}),
		"json":       string(js),
		"slog":       logs.String(),
		"error":      fmt.Errorf("login failed with %v", s).Error(),
	}
	for name, out := range outputs {
		if strings.Contains(out, value) {
			t.Errorf("%s leaks the value: %s", name, out)
		}
		if !strings.Contains(out, Redacted) {
			t.Errorf("%s does not say %s: %s", name, Redacted, out)
		}
	}
	if s.Reveal() != value {
		t.Errorf("Reveal() = %q, want the wrapped value", s.Reveal())
	}
}
