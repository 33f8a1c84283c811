package render

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"testing"
	"time"
)

// nested is a value depth levels deep, maps and lists in turn, as Vault's
// JSON decodes to (encoding/json accepts 10,000 levels).
func nested(depth int) any {
	var v any = "x"
	for i := range depth {
		if i%2 == 0 {
			v = map[string]any{"a": v}
		} else {
			v = []any{v}
		}
	}
	return v
}

// allocated is the bytes f allocates (TotalAlloc's growth): what it builds,
// kept or not.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// run executes text over in and checks it fails with an *Error whose text
// holds want, allocating at most ceiling bytes.
func refused(t *testing.T, text string, in Input, want string, ceiling uint64) {
	t.Helper()
	tmpl, err := Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	n := allocated(func() { out, err = tmpl.Execute(t.Context(), in) })
	var re *Error
	if !errors.As(err, &re) || !strings.Contains(err.Error(), want) {
		t.Errorf("err = %v (output %d bytes), want an *Error saying %q", err, len(out), want)
	}
	if n > ceiling {
		t.Errorf("allocated %d KiB before refusing, over the ceiling of %d KiB", n>>10, ceiling>>10)
	}
	t.Logf("allocated %d KiB", n>>10)
}

// TestNestedSecretRefusedBeforeBuilt: a secret 10,000 levels deep, whose
// indented JSON or YAML grows with the square of its depth (hundreds of
// MiB), is refused before that output is built, not after.
func TestNestedSecretRefusedBeforeBuilt(t *testing.T) {
	in := Input{Data: map[string]any{"n": nested(10_000)}}
	for _, tc := range []struct {
		fn      string
		ceiling uint64
	}{
		// The walk that bounds the JSON allocates nothing.
		{"toJSONPretty", 1 << 20},
		// YAML's numbers are converted on a copy (charged as it is made)
		// and the encoder streams into a writer that stops at the bound.
		{"toYAML", 16 << 20},
	} {
		t.Run(tc.fn, func(t *testing.T) {
			refused(t, "{{ "+tc.fn+" .Data.n }}", in, fmt.Sprintf("more than %d bytes", MaxBuilt), tc.ceiling)
		})
	}
	// Compact JSON grows with the depth only: it is made.
	tmpl, err := Parse(`{{ $x := toJSON .Data.n }}{{ len $x }}`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tmpl.Execute(t.Context(), in); err != nil {
		t.Errorf("toJSON of the nested secret: %v", err)
	}
}

// TestFunctionsRefuseBeforeBuilding: each function whose output can be
// several times its input checks the bound before it builds anything.
func TestFunctionsRefuseBeforeBuilding(t *testing.T) {
	big := make(map[string]any, 400_000)
	for i := range 400_000 {
		big[fmt.Sprintf("k%07d", i)] = fmt.Sprintf("v%07d", i)
	}
	small := make(map[string]any, 1000)
	for i := range 1000 {
		small[fmt.Sprint(i)] = "v"
	}
	in := Input{Data: map[string]any{
		"quotes":  strings.Repeat(`"`, 1<<20),           // html: 5 bytes each
		"lt":      strings.Repeat("<", 1<<20),           // js, toJSON: 6 bytes each
		"lt2":     strings.Repeat("<", 2<<20),           // urlquery: 3 bytes each
		"s3":      strings.Repeat("a", 3<<20),           // %x: 2 bytes each
		"ctl":     strings.Repeat("\x01", 3<<19),        // %q: 4 bytes each
		"invalid": strings.Repeat("\xff", 3<<19),        // toUpper: U+FFFD, 3 bytes each
		"big":     big,                                  // 400,000 entries of ~18 bytes printed
		"list":    []any{big},                           // join formats its elements
		"small":   []any{small},                         // padded: 2 x 4096 bytes an entry
		"b64":     strings.Repeat("a", 3<<20+3),         // base64: 4 bytes per 3
		"n":       json.Number(strings.Repeat("9", 64)), // a number's text is Vault's
	}}
	for _, tc := range []struct{ name, text string }{
		{"html", `{{ html .Data.quotes }}`},
		{"js", `{{ js .Data.lt }}`},
		{"urlquery", `{{ urlquery .Data.lt2 }}`},
		{"printf %x", `{{ printf "%x" .Data.s3 }}`},
		{"printf %q", `{{ printf "%q" .Data.ctl }}`},
		{"printf %v of a map", `{{ printf "%v" .Data.big }}`},
		{"printf %4096v of a map", `{{ printf "%4096v" .Data.small }}`},
		{"print of a map", `{{ print .Data.big }}`},
		{"escaper of a map", `{{ html .Data.big .Data.big }}`},
		{"join", `{{ join "," .Data.list }}`},
		{"base64Encode", `{{ base64Encode .Data.b64 }}`},
		{"toUpper", `{{ toUpper .Data.invalid }}`},
		{"toJSON", `{{ toJSON .Data.lt }}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			refused(t, tc.text, in, fmt.Sprintf("more than %d bytes", MaxBuilt), 1<<20)
		})
	}
}

// TestRangeNearMaxInt64: ranging over a count near MaxInt64 after other
// steps fails at once with the step limit, and the count never goes past
// it (it used to overflow to a negative count and spin until the deadline).
func TestRangeNearMaxInt64(t *testing.T) {
	for _, text := range []string{
		`{{ range 9223372036854775807 }}{{ end }}`,
		`{{ range 1 }}{{ end }}{{ range 9223372036854775807 }}{{ end }}`,
		`{{ range 2 }}{{ range 9223372036854775807 }}{{ end }}{{ end }}`,
		`{{ range 3 }}{{ range 9223372036854775806 }}{{ range 9223372036854775806 }}{{ end }}{{ end }}{{ end }}`,
	} {
		t.Run(text, func(t *testing.T) {
			tmpl, err := Parse(text)
			if err != nil {
				t.Fatal(err)
			}
			// A deadline only so that the old, spinning code ends the test.
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			_, err = tmpl.Execute(ctx, input())
			if !strings.Contains(fmt.Sprint(err), fmt.Sprintf("more than %d steps", MaxSteps)) {
				t.Errorf("err = %v, want the step limit", err)
			}
			if tmpl.steps < 0 || tmpl.steps > MaxSteps {
				t.Errorf("the step count is %d, outside [0, %d]", tmpl.steps, MaxSteps)
			}
		})
	}
	// The counter saturates: a charge of MaxInt64 on a count already near
	// the limit neither wraps nor passes.
	tmpl := &Template{ctx: t.Context(), steps: MaxSteps - 1}
	if err := tmpl.step(math.MaxInt); err == nil || tmpl.steps != MaxSteps-1 {
		t.Errorf("step(MaxInt) at %d: err %v, count now %d", MaxSteps-1, err, tmpl.steps)
	}
}
