package render

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"text/template"
	"time"
)

// writes is a hand-written fake Budget that counts the template's
// non-empty writes and charges nothing: a template that writes one byte
// per iteration tells the test how many iterations ran before it stopped
// (the real budget counts bytes, not calls; every action writes, if only
// nothing).
type writes struct{ n int }

func (w *writes) Take(n int64) error {
	if n > 0 {
		w.n++
	}
	return nil
}

// long is a 2 MiB string ending in last, in its own allocation so that no
// comparison is cut short by two strings sharing their bytes.
func long(last byte) string {
	return strings.Repeat("x", 2<<20-1) + string(last)
}

// TestLongComparisonsCostSteps: builtins that compare or hash two 2 MiB
// secrets are charged for the bytes they compare, so 300,000 of them stop
// at the step limit after a few hundred comparisons, not at the mount's
// deadline (they used to run for tens of seconds). Each iteration writes
// once after its comparison: the count of writes is the count of
// comparisons done, which the charge bounds.
func TestLongComparisonsCostSteps(t *testing.T) {
	m := map[string]any{long('a'): "v", long('b'): "w"}
	data := map[string]any{"a": long('a'), "b": long('a'), "c": long('b'), "m": m}
	// At least 2,048 steps (2 MiB / 1 KiB) per comparison: at most
	// MaxSteps/2048 of them fit.
	const most = MaxSteps / 2048
	for _, tc := range []struct{ name, text string }{
		{"eq", `{{ $a := .Data.a }}{{ $b := .Data.b }}{{ range 300000 }}{{ if eq $a $b }}{{ end }}.{{ end }}`},
		{"ne", `{{ $a := .Data.a }}{{ $b := .Data.b }}{{ range 300000 }}{{ if ne $a $b }}{{ end }}.{{ end }}`},
		{"lt", `{{ $a := .Data.a }}{{ $c := .Data.c }}{{ range 300000 }}{{ if lt $a $c }}{{ end }}.{{ end }}`},
		{"ge", `{{ $a := .Data.a }}{{ $c := .Data.c }}{{ range 300000 }}{{ if ge $a $c }}{{ end }}.{{ end }}`},
		{"index", `{{ $m := .Data.m }}{{ $k := .Data.a }}{{ range 300000 }}{{ if index $m $k }}{{ end }}.{{ end }}`},
		// break leaves the inner range at once: what is left is entering
		// it, where text/template sorts the two 2 MiB keys.
		{"range over a map", `{{ $m := .Data.m }}{{ range 300000 }}{{ range $m }}{{ break }}{{ end }}.{{ end }}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmpl, err := Parse(tc.text)
			if err != nil {
				t.Fatal(err)
			}
			// A deadline only so that code without the charge ends the test; long
			// enough that -race on a loaded machine never reaches it with the charge.
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			w := &writes{}
			start := time.Now()
			_, err = tmpl.Execute(ctx, Input{Data: data, Budget: w})
			elapsed := time.Since(start)
			// The measure of the worst case (go test -run TestLongComparisonsCostSteps -v ./internal/render).
			t.Logf("%d comparisons in %v (%v each)", w.n, elapsed, elapsed/time.Duration(max(w.n, 1)))
			if !strings.Contains(fmt.Sprint(err), fmt.Sprintf("more than %d steps", MaxSteps)) {
				t.Errorf("err = %v, want the step limit", err)
			}
			if w.n > most {
				t.Errorf("%d comparisons of 2 MiB ran, over the %d the steps allow", w.n, most)
			}
		})
	}
}

// TestComparisonsAsBuiltins: the charged eq, ne, lt, le, gt, ge and index
// give what text/template's own give, and fail where they fail, for the
// values a template sees (Vault's JSON decoded with numbers kept, and the
// template's literals). Each template runs under a plain text/template and
// under Parse; errors are compared by presence only (the charged ones name
// no value).
func TestComparisonsAsBuiltins(t *testing.T) {
	data := map[string]any{
		"s": "abc", "s2": "abd", "e": "", "n": json.Number("5432"), "n2": json.Number("10"),
		"t": true, "f": false, "nil": nil,
		"l": []any{"a", json.Number("1"), []any{"x"}}, "m": map[string]any{"k": "v", "abc": map[string]any{"z": "y"}, "": "empty"},
		"secret": map[string]any{"p": secretValue},
	}
	operands := []string{
		".Data.s", ".Data.s2", ".Data.e", ".Data.n", ".Data.n2", ".Data.t", ".Data.f", ".Data.nil", ".Data.l", ".Data.m",
		`"abc"`, `"5432"`, "1", "-1", "0", "97", "1.5", "5432.0", "true", "1i", `(index "abc" 0)`, `(index .Data.l 1)`,
	}
	var texts []string
	for _, fn := range []string{"eq", "ne", "lt", "le", "gt", "ge"} {
		for _, a := range operands {
			for _, b := range operands {
				texts = append(texts, fmt.Sprintf("{{ %s %s %s }}", fn, a, b))
			}
		}
	}
	texts = append(texts,
		`{{ eq .Data.s "x" "abc" }}`, `{{ eq .Data.s "x" "y" }}`, `{{ eq 1 2 1 }}`, `{{ eq .Data.s 1 "abc" }}`,
		`{{ eq .Data.s "abc" 1 }}`, `{{ eq .Data.nil "x" .Data.nil }}`, `{{ eq .Data.s }}`, `{{ eq }}`, `{{ ne .Data.s }}`,
		`{{ eq .Data.l .Data.l }}`, `{{ eq .Data.m .Data.l }}`, `{{ eq .Data.secret .Data.l }}`, `{{ eq .Data.l .Data.secret }}`,
		`{{ eq .Data.m .Data.nil }}`, `{{ eq .Data.nil .Data.m }}`, `{{ eq .Data.nil .Data.nil }}`,
		`{{ index .Data.m "k" }}`, `{{ index .Data.m "nope" }}`, `{{ index .Data.m .Data.s "z" }}`, `{{ index .Data.m .Data.e }}`,
		`{{ index .Data.m .Data.n }}`, `{{ index .Data.m 1 }}`, `{{ index .Data.m .Data.nil }}`, `{{ index .Data.m .Data.t }}`,
		`{{ index .Data.l 0 }}`, `{{ index .Data.l 2 0 }}`, `{{ index .Data.l 3 }}`, `{{ index .Data.l -1 }}`, `{{ index .Data.l 9999999999 }}`,
		`{{ index .Data.l "0" }}`, `{{ index .Data.l .Data.n }}`, `{{ index .Data.l 1.0 }}`, `{{ index .Data.l .Data.nil }}`, `{{ index .Data.l true }}`,
		`{{ index .Data.s 0 }}`, `{{ index .Data.s 2 }}`, `{{ index .Data.s 3 }}`, `{{ index .Data.s (index "abc" 1) }}`, `{{ index .Data.e 0 }}`,
		`{{ index .Data.n 0 }}`, `{{ index .Data.t 0 }}`, `{{ index .Data.nil 0 }}`, `{{ index .Data.nil }}`, `{{ index .Data.m }}`,
		`{{ index .Data.m "k" 0 }}`, `{{ index .Data.m "nope" "k" }}`, `{{ index .Data.l 0 0 0 }}`, `{{ index . "Data" }}`,
		`{{ index .Objects "db" "username" }}`, `{{ index .Objects "nope" "username" }}`, `{{ index .Objects .Data.n }}`,
		`{{ index 1 0 }}`, `{{ index "abc" 1 }}`, `{{ index .Data "s" }}`, `{{ index .Data.secret "p" 0 }}`,
		`{{ if lt (index .Data.s 0) 98 }}y{{ end }}`, `{{ le (index .Data.s 0) 97 }}`, `{{ gt -1 (index .Data.s 0) }}`,
	)
	objects := map[string]map[string]any{"db": {"username": "dbuser"}}
	dot := struct {
		Data    map[string]any
		Objects map[string]map[string]any
	}{data, objects}
	for _, text := range texts {
		plain, err := template.New("t").Option("missingkey=error").Parse(text)
		if err != nil {
			t.Fatalf("%s: %v", text, err)
		}
		var want strings.Builder
		wantErr := plain.Execute(&want, dot)
		tmpl, err := Parse(text)
		if err != nil {
			t.Fatalf("%s: %v", text, err)
		}
		got, err := tmpl.Execute(t.Context(), Input{Data: data, Objects: objects})
		switch {
		case (err == nil) != (wantErr == nil):
			t.Errorf("%s: err = %v, text/template's %v", text, err, wantErr)
		case err == nil && string(got) != want.String():
			t.Errorf("%s = %q, text/template's %q", text, got, want.String())
		case err != nil && strings.Contains(err.Error(), secretValue):
			t.Errorf("%s: the error shows a secret value: %v", text, err)
		}
		var re *Error
		if err != nil && !errors.As(err, &re) {
			t.Errorf("%s: err = %v, want an *Error", text, err)
		}
	}
}

// TestScansAndChainsCostSteps: what costs more than a node without making
// bytes is charged too: trimSpace and base64Decode scan a 2 MiB secret of
// spaces and make nothing, and a field chain 5,000 fields long into a
// secret as deep is a lookup per field. Each stops at the step limit
// after a bounded count of iterations, not at the mount's deadline.
func TestScansAndChainsCostSteps(t *testing.T) {
	var deep any = "x"
	for range 5000 {
		deep = map[string]any{"a": deep}
	}
	chain := "$.Data.deep" + strings.Repeat(".a", 4999)
	data := map[string]any{"sp": strings.Repeat(" ", 2<<20), "deep": deep}
	// Each template first spends 600,000 steps on an empty range (entering
	// it and a step per iteration), and 300,000 entering its loop, so that
	// what is left allows a few iterations: the race detector slows these
	// scans thirtyfold.
	const spend = `{{ range 300000 }}{{ end }}`
	const left = MaxSteps - 900_000
	for _, tc := range []struct {
		name, text string
		most       int
	}{
		{"trimSpace", `{{ $s := .Data.sp }}{{ range 300000 }}{{ $x := trimSpace $s }}.{{ end }}`, left / 2048},
		{"base64Decode", `{{ $s := .Data.sp }}{{ range 300000 }}{{ $x := base64Decode $s }}.{{ end }}`, left / 2048},
		{"field chain", `{{ range 300000 }}{{ $x := ` + chain + ` }}.{{ end }}`, left / 5000},
		{"field chain on a variable", `{{ $d := .Data.deep }}{{ range 300000 }}{{ $x := $d` + strings.Repeat(".a", 4999) + ` }}.{{ end }}`, left / 5000},
		{"field chain on a call", `{{ range 300000 }}{{ $x := (index $.Data "deep")` + strings.Repeat(".a", 4999) + ` }}.{{ end }}`, left / 5000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmpl, err := Parse(spend + tc.text)
			if err != nil {
				t.Fatal(err)
			}
			// A deadline only so that code without the charge ends the test; long
			// enough that -race on a loaded machine never reaches it with the charge.
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			w := &writes{}
			start := time.Now()
			_, err = tmpl.Execute(ctx, Input{Data: data, Budget: w})
			t.Logf("%d iterations in %v", w.n, time.Since(start))
			if !strings.Contains(fmt.Sprint(err), fmt.Sprintf("more than %d steps", MaxSteps)) {
				t.Errorf("err = %v, want the step limit", err)
			}
			if w.n == 0 || w.n > tc.most {
				t.Errorf("%d iterations ran, want 1 to the %d the steps allow", w.n, tc.most)
			}
		})
	}
}
