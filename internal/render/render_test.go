package render

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const secretValue = "s3cr3t-value"

func input() Input {
	return Input{
		Data: map[string]any{"user": "app", "password": secretValue, "port": json.Number("5432"), "hosts": []any{"a", "b"}, "b64": "aGVsbG8=", "empty": ""},
		Objects: map[string]map[string]any{
			"db": {"username": "dbuser", "password": secretValue},
		},
		Secrets: map[string]map[string]any{
			"secret/data/app": {"token": "tok", "nested": map[string]any{"k": json.Number("1")}},
		},
	}
}

func TestRender(t *testing.T) {
	for _, tc := range []struct {
		name, text, want string
	}{
		{"data", "{{ .Data.user }}:{{ .Data.port }}", "app:5432"},
		{"pgpass", `{{ with object "db" }}*:5432:app:{{ .username }}:{{ .password }}{{ end }}`, "*:5432:app:dbuser:" + secretValue},
		{"secret by path", `{{ (secret "secret/data/app").token }}`, "tok"},
		{"json", `{{ toJSON (secret "secret/data/app").nested }}`, `{"k":1}`},
		{"json pretty", `{{ toJSONPretty (secret "secret/data/app").nested }}`, "{\n  \"k\": 1\n}"},
		{"yaml", `{{ toYAML (secret "secret/data/app") }}`, "nested:\n    k: 1\ntoken: tok"},
		{"base64", `{{ .Data.user | base64Encode }} {{ .Data.b64 | base64Decode }}`, "YXBw hello"},
		{"default on empty and missing", `{{ default "x" .Data.empty }} {{ default "y" (index .Data "nope") }} {{ default "z" .Data.user }}`, "x y app"},
		{"required present", `{{ required "user is needed" .Data.user }}`, "app"},
		{"join", `{{ .Data.hosts | join "," }}`, "a,b"},
		{"printf", `{{ printf "%s=%05d %.2f %q %x %% %-3s|" .Data.user 42 1.5 "a" "hi" "b" }}`, `app=00042 1.50 "a" 6869 % b  |`},
		{"printf missing operand", `{{ printf "%s %d" "a" }}`, "a %!d(MISSING)"},
		{"print", `{{ print "a" "b" 1 2 }}|{{ println "a" 1 }}`, "ab1 2|a 1\n"},
		{"escapers", `{{ html "<a>" }} {{ js "'" }} {{ urlquery "a b" }}`, `&lt;a&gt; \' a+b`},
		{"strings", `{{ toUpper .Data.user }} {{ toLower "AB" }} [{{ trimSpace "  x " }}]`, "APP ab [x]"},
		{"range", `{{ range $k, $v := object "db" }}{{ $k }};{{ end }}`, "password;username;"},
		{"env file", "USER={{ .Data.user }}\nPASS={{ .Data.password }}\n", "USER=app\nPASS=" + secretValue + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmpl, err := Parse(tc.text)
			if err != nil {
				t.Fatal(err)
			}
			got, err := tmpl.Execute(t.Context(), input())
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestReferences(t *testing.T) {
	tmpl, err := Parse(`{{ (object "db").u }}{{ with secret "secret/data/a" }}{{ .x }}{{ end }}
{{ if (object "db") }}{{ range (secret "kv/b?version=2").list }}{{ (object "other").y }}{{ end }}{{ end }}`)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"db", "other"}, tmpl.Objects()); diff != "" {
		t.Errorf("objects (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"secret/data/a", "kv/b?version=2"}, tmpl.Secrets()); diff != "" {
		t.Errorf("secrets (-want +got):\n%s", diff)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		line       int
		words      []string
	}{
		{"syntax", "ok\n{{ .Data.x }\n", 2, []string{"unexpected"}},
		{"unknown function", "{{ env \"HOME\" }}", 1, []string{`"env" not defined`}},
		{"secret from a variable", "{{ $p := \"secret/data/a\" }}\n{{ secret $p }}", 2, []string{"secret takes one literal string"}},
		{"secret through a pipe", "\n\n{{ \"secret/data/a\" | secret }}", 3, []string{"literal"}},
		{"object with two args", `{{ object "a" "b" }}`, 1, []string{"object takes one literal string"}},
		{"secret as an argument", `{{ call secret "x" }}`, 1, []string{"literal"}},
		{"define", `{{ define "x" }}a{{ end }}{{ template "x" }}`, 0, []string{"{{define}}"}},
		{"template call", `{{ template "t" }}`, 1, []string{"{{template}}"}},
		{"blank", " \n", 0, []string{"empty"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.text)
			var re *Error
			if !errors.As(err, &re) {
				t.Fatalf("err = %v, want an *Error", err)
			}
			if re.Line != tc.line {
				t.Errorf("line %d, want %d (%v)", re.Line, tc.line, err)
			}
			for _, w := range tc.words {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q lacks %q", err, w)
				}
			}
		})
	}
}

