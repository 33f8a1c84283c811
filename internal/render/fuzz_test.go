package render

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"text/template"
)

// FuzzExecuteBounded runs whatever template text parses and checks that
// execution stays within its bounds: it returns (the steps and the bytes
// functions make are bounded, so it cannot run away), writes at most
// MaxOutput, and never quotes a secret value in an error.
func FuzzExecuteBounded(f *testing.F) {
	for _, seed := range []string{
		"{{ .Data.user }}",
		`{{ range $k, $v := object "db" }}{{ $k }}={{ $v }};{{ end }}`,
		`{{ printf "%s=%05d" .Data.user 42 }}`,
		`{{ $s := "xx" }}{{ range 64 }}{{ $s = printf "%s%s" $s $s }}{{ end }}`,
		`{{ range 1000000 }}{{ range $.Data.hosts }}{{ break }}{{ end }}{{ end }}`,
		`{{ join (printf "%4096d" 1) .Data.hosts }}`,
		`{{ range .Data.password }}{{ end }}`,
		`{{ html .Data .Data }}{{ println .Objects }}`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, text string) {
		tmpl, err := Parse(text)
		if err != nil {
			return
		}
		out, err := tmpl.Execute(t.Context(), input())
		if len(out) > MaxOutput {
			t.Fatalf("wrote %d bytes, over %d", len(out), MaxOutput)
		}
		if err != nil && strings.Contains(err.Error(), secretValue) && !strings.Contains(text, secretValue) {
			t.Fatalf("the error quotes a secret value: %v", err)
		}
	})
}

// FuzzFuncsNested builds a value from the input (maps, lists, strings,
// numbers, bools and nulls, nested as deep as the bytes say) and checks,
// for each function that writes a whole value, that the size counted
// before building is at least what the library then builds, and that the
// function either refuses or writes exactly what the library writes.
func FuzzFuncsNested(f *testing.F) {
	for _, seed := range []string{"", "m", "mmmmlllls", "ml<\"\x01\xff\u2028", "mksnbzlmlm", strings.Repeat("ml", 200)} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v := fuzzValue(&b, 0)
		for _, indent := range []int{0, 2} {
			want, err := marshalJSON(v, indent)
			if err != nil {
				continue
			}
			sz := &sizer{limit: math.MaxInt - 1}
			if jsonSize(sz, v, 0, indent); sz.n < len(want) || sz.unknown {
				t.Fatalf("JSON (indent %d) counted %d bytes, wrote %d", indent, sz.n, len(want))
			}
		}
		for _, vb := range []verb{{c: 'v'}, {c: 'v', sharp: true}, {c: 'q'}, {c: 'x', sharp: true, space: true}, {c: 'd', width: 7}, {c: 's', plus: true}} {
			spec := "%" + map[bool]string{true: "#"}[vb.sharp] + map[bool]string{true: " "}[vb.space] + map[bool]string{true: "+"}[vb.plus] + map[bool]string{true: "7"}[vb.width == 7] + string(vb.c)
			want := fmt.Sprintf(spec, v)
			sz := &sizer{limit: math.MaxInt - 1}
			if fmtSize(sz, v, vb, 0); sz.n < len(want) || sz.unknown {
				t.Fatalf("%s counted %d bytes, wrote %d: %q", spec, sz.n, len(want), want)
			}
		}
		in := Input{Data: map[string]any{"v": v}}
		for fn, lib := range map[string]func(any) (string, error){
			"toJSON":       func(v any) (string, error) { b, err := marshalJSON(v, 0); return string(b), err },
			"toJSONPretty": func(v any) (string, error) { b, err := marshalJSON(v, 2); return string(b), err },
			"print":        func(v any) (string, error) { return fmt.Sprint(v), nil },
			"html":         func(v any) (string, error) { return template.HTMLEscapeString(fmt.Sprint(v)), nil },
		} {
			tmpl, err := Parse("{{ " + fn + " .Data.v }}")
			if err != nil {
				t.Fatal(err)
			}
			got, err := tmpl.Execute(t.Context(), in)
			want, libErr := lib(v)
			switch {
			case err != nil && !strings.Contains(err.Error(), "more than") && libErr == nil:
				t.Fatalf("%s: %v", fn, err)
			case err == nil && string(got) != want:
				t.Fatalf("%s wrote %q, the library %q", fn, got, want)
			}
		}
	})
}

func marshalJSON(v any, indent int) ([]byte, error) {
	if indent == 0 {
		return json.Marshal(v)
	}
	return json.MarshalIndent(v, "", strings.Repeat(" ", indent))
}

// fuzzValue reads one value off the front of b: 'm' a map of the values
// that follow until 'e', 'l' a list, 'k' a key (the next byte), 'n' a
// number, 'b' a bool, 'z' null; any other byte starts a string running
// to the next of those letters.
func fuzzValue(b *[]byte, depth int) any {
	if len(*b) == 0 || depth > 2000 {
		return "x"
	}
	c := (*b)[0]
	*b = (*b)[1:]
	switch c {
	case 'm':
		m := map[string]any{}
		for len(*b) > 0 && (*b)[0] != 'e' {
			k := "k"
			if (*b)[0] == 'k' && len(*b) > 1 {
				k, *b = string((*b)[1:2]), (*b)[2:]
			}
			m[k+fmt.Sprint(len(m))] = fuzzValue(b, depth+1)
		}
		if len(*b) > 0 {
			*b = (*b)[1:]
		}
		return m
	case 'l':
		var l []any
		for len(*b) > 0 && (*b)[0] != 'e' {
			l = append(l, fuzzValue(b, depth+1))
		}
		if len(*b) > 0 {
			*b = (*b)[1:]
		}
		return l
	case 'n':
		return json.Number("-12.5e3")
	case 'b':
		return true
	case 'z':
		return nil
	}
	i := 0
	for i < len(*b) && !strings.ContainsRune("mlnbzek", rune((*b)[i])) {
		i++
	}
	s := string(c) + string((*b)[:i])
	*b = (*b)[i:]
	return s
}
