package vault

import (
	"errors"
	"net/http"
	"testing"

	"github.com/hashicorp/vault/api"
)

func TestParse(t *testing.T) {
	req := Request{Method: "GET", Path: "p"}
	for _, tc := range []struct {
		name      string
		body      string
		kv        int
		dataKey   string
		wantValue any
		notFound  bool
	}{
		{"kv v2 envelope", `{"data":{"data":{"k":"v2"},"metadata":{"version":3}}}`, 2, "k", "v2", false},
		{"kv v1", `{"data":{"k":"v1"}}`, 1, "k", "v1", false},
		{"v1 secret with a data key that is not a map", `{"data":{"data":"x","metadata":{"a":1}}}`, 1, "data", "x", false},
		{"dynamic engine", `{"lease_id":"l","data":{"username":"u","password":"p"}}`, 1, "username", "u", false},
		{"deleted kv v2 version", `{"data":{"data":null,"metadata":{"deletion_time":"2026-01-01T00:00:00Z"}}}`, 0, "", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := parse(req, []byte(tc.body))
			if tc.notFound {
				var ve *Error
				if !errors.As(err, &ve) || ve.Status != http.StatusNotFound {
					t.Fatalf("err = %v, want a 404 *Error", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.KVVersion != tc.kv || r.Data[tc.dataKey] != tc.wantValue || string(r.Body) != tc.body {
				t.Errorf("got kv%d data %v body %s", r.KVVersion, r.Data, r.Body)
			}
		})
	}
	for body, want := range map[string]string{
		`{"data":{"data":{"k":"v"},"metadata":{"version":3}}}`: "3",
		`{"data":{"k":"v"}}`: "",
		`{"data":{"data":{"k":"v"},"metadata":{"created_time":"x"}}}`: "",
	} {
		r, err := parse(req, []byte(body))
		if err != nil || r.KV2Version() != want {
			t.Errorf("KV2Version of %s = %q, %v; want %q", body, r.KV2Version(), err, want)
		}
	}
	if _, err := parse(req, []byte("<html>")); err == nil {
		t.Error("a non-JSON body was accepted")
	}
}

func TestWrap(t *testing.T) {
	notFound := wrap("GET", "secret/data/x", &api.ResponseError{StatusCode: 404})
	if got := notFound.Error(); got != "vault GET secret/data/x: 404 Not Found: no secret at this path" {
		t.Errorf("404: %q", got)
	}
	denied := wrap("login", "auth/kubernetes/login", &api.ResponseError{StatusCode: 403, Errors: []string{"permission denied"}})
	if !Denied(denied) || denied.Error() != "vault login auth/kubernetes/login: 403 Forbidden: permission denied" {
		t.Errorf("403: %q", denied)
	}
	down := wrap("GET", "p", errors.New(`Get "http://127.0.0.1:1/v1/p?version=1": dial tcp 127.0.0.1:1: connect: connection refused`))
	if got := down.Error(); got != "vault GET p: unreachable: connection refused" {
		t.Errorf("transport: %q", got)
	}
	if wrap("GET", "p", nil) != nil {
		t.Error("wrap(nil) is not nil")
	}
}
