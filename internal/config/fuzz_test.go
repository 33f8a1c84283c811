package config

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// The fuzz targets share two properties: Parse never panics, and every
// rejection is a *Error naming the parameter at fault (the server turns it
// into InvalidArgument). `make fuzz` runs each for FUZZTIME; `go test` runs
// their seeds, taken from the unit tables, as ordinary tests.

// rejected fails unless err is a *Error whose Param is want, or any
// parameter when want is "".
func rejected(t *testing.T, err error, want string) {
	t.Helper()
	var ce *Error
	switch {
	case !errors.As(err, &ce):
		t.Fatalf("error %v (%T) is not a *config.Error", err, err)
	case ce.Param == "" || ce.Reason == "":
		t.Fatalf("error %q names no parameter or reason", err)
	case want != "" && ce.Param != want:
		t.Fatalf("Param = %q, want %q (error: %v)", ce.Param, want, err)
	}
}

// oneField is a one-object list whose field is value, written by a YAML
// encoder so any string arrives intact, and what a YAML decoder reads back.
// ok is false when the value cannot travel as a YAML string (invalid UTF-8
// becomes !!binary).
func oneField(t *testing.T, field, value string) (objects, decoded string, ok bool) {
	t.Helper()
	if !utf8.ValidString(value) {
		return "", "", false
	}
	entry := map[string]string{"objectName": "a", "secretPath": "kv/a", field: value}
	b, err := yaml.Marshal([]map[string]string{entry})
	if err != nil {
		return "", "", false
	}
	var back []map[string]string
	if err := yaml.Unmarshal(b, &back); err != nil || len(back) != 1 {
		// yaml.v3 writes a few strings (such as "\n0") that it cannot
		// read back: its bug, not the parser's.
		return "", "", false
	}
	return string(b), back[0][field], true
}

func parseObjectsAttr(t *testing.T, objects string) (*Mount, error) {
	t.Helper()
	return parseEdited(t, map[string]string{"objects": objects}, Defaults{})
}

