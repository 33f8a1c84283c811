package testbed_test

import (
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/okevault/vault-csi-provider/test/testbed"
)

// TestFindLeaks proves the checker the leak tests rely on: a value injected
// into a log line, as is or encoded, is found; a clean log passes.
func TestFindLeaks(t *testing.T) {
	const token = "hvs.CAESIJ4x9f0aQ"
	clean := `{"level":"INFO","msg":"mount","namespace":"e2e","pod":"web-0","code":"OK"}`
	if leaks := testbed.FindLeaks(map[string]string{"log": clean}, []string{token, "e2e"}); len(leaks) != 0 {
		t.Fatalf("clean log: %v", leaks)
	}
	for form, injected := range map[string]string{
		"plain":     token,
		"base64":    base64.StdEncoding.EncodeToString([]byte(token)),
		"base64url": base64.RawURLEncoding.EncodeToString([]byte(token)),
		"hex":       hex.EncodeToString([]byte(token)),
	} {
		t.Run(form, func(t *testing.T) {
			line := strings.Replace(clean, `"code":"OK"`, `"code":"OK","debug":"`+injected+`"`, 1)
			leaks := testbed.FindLeaks(map[string]string{"clean": clean, "log": line}, []string{"other-secret", token})
			if len(leaks) == 0 {
				t.Fatalf("%s of the token in a log line was not found", form)
			}
			// Without + or /, base64url is base64 and is reported so.
			l := leaks[0]
			if l.Where != "log" || (l.Form != form && l.Form != "base64") || strings.Contains(l.String(), token) {
				t.Errorf("leak = %v; want in log, as %s, without repeating the secret", l, form)
			}
		})
	}
}

// TestAuditedSecrets reads a raw audit log shaped as Vault writes it and
// collects credentials and engine data, not auth/sys metadata.
func TestAuditedSecrets(t *testing.T) {
	log := strings.Join([]string{
		`{"type":"request","request":{"path":"auth/kubernetes/login","data":{"jwt":"eyJhbGciOi.pod.jwt","role":"e2e"}}}`,
		`{"type":"response","auth":{"client_token":"hvs.login-token","accessor":"accessor-1","policies":["default","e2e"]},"request":{"path":"auth/kubernetes/login"},"response":{"auth":{"client_token":"hvs.login-token","accessor":"accessor-1"},"data":{"role_name":"e2e-role"}}}`,
		`{"type":"response","request":{"path":"secret/data/e2e/app","client_token":"hvs.login-token","client_token_accessor":"accessor-1"},"response":{"data":{"data":{"password":"kv2-password","n":5},"metadata":{"created_time":"2026-11-27T07:00:00Z"}}}}`,
		`{"type":"response","request":{"path":"pki/issue/web"},"response":{"data":{"ca_chain":["-----BEGIN CERTIFICATE-----x"],"private_key":"-----BEGIN RSA PRIVATE KEY-----y"}}}`,
		`not json`,
	}, "\n")
	path := filepath.Join(t.TempDir(), "raw.log")
	if err := os.WriteFile(path, []byte(log), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := testbed.AuditedSecrets(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"-----BEGIN CERTIFICATE-----x", "-----BEGIN RSA PRIVATE KEY-----y", "accessor-1", "eyJhbGciOi.pod.jwt", "hvs.login-token", "kv2-password"}
	if !slices.Equal(got, want) {
		t.Errorf("AuditedSecrets = %q, want %q", got, want)
	}
}
