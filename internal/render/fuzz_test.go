package render

import (
	"strings"
	"testing"
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
