package vault

import (
	"bytes"
	"errors"
	"net/http"
	"strings"
	"testing"
)

// parseCases are Vault response bodies of every shape the provider meets,
// and some it should not; FuzzParse starts from them.
var parseCases = []struct {
	name string
	body string
	kv   int // 0: refused
}{
	{"kv v2", `{"data":{"data":{"k":"v"},"metadata":{"version":3}}}`, 2},
	{"kv v1", `{"data":{"k":"v"}}`, 1},
	{"non-string values", `{"data":{"n":1e400,"i":9007199254740993,"b":true,"z":null,"l":[1,"a"],"m":{"x":{}}}}`, 1},
	{"kv v2 non-string values", `{"data":{"data":{"n":-0.0,"b":false,"l":[]},"metadata":{}}}`, 2},
	{"no data", `{"lease_id":"x"}`, 1},
	{"data null", `{"data":null}`, 1},
	{"data a string", `{"data":"x"}`, 0},
	{"data a list", `{"data":[1,2]}`, 0},
	{"deleted kv v2 version", `{"data":{"data":null,"metadata":{"deletion_time":"2026-01-01T00:00:00Z"}}}`, 0},
	{"kv v2 data not a map", `{"data":{"data":[1],"metadata":{}}}`, 1},
	{"trailing garbage", `{"data":{"k":"v"}}}}`, 1},
	{"a bare string", `"x"`, 0},
	{"not JSON", `<html>`, 0},
	{"empty", ``, 0},
	{"invalid UTF-8", "{\"data\":{\"k\":\"\xff\xfe\"}}", 1},
	{"duplicate keys", `{"data":{"k":"a","k":"b"}}`, 1},
}

func TestParseShapes(t *testing.T) {
	req := Request{Method: http.MethodGet, Path: "p"}
	for _, tc := range parseCases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := parse(req, []byte(tc.body))
			if tc.kv == 0 {
				var ve *Error
				if !errors.As(err, &ve) {
					t.Fatalf("err = %v, want a *vault.Error", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.KVVersion != tc.kv {
				t.Errorf("KVVersion = %d, want %d", r.KVVersion, tc.kv)
			}
		})
	}
}

// deep is JSON nested n arrays deep inside data.
func deep(n int) []byte {
	return []byte(`{"data":{"k":` + strings.Repeat("[", n) + strings.Repeat("]", n) + `}}`)
}

// TestParseHostileBodies: a response at the size bound parses; nesting
// deeper than encoding/json allows (10,000) is refused, not a stack overflow.
func TestParseHostileBodies(t *testing.T) {
	req := Request{Method: http.MethodGet, Path: "p"}
	var big bytes.Buffer
	big.WriteString(`{"data":{"data":{"v":"`)
	big.WriteString(strings.Repeat("x", maxBody-64))
	big.WriteString(`"},"metadata":{"version":1}}}`)
	r, err := parse(req, big.Bytes())
	if err != nil || r.KVVersion != 2 || len(r.Data["v"].(string)) != maxBody-64 {
		t.Errorf("a %d-byte KV v2 response: %v", big.Len(), err)
	}
	if _, err := parse(req, deep(9_000)); err != nil {
		t.Errorf("nesting 9,000 deep: %v", err)
	}
	_, err = parse(req, deep(100_000))
	var ve *Error
	if !errors.As(err, &ve) || !strings.Contains(err.Error(), "not JSON") {
		t.Errorf("nesting 100,000 deep: err = %v, want a *vault.Error saying not JSON", err)
	}
}

func FuzzParse(f *testing.F) {
	for _, tc := range parseCases {
		f.Add([]byte(tc.body))
	}
	f.Add(deep(50))
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := parse(Request{Method: http.MethodGet, Path: "p"}, body)
		if err != nil {
			var ve *Error
			if !errors.As(err, &ve) || ve.Path != "p" {
				t.Fatalf("err = %v (%T), want a *vault.Error for the path", err, err)
			}
			if len(body) >= 8 && strings.Contains(err.Error(), string(body)) {
				t.Fatalf("error quotes the response: %v", err)
			}
			return
		}
		if !bytes.Equal(r.Body, body) || (r.KVVersion != 1 && r.KVVersion != 2) || (r.KVVersion == 2) != (r.Metadata != nil) {
			t.Fatalf("parse(%q) = kv%d data %v metadata %v", body, r.KVVersion, r.Data, r.Metadata)
		}
	})
}