func FuzzAttributes(f *testing.F) {
	f.Add(encode(f, baseAttrs()))
	for _, tc := range parseErrorCases {
		attrs := baseAttrs()
		for k, v := range tc.edit {
			if v == del {
				delete(attrs, k)
				continue
			}
			attrs[k] = v
		}
		f.Add(encode(f, attrs))
	}
	for _, s := range []string{``, `{`, `null`, `[]`, `{"roleName": 1}`, `{"a":"\u0000"}`, `{"roleName":"r","roleName":"s"}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, attributes string) {
		m, err := Parse(attributes, testTarget, testPerm, Defaults{})
		if err != nil {
			rejected(t, err, "")
			var attrs map[string]string
			if json.Unmarshal([]byte(attributes), &attrs) == nil {
				if tok := attrs[keyTokens]; len(tok) >= 16 && strings.Contains(err.Error(), tok) {
					t.Fatalf("error quotes the tokens attribute: %v", err)
				}
			}
			return
		}
		if m.Role == "" || m.Pod.Namespace == "" || m.Pod.Name == "" || len(m.Objects) == 0 || len(m.Objects) > maxObjects {
			t.Fatalf("accepted an incomplete mount: %+v", m)
		}
		if !validAddress(m.VaultAddress) {
			t.Fatalf("accepted vaultAddress %q", m.VaultAddress)
		}
		if _, ok := normaliseAuthMount(m.AuthMountPath); !ok {
			t.Fatalf("accepted auth mount %q", m.AuthMountPath)
		}
	})
}

func FuzzObjectName(f *testing.F) {
	for _, tc := range objectNameCases {
		f.Add(tc.name)
	}
	f.Add("a/b/../c")
	f.Add("\u00a0/\u2028")
	f.Fuzz(func(t *testing.T, name string) {
		if reason := checkObjectName(name); reason == "" {
			if !filepath.IsLocal(name) || filepath.Clean(name) != name || strings.ContainsAny(name, "\x00\\") {
				t.Fatalf("accepted objectName %q", name)
			}
		}
		objects, decoded, ok := oneField(t, "objectName", name)
		if !ok {
			return
		}
		m, err := parseObjectsAttr(t, objects)
		if err != nil {
			rejected(t, err, "objects[0].objectName")
			return
		}
		if got := m.Objects[0].Name; got != decoded || !filepath.IsLocal(got) {
			t.Fatalf("Name = %q from %q", got, decoded)
		}
	})
}

func FuzzSecretPath(f *testing.F) {
	for _, tc := range secretPathCases {
		f.Add(tc.in)
	}
	for _, s := range []string{"secret/data/a?version=%zz", "/v1/../x", "a\x00b", "a?b=c;d", "?x=1", "a/b?x=%00&y=\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		objects, _, ok := oneField(t, "secretPath", path)
		if !ok {
			return
		}
		m, err := parseObjectsAttr(t, objects)
		if err != nil {
			rejected(t, err, "objects[0].secretPath")
			return
		}
		o := m.Objects[0]
		switch {
		case o.Path == "", strings.HasPrefix(o.Path, "/"), strings.Contains(o.Path, "?"), hasSegment(o.Path, ".."), strings.ContainsFunc(o.Path, isControl):
			t.Fatalf("accepted secretPath %q as path %q", path, o.Path)
		case o.Query != nil && len(o.Query) == 0:
			t.Fatalf("an empty query parsed to a non-nil map from %q", path)
		}
		if len(o.RequestKey()) != 64 {
			t.Fatalf("RequestKey %q", o.RequestKey())
		}
	})
}

func FuzzFilePermission(f *testing.F) {
	for _, tc := range filePermissionCases {
		f.Add(tc.yaml)
	}
	f.Add("0o")
	f.Add("-0")
	f.Add("0o0o7")
	f.Fuzz(func(t *testing.T, text string) {
		if m, ok := parseFileMode(text); ok {
			digits := strings.TrimPrefix(strings.TrimPrefix(text, "0o"), "0O")
			n, err := strconv.ParseUint(digits, 8, 32)
			if err != nil || m > 0o777 || uint64(m) != n {
				t.Fatalf("parseFileMode(%q) = %#o", text, m)
			}
		}
		// As users write it: unquoted, so YAML's own parsing is in play.
		if !strings.ContainsAny(text, "\n\r") {
			m, err := parseObjectsAttr(t, "- objectName: a\n  secretPath: kv/a\n  filePermission: "+text+"\n")
			if err != nil {
				rejected(t, err, "")
			} else if m.Objects[0].Mode > 0o777 {
				t.Fatalf("accepted mode %#o from %q", m.Objects[0].Mode, text)
			}
		}
		objects, _, ok := oneField(t, "filePermission", text)
		if !ok {
			return
		}
		m, err := parseObjectsAttr(t, objects)
		if err != nil {
			rejected(t, err, "objects[0].filePermission")
			return
		}
		if m.Objects[0].Mode > 0o777 {
			t.Fatalf("accepted mode %#o from %q", m.Objects[0].Mode, text)
		}
	})
}

func FuzzEncoding(f *testing.F) {
	for _, tc := range encodingCases {
		f.Add(strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(tc.fields), "encoding:")))
	}
	f.Add("UTF-8")
	f.Add("base32")
	f.Fuzz(func(t *testing.T, enc string) {
		objects, _, ok := oneField(t, "encoding", enc)
		if !ok {
			return
		}
		m, err := parseObjectsAttr(t, objects)
		if err != nil {
			rejected(t, err, "objects[0].encoding")
			return
		}
		switch m.Objects[0].Encoding {
		case EncodingUTF8, EncodingBase64, EncodingHex:
		default:
			t.Fatalf("accepted encoding %q as %q", enc, m.Objects[0].Encoding)
		}
	})
}

func FuzzTokens(f *testing.F) {
	for _, tc := range parseErrorCases {
		if v, ok := tc.edit[keyTokens]; ok {
			f.Add(v)
		}
	}
	f.Add(`{"vault":{"token":"eyJhbGciOiJSUzI1NiJ9.e30.c2ln","expirationTimestamp":"2030-01-02T03:04:05Z"}}`)
	f.Add(`{"vault":{"token":"a"},"custom":{"token":"b","expirationTimestamp":""}}`)
	f.Add(`{"":{"token":"x"}}`)
	f.Add(`null`)
	f.Fuzz(func(t *testing.T, tokens string) {
		m, err := parseEdited(t, map[string]string{keyTokens: tokens}, Defaults{})
		if err != nil {
			rejected(t, err, keyTokens)
			var entries map[string]map[string]any
			if json.Unmarshal([]byte(tokens), &entries) == nil {
				for _, e := range entries {
					if tok, _ := e["token"].(string); len(tok) >= 8 && strings.Contains(err.Error(), tok) {
						t.Fatalf("error quotes a token: %v", err)
					}
				}
			}
			return
		}
		for aud, tok := range m.Tokens {
			if tok.Value.Empty() {
				t.Fatalf("accepted an empty token for audience %q", aud)
			}
		}
	})
}
