package auth

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/okevault/vault-csi-provider/internal/redact"
)

// FuzzClaims: any token (the serviceAccount.tokens entry is pod-controlled
// when the driver requests none) is parsed without a panic, an error never
// quotes it, and a key comes out only for claims naming the pod's account.
func FuzzClaims(f *testing.F) {
	enc := base64.RawURLEncoding.EncodeToString
	f.Add("a.b.c")
	f.Add("")
	f.Add("..")
	f.Add("x." + enc([]byte(`{"kubernetes.io":{"namespace":"default","serviceaccount":{"name":"testapp","uid":"u"}}}`)) + ".s")
	f.Add("x." + enc([]byte(`{"exp":1,"kubernetes.io":{"namespace":"default","serviceaccount":{"name":"testapp","uid":"u"}}}`)) + ".s")
	f.Add("x." + enc([]byte(`{"kubernetes.io":{"namespace":1}}`)) + ".s")
	f.Add("x.!!!.s")
	f.Fuzz(func(t *testing.T, token string) {
		tok := redact.New(token)
		c, err := ParseClaims(tok)
		if err != nil && len(token) >= 8 && strings.Contains(err.Error(), token) {
			t.Fatalf("error quotes the token: %v", err)
		}
		if err == nil && (c.Namespace == "" || c.ServiceAccount == "" || c.UID == "") {
			t.Fatalf("claims without an identity accepted: %+v", c)
		}
		key, err := IdentityKey(mount("default", "testapp"), tok, time.Unix(1000, 0), false)
		switch {
		case err != nil && !errors.Is(err, ErrTokenRejected):
			t.Fatalf("IdentityKey: %v, want nil or ErrTokenRejected", err)
		case err == nil && len(key) != 64:
			t.Fatalf("key %q is not a SHA-256 digest", key)
		case err == nil && c.Namespace != "" && (c.Namespace != "default" || c.ServiceAccount != "testapp"):
			t.Fatalf("a token of %s/%s got a key for default/testapp", c.Namespace, c.ServiceAccount)
		}
	})
}

// FuzzIdentityKeysApart: two service accounts that differ in namespace, name
// or UID never share a login-cache key, whatever their names hold.
func FuzzIdentityKeysApart(f *testing.F) {
	f.Add("ns", "sa", "u1", "ns", "sa", "u2")
	f.Add("a", "b c", "u", "a b", "c", "u")
	f.Add(`a" "b`, "c", "u", "a", `b" "c`, "u")
	f.Add("ns", "sa", "u", "ns", "sa", "u")
	f.Fuzz(func(t *testing.T, ns1, sa1, uid1, ns2, sa2, uid2 string) {
		for _, s := range []string{ns1, sa1, uid1, ns2, sa2, uid2} {
			// Kubernetes names are never empty, and JSON cannot carry
			// invalid UTF-8 into a token's claims.
			if s == "" || !utf8.ValidString(s) {
				return
			}
		}
		k1, err1 := IdentityKey(mount(ns1, sa1), jwt(t, ns1, sa1, uid1, time.Time{}), time.Now(), false)
		k2, err2 := IdentityKey(mount(ns2, sa2), jwt(t, ns2, sa2, uid2, time.Time{}), time.Now(), false)
		if err1 != nil || err2 != nil {
			t.Fatalf("IdentityKey: %v, %v", err1, err2)
		}
		same := ns1 == ns2 && sa1 == sa2 && uid1 == uid2
		if (k1 == k2) != same {
			t.Fatalf("keys equal = %v for %q/%q/%q and %q/%q/%q", k1 == k2, ns1, sa1, uid1, ns2, sa2, uid2)
		}
	})
}
