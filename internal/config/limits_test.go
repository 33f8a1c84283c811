package config

import (
	"fmt"
	"strings"
	"testing"
)

// objectList is n objects, each with its own file and path.
func objectList(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "- {objectName: f%d, secretPath: kv/s%d}\n", i, i)
	}
	return b.String()
}

// TestHostileSizes feeds the parser inputs sized to exhaust it. The hostile
// paths ("../", absolute, NUL) are in objectNameCases and parseErrorCases.
func TestHostileSizes(t *testing.T) {
	bigArgs := func(n int) string {
		return "- objectName: a\n  secretPath: transit/encrypt/k\n  method: PUT\n  secretArgs: {plaintext: " + strings.Repeat("A", n) + "}\n"
	}
	tests := []struct {
		name    string
		objects string
		param   string // "" means accepted
		msg     string
	}{
		{"the most objects a mount may have", objectList(maxObjects), "", ""},
		{"10,000 objects", objectList(10_000), "objects", "lists 10000 objects, more than the 1000"},
		{"secretArgs at the bound", bigArgs(maxArgs - len(`{"plaintext":""}`)), "", ""},
		{"2 MiB secretArgs", bigArgs(2 << 20), "objects[0].secretArgs", "more than the 1048576 allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := parseEdited(t, map[string]string{"objects": tt.objects}, Defaults{})
			if tt.param == "" {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if len(m.Objects) == 0 {
					t.Fatal("no objects")
				}
				return
			}
			wantError(t, err, tt.param, tt.msg)
			if len(err.Error()) > 400 {
				t.Errorf("the error is %d bytes: it must not echo the input", len(err.Error()))
			}
		})
	}
	t.Run("100 MB secretArgs", func(t *testing.T) {
		// Spliced rather than encoded: the parser must refuse it before
		// decoding, and so the test need not encode 100 MB either.
		base := baseAttrs()
		delete(base, "objects")
		attrs := strings.TrimSuffix(encode(t, base), "}") +
			`,"objects":"- objectName: a\n  secretPath: transit/encrypt/k\n  method: PUT\n  secretArgs: {plaintext: ` + strings.Repeat("A", 100<<20) + `}\n"}`
		_, err := Parse(attrs, testTarget, testPerm, Defaults{})
		wantError(t, err, "attributes", "more than the 4194304 a mount may carry")
	})
}