// TestExecuteGivesUpAtTheDeadline: a template still running when the
// mount's deadline passes stops at its next step.
func TestExecuteGivesUpAtTheDeadline(t *testing.T) {
	tmpl, err := Parse(`{{ range 900000 }}{{ end }}`)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := tmpl.Execute(ctx, input()); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want the context's", err)
	}
}

func TestExecuteErrors(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		line       int
		words      []string
	}{
		{"missing key", "\n{{ .Data.nope }}", 2, []string{"<.Data.nope>", `no entry for key "nope"`}},
		{"required", `{{ required "set password in Vault" .Data.empty }}`, 1, []string{"required: set password in Vault"}},
		{"required on a missing key through index", `{{ index .Data "nope" | required "need nope" }}`, 1, []string{"required: need nope"}},
		{"bad base64", `{{ .Data.password | base64Decode }}`, 1, []string{"not valid base64"}},
		// Reported by the range's counter, which has no line of its own.
		{"value never shown", `{{ range .Data.password }}{{ end }}`, 0, []string{"not shown"}},
		{"output bounded", `{{ range 100000 }}{{ $.Data.password }}{{ $.Data.password }}{{ end }}`, 0, []string{"larger than"}},
		{"loops bounded", `{{ range 1000000000 }}{{ end }}`, 0, []string{"more than 1000000 steps"}},
		{"nested loops bounded", `{{ range 100000 }}{{ range 100000 }}{{ end }}{{ end }}`, 0, []string{"steps"}},
		// break leaves each inner range after one iteration, but entering
		// it costs what it ranges over (text/template sorts a map's keys).
		{"ranges entered and left", `{{ $l := .Data.hosts }}{{ range 1000000 }}{{ range $l }}{{ break }}{{ end }}{{ end }}`, 0, []string{"steps"}},
		{"large bodies cost more", `{{ range 200000 }}{{ $.Data.user }}{{ $.Data.user }}{{ $.Data.user }}{{ $.Data.user }}{{ $.Data.user }}{{ end }}`, 0, []string{"steps"}},
		{"printf width", `{{ printf "%0999999999d" 1 }}`, 1, []string{"width over 4096"}},
		{"printf precision", `{{ printf "%.99999f" 1.0 }}`, 1, []string{"precision over 4096"}},
		{"printf star", `{{ printf "%*d" 999999999 1 }}`, 1, []string{"'*' widths"}},
		{"printf doubling", `{{ $s := "xxxxxxxxxxxxxxxx" }}{{ range 100 }}{{ $s = printf "%s%s" $s $s }}{{ end }}`, 1, []string{"more than 4194304 bytes"}},
		{"print of many operands", `{{ $s := printf "%4096d" 1 }}{{ range 10000 }}{{ $x := print $s $s $s $s $s $s $s $s }}{{ end }}`, 1, []string{"more than 4194304 bytes"}},
		{"join with a long separator", `{{ $sep := printf "%4096d" 1 }}{{ range 10000 }}{{ $x := join $sep $.Data.hosts }}{{ end }}`, 1, []string{"more than 4194304 bytes"}},
		{"escapers", `{{ $s := printf "%4096s" "<" }}{{ range 10000 }}{{ $x := html $s }}{{ $y := js $s }}{{ $z := urlquery $s }}{{ end }}`, 1, []string{"more than 4194304 bytes"}},
		{"toJSON in a loop", `{{ range 100000 }}{{ $x := toJSON $.Data }}{{ end }}`, 1, []string{"more than 4194304 bytes"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmpl, err := Parse(tc.text)
			if err != nil {
				t.Fatal(err)
			}
			out, err := tmpl.Execute(t.Context(), input())
			var re *Error
			if !errors.As(err, &re) {
				t.Fatalf("err = %v (output %d bytes), want an *Error", err, len(out))
			}
			if re.Line != tc.line {
				t.Errorf("line %d, want %d (%v)", re.Line, tc.line, err)
			}
			for _, w := range tc.words {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q lacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), secretValue) {
				t.Errorf("error shows a secret value: %v", err)
			}
		})
	}
}
