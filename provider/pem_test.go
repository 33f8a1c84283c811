package provider

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/okevault/vault-csi-provider/internal/config"
	"github.com/okevault/vault-csi-provider/internal/vault"
)

// The bed's PKI issues from a root; this builds the root → intermediate →
// leaf chain Vault returns for an intermediate-issued certificate.
func chain(t *testing.T) (leaf, intermediate, root string) {
	t.Helper()
	issue := func(cn string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, ca bool) (*x509.Certificate, *ecdsa.PrivateKey, string) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
			IsCA: ca, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		}
		if parent == nil {
			parent, parentKey = tmpl, key
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c, key, strings.TrimSpace(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	}
	rc, rk, root := issue("root", nil, nil, true)
	ic, ik, intermediate := issue("intermediate", rc, rk, true)
	_, _, leaf = issue("leaf", ic, ik, false)
	return leaf, intermediate, root
}

func TestPEMFiles(t *testing.T) {
	leaf, inter, root := chain(t)
	const key = "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----"
	issued := &vault.Response{Data: map[string]any{"certificate": leaf, "private_key": key, "issuing_ca": inter, "ca_chain": []any{inter, root}}}
	signed := &vault.Response{Data: map[string]any{"certificate": leaf, "issuing_ca": inter, "ca_chain": []any{inter, root}}}
	split := config.Object{Name: "tls", Format: config.FormatPEMSplit, Mode: 0o644, KeyMode: 0o600}
	bundle := config.Object{Name: "tls.pem", Format: config.FormatPEMBundle, Mode: 0o644, KeyMode: 0o600}
	served := leaf + "\n" + inter + "\n"

	got := map[string]file{}
	fs, err := pemFiles(0, split, issued)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fs {
		got[f.path] = f
	}
	for path, want := range map[string]struct {
		contents string
		mode     int
	}{
		"tls/tls.crt":      {served, 0o644}, // the root stays out: clients hold it
		"tls/tls.key":      {key + "\n", 0o600},
		"tls/ca.crt":       {inter + "\n", 0o644},
		"tls/ca-chain.crt": {inter + "\n" + root + "\n", 0o644},
	} {
		if f := got[path]; string(f.contents) != want.contents || int(f.mode) != want.mode {
			t.Errorf("%s = %q mode %o, want %q mode %o", path, f.contents, f.mode, want.contents, want.mode)
		}
	}
	if len(got) != 4 {
		t.Errorf("%d files, want 4", len(got))
	}

	fs, err = pemFiles(0, split, signed)
	if err != nil || len(fs) != 3 {
		t.Errorf("a sign response (no key): %d files, %v; want tls.crt, ca.crt, ca-chain.crt", len(fs), err)
	}

	fs, err = pemFiles(0, bundle, issued)
	if err != nil || len(fs) != 1 || string(fs[0].contents) != key+"\n"+served || fs[0].mode != 0o600 || fs[0].path != "tls.pem" {
		t.Errorf("bundle = %+v, %v; want key then leaf and intermediate, 0600", fs, err)
	}

	for name, tc := range map[string]struct {
		o config.Object
		r *vault.Response
	}{
		"bundle without a key": {bundle, signed},
		"not a certificate":    {split, &vault.Response{Data: map[string]any{"password": "p"}}},
	} {
		if _, err := pemFiles(0, tc.o, tc.r); !errors.Is(err, errUnfit) {
			t.Errorf("%s: err = %v, want errUnfit", name, err)
		}
	}
}

func TestCheckPaths(t *testing.T) {
	for name, tc := range map[string]struct {
		paths []string
		want  string
	}{
		"distinct":          {[]string{"a/x", "a/y", "b"}, ""},
		"same file":         {[]string{"a/x", "a/x"}, "objects[1]"},
		"file and dir":      {[]string{"a", "a/x"}, `"a/x" needs "a" to be a directory`},
		"dir and file late": {[]string{"a/x/y", "a/x"}, `"a/x/y" needs "a/x"`},
	} {
		t.Run(name, func(t *testing.T) {
			var fs []file
			for i, p := range tc.paths {
				fs = append(fs, file{path: p, index: i})
			}
			err := checkPaths(fs)
			if (tc.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.want) {
				t.Errorf("checkPaths(%q) = %v, want %q", tc.paths, err, tc.want)
			}
		})
	}
}
