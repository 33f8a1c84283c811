package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/okevault/vault-csi-provider/internal/redact"
)

// secretCmp compares redact.Secret by value; its field is unexported.
var secretCmp = cmp.Comparer(func(a, b redact.Secret) bool { return a.Reveal() == b.Reveal() })

const (
	testTarget = "/var/lib/kubelet/pods/1234/volumes/kubernetes.io~csi/secrets/mount"
	testPerm   = "420" // what the driver sends: 0644
	oneObject  = "- objectName: a\n  secretPath: secret/data/a\n"
)

// baseAttrs is the smallest valid attribute set the driver can send.
func baseAttrs() map[string]string {
	return map[string]string{
		"roleName":                               "app",
		"objects":                                oneObject,
		"csi.storage.k8s.io/pod.name":            "web-0",
		"csi.storage.k8s.io/pod.namespace":       "shop",
		"csi.storage.k8s.io/pod.uid":             "web-0-uid",
		"csi.storage.k8s.io/serviceAccount.name": "web",
	}
}

func encode(t testing.TB, attrs map[string]string) string {
	t.Helper()
	b, err := json.Marshal(attrs)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// parseEdited parses baseAttrs after edit; an edit value of "\x00delete"
// removes the key.
func parseEdited(t testing.TB, edit map[string]string, d Defaults) (*Mount, error) {
	t.Helper()
	attrs := baseAttrs()
	for k, v := range edit {
		if v == "\x00delete" {
			delete(attrs, k)
			continue
		}
		attrs[k] = v
	}
	return Parse(encode(t, attrs), testTarget, testPerm, d)
}

func mustParse(t testing.TB, edit map[string]string, d Defaults) *Mount {
	t.Helper()
	m, err := parseEdited(t, edit, d)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return m
}

func objectsOf(t testing.TB, yaml string) []Object {
	t.Helper()
	return mustParse(t, map[string]string{"objects": yaml}, Defaults{}).Objects
}

func TestParsePeerClass(t *testing.T) {
	const token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ.c2lnbmF0dXJl"
	objects := `
- objectName: "db-username"
  secretPath: "database/creds/app"
  secretKey: "username"
- objectName: "db-password"
  secretPath: "database/creds/app"
  secretKey: "password"
- objectName: "config/app.json"
  secretPath: "/v1/secret/data/app?version=3"
  filePermission: 0640
  objectFormat: data
- objectName: "tls/tls.crt"
  secretPath: "pki/issue/example-dot-com"
  method: put
  secretKey: certificate
  secretArgs:
    common_name: test.example.com
    ttl: 24h
    alt_names: [a.example.com, b.example.com]
    exclude_cn_from_sans: true
    max_path_length: 2
- objectName: blob.bin
  secretPath: secret/data/blob
  secretKey: payload
  encoding: base64
  filePermission: "0o600"
`
	tokens := `{"vault":{"token":"` + token + `","expirationTimestamp":"2030-01-02T03:04:05Z"},"other":{"token":"b"}}`
	attrs := map[string]string{
		"roleName":                                 "app-role",
		"vaultAddress":                             "https://vault.vault.svc:8200",
		"vaultNamespace":                           "team-a",
		"vaultKubernetesMountPath":                 "auth/cluster-a/",
		"audience":                                 "vault-prod",
		"vaultCACertPath":                          "/vault/tls/ca.crt",
		"vaultTLSServerName":                       "vault.example.com",
		"vaultTLSClientCertPath":                   "/vault/tls/client.crt",
		"vaultTLSClientKeyPath":                    "/vault/tls/client.key",
		"vaultSkipTLSVerify":                       "false",
		"objects":                                  objects,
		"secretProviderClass":                      "vault-db",
		"csi.storage.k8s.io/pod.name":              "web-0",
		"csi.storage.k8s.io/pod.namespace":         "shop",
		"csi.storage.k8s.io/pod.uid":               "9aeb260f-d64a-426c-9872-95b6bab37e00",
		"csi.storage.k8s.io/serviceAccount.name":   "web",
		"csi.storage.k8s.io/ephemeral":             "false",
		"csi.storage.k8s.io/serviceAccount.tokens": tokens,
	}

	// vault-helm mounts the CA under /vault/tls (its csi.volumeMounts); the
	// operator lists that directory when migrating (docs/migration.md).
	got, err := Parse(encode(t, attrs), testTarget, testPerm, Defaults{VaultAddress: "https://ignored:8200", AllowedTLSDirectories: []string{"/vault/tls"}})
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}

	want := &Mount{
		Role:           "app-role",
		VaultAddress:   "https://vault.vault.svc:8200",
		VaultNamespace: "team-a",
		AuthType:       AuthKubernetes,
		AuthMountPath:  "cluster-a",
		Audience:       "vault-prod",
		TLS: TLS{
			CACert:     "/vault/tls/ca.crt",
			ServerName: "vault.example.com",
			ClientCert: "/vault/tls/client.crt",
			ClientKey:  "/vault/tls/client.key",
		},
		Objects: []Object{
			{Name: "db-username", Path: "database/creds/app", Key: "username", Method: "GET", Mode: 0o644, Encoding: EncodingUTF8},
			{Name: "db-password", Path: "database/creds/app", Key: "password", Method: "GET", Mode: 0o644, Encoding: EncodingUTF8},
			{Name: "config/app.json", Path: "secret/data/app", Query: url.Values{"version": {"3"}}, Method: "GET", Mode: 0o640, Encoding: EncodingUTF8, Format: FormatData},
			{
				Name: "tls/tls.crt", Path: "pki/issue/example-dot-com", Key: "certificate", Method: "PUT", Mode: 0o644, Encoding: EncodingUTF8,
				Args: map[string]any{
					"common_name":          "test.example.com",
					"ttl":                  "24h",
					"alt_names":            []any{"a.example.com", "b.example.com"},
					"exclude_cn_from_sans": true,
					"max_path_length":      2,
				},
			},
			{Name: "blob.bin", Path: "secret/data/blob", Key: "payload", Method: "GET", Mode: 0o600, Encoding: EncodingBase64},
		},
		Pod:                 Pod{Name: "web-0", Namespace: "shop", UID: "9aeb260f-d64a-426c-9872-95b6bab37e00", ServiceAccount: "web"},
		SecretProviderClass: "vault-db",
		Tokens: map[string]Token{
			"vault": {Value: redact.New(token), ExpiresAt: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)},
			"other": {Value: redact.New("b")},
		},
		TargetPath: testTarget,
	}
	if diff := cmp.Diff(want, got, secretCmp); diff != "" {
		t.Errorf("Parse mismatch (-want +got):\n%s", diff)
	}
	if got.Objects[0].RequestKey() != got.Objects[1].RequestKey() {
		t.Error("username and password from one path must share a request (one lease)")
	}
	for _, out := range []string{fmt.Sprintf("%v", got), fmt.Sprintf("%+v", got), fmt.Sprintf("%#v", got)} {
		if strings.Contains(out, token) {
			t.Fatalf("formatting a Mount prints the token: %s", out)
		}
	}
}

func TestParseDefaults(t *testing.T) {
	m := mustParse(t, nil, Defaults{})
	want := &Mount{
		Role:          "app",
		VaultAddress:  "https://127.0.0.1:8200",
		AuthType:      AuthKubernetes,
		AuthMountPath: "kubernetes",
		Audience:      "vault",
		Objects:       []Object{{Name: "a", Path: "secret/data/a", Method: "GET", Mode: 0o644, Encoding: EncodingUTF8}},
		Pod:           Pod{Name: "web-0", Namespace: "shop", UID: "web-0-uid", ServiceAccount: "web"},
		Tokens:        map[string]Token{},
		TargetPath:    testTarget,
	}
	if diff := cmp.Diff(want, m, secretCmp); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestParsePrecedence(t *testing.T) {
	flags := Defaults{
		VaultAddress:   "https://flags:8200",
		VaultNamespace: "flags-ns",
		AuthMountPath:  "flags-mount",
		// The class's files below are under /class.
		AllowedTLSDirectories: []string{"/class"},
		TLS: TLS{
			CACert: "/flags/ca.crt", CADirectory: "/flags/ca.d", ServerName: "flags.example.com",
			ClientCert: "/flags/c.crt", ClientKey: "/flags/c.key", SkipVerify: true,
		},
	}
	type view struct {
		Address, Namespace, Mount string
		AuthType                  AuthType
		TLS                       TLS
	}
	tests := []struct {
		name     string
		defaults Defaults
		params   map[string]string
		want     view
	}{
		{
			name: "built-in defaults",
			want: view{Address: "https://127.0.0.1:8200", Mount: "kubernetes", AuthType: AuthKubernetes},
		},
		{
			name:   "jwt auth defaults to the jwt mount",
			params: map[string]string{"vaultAuthType": "JWT"},
			want:   view{Address: "https://127.0.0.1:8200", Mount: "jwt", AuthType: AuthJWT},
		},
		{
			name:     "flags over built-in defaults",
			defaults: flags,
			want:     view{Address: "https://flags:8200", Namespace: "flags-ns", Mount: "flags-mount", AuthType: AuthKubernetes, TLS: flags.TLS},
		},
		{
			name:     "flags mount applies to jwt too",
			defaults: flags,
			params:   map[string]string{"vaultAuthType": "jwt"},
			want:     view{Address: "https://flags:8200", Namespace: "flags-ns", Mount: "flags-mount", AuthType: AuthJWT, TLS: flags.TLS},
		},
		{
			name:     "parameters over flags",
			defaults: flags,
			params: map[string]string{
				"vaultAddress": "http://class:8200", "vaultNamespace": "class-ns", "vaultAuthMountPath": "/auth/class/",
				"vaultCACertPath": "/class/ca.crt", "vaultTLSServerName": "class.example.com",
				"vaultTLSClientCertPath": "/class/c.crt", "vaultTLSClientKeyPath": "/class/c.key", "vaultSkipTLSVerify": "false",
			},
			want: view{
				Address: "http://class:8200", Namespace: "class-ns", Mount: "class", AuthType: AuthKubernetes,
				// The CA pair comes from one place, so the flags' directory is dropped.
				TLS: TLS{CACert: "/class/ca.crt", ServerName: "class.example.com", ClientCert: "/class/c.crt", ClientKey: "/class/c.key"},
			},
		},
		{
			name:     "class CA directory replaces the flags' CA pair",
			defaults: flags,
			params:   map[string]string{"vaultCADirectory": "/class/ca.d"},
			want: view{
				Address: "https://flags:8200", Namespace: "flags-ns", Mount: "flags-mount", AuthType: AuthKubernetes,
				TLS: TLS{CADirectory: "/class/ca.d", ServerName: "flags.example.com", ClientCert: "/flags/c.crt", ClientKey: "/flags/c.key", SkipVerify: true},
			},
		},
		{
			name:     "empty parameters count as unset",
			defaults: flags,
			params: map[string]string{
				"vaultAddress": "", "vaultNamespace": "", "vaultAuthMountPath": "", "vaultKubernetesMountPath": "",
				"vaultCACertPath": "", "vaultSkipTLSVerify": "", "vaultAuthType": "",
			},
			want: view{Address: "https://flags:8200", Namespace: "flags-ns", Mount: "flags-mount", AuthType: AuthKubernetes, TLS: flags.TLS},
		},
		{
			name:   "unix socket address (Vault Agent sidecar)",
			params: map[string]string{"vaultAddress": "unix:///var/run/vault/agent.sock"},
			want:   view{Address: "unix:///var/run/vault/agent.sock", Mount: "kubernetes", AuthType: AuthKubernetes},
		},
		{
			name:   "skip verify from the class",
			params: map[string]string{"vaultSkipTLSVerify": "1"},
			want:   view{Address: "https://127.0.0.1:8200", Mount: "kubernetes", AuthType: AuthKubernetes, TLS: TLS{SkipVerify: true}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mustParse(t, tt.params, tt.defaults)
			got := view{Address: m.VaultAddress, Namespace: m.VaultNamespace, Mount: m.AuthMountPath, AuthType: m.AuthType, TLS: m.TLS}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestAuthMountPath(t *testing.T) {
	tests := []struct{ param, in, want string }{
		{"vaultKubernetesMountPath", "kubernetes", "kubernetes"},
		{"vaultKubernetesMountPath", "auth/kubernetes", "kubernetes"},
		{"vaultAuthMountPath", "/cluster-a/", "cluster-a"},
		{"vaultAuthMountPath", "/auth/cluster-a/", "cluster-a"},
		{"vaultAuthMountPath", "auth/teams/a/k8s", "teams/a/k8s"},
		{"vaultAuthMountPath", "auth", "auth"},
	}
	for _, tt := range tests {
		t.Run(tt.param+"="+tt.in, func(t *testing.T) {
			m := mustParse(t, map[string]string{tt.param: tt.in}, Defaults{})
			if m.AuthMountPath != tt.want {
				t.Errorf("AuthMountPath = %q, want %q", m.AuthMountPath, tt.want)
			}
		})
	}
}

// wantError asserts err is an *Error for param whose message contains every
// substring in msg.
func wantError(t *testing.T, err error, param string, msg ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("Parse succeeded, want an error for %q", param)
	}
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T) is not a *config.Error", err, err)
	}
	if ce.Param != param {
		t.Errorf("Param = %q, want %q (error: %v)", ce.Param, param, err)
	}
	for _, m := range msg {
		if !strings.Contains(err.Error(), m) {
			t.Errorf("error %q does not contain %q", err.Error(), m)
		}
	}
}

// del as an edit value removes the key (see parseEdited).
const del = "\x00delete"

func withObject(extra string) string { return oneObject + extra }

// parseErrorCases are attribute edits and the error each must give;
// FuzzParse and FuzzAttributes start from them.
var parseErrorCases = []struct {
	name     string
	edit     map[string]string
	defaults Defaults
	param    string
	msg      []string
}{
	{name: "roleName missing", edit: map[string]string{"roleName": del}, param: "roleName", msg: []string{"is required"}},
	{name: "roleName empty", edit: map[string]string{"roleName": ""}, param: "roleName", msg: []string{"is required"}},
	{name: "pod name missing", edit: map[string]string{"csi.storage.k8s.io/pod.name": del}, param: "csi.storage.k8s.io/pod.name", msg: []string{"is required"}},
	{name: "pod namespace missing", edit: map[string]string{"csi.storage.k8s.io/pod.namespace": del}, param: "csi.storage.k8s.io/pod.namespace", msg: []string{"podInfoOnMount"}},

	{name: "address without scheme", edit: map[string]string{"vaultAddress": "vault:8200"}, param: "vaultAddress", msg: []string{"http(s) URL"}},
	{name: "address wrong scheme", edit: map[string]string{"vaultAddress": "ftp://vault"}, param: "vaultAddress", msg: []string{"http(s) URL"}},
	{name: "address without host", edit: map[string]string{"vaultAddress": "https://"}, param: "vaultAddress", msg: []string{"with a host"}},
	{name: "address from flags is checked too", defaults: Defaults{VaultAddress: "127.0.0.1:8200"}, param: "vaultAddress", msg: []string{"-vault-addr"}},
	{name: "address with credentials", edit: map[string]string{"vaultAddress": "https://user:pw@vault:8200"}, param: "vaultAddress", msg: []string{"without credentials"}},

	{name: "auth type unknown", edit: map[string]string{"vaultAuthType": "ldap"}, param: "vaultAuthType", msg: []string{`"kubernetes"`, `"jwt"`, `not "ldap"`}},
	{name: "both mount paths", edit: map[string]string{"vaultAuthMountPath": "a", "vaultKubernetesMountPath": "b"}, param: "vaultAuthMountPath", msg: []string{"vaultKubernetesMountPath", "set only one"}},
	{name: "mount only auth/", edit: map[string]string{"vaultAuthMountPath": "auth/"}, param: "vaultAuthMountPath", msg: []string{"must name a Vault auth mount"}},
	{name: "mount only slashes", edit: map[string]string{"vaultKubernetesMountPath": "//"}, param: "vaultKubernetesMountPath", msg: []string{"must name a Vault auth mount"}},
	{name: "mount climbs out", edit: map[string]string{"vaultAuthMountPath": "../sys/mounts"}, param: "vaultAuthMountPath", msg: []string{`".."`, `not "../sys/mounts"`}},
	{name: "mount empty segment", edit: map[string]string{"vaultAuthMountPath": "a//b"}, param: "vaultAuthMountPath", msg: []string{"empty"}},
	{name: "mount with query", edit: map[string]string{"vaultAuthMountPath": "k8s?x=1"}, param: "vaultAuthMountPath", msg: []string{`"?"`}},
	{name: "mount from flags", defaults: Defaults{AuthMountPath: "a/../b"}, param: "vaultAuthMountPath", msg: []string{`".."`}},

	{name: "client cert without key", edit: map[string]string{"vaultTLSClientCertPath": "/c.crt"}, param: "vaultTLSClientKeyPath", msg: []string{"vaultTLSClientCertPath is set"}},
	{name: "client key without cert", edit: map[string]string{"vaultTLSClientKeyPath": "/c.key"}, param: "vaultTLSClientCertPath", msg: []string{"vaultTLSClientKeyPath is set"}},
	{name: "class key alone replaces the flags' pair", defaults: Defaults{TLS: TLS{ClientCert: "/f.crt", ClientKey: "/f.key"}}, edit: map[string]string{"vaultTLSClientKeyPath": "/c.key"}, param: "vaultTLSClientCertPath"},
	{name: "skip verify not a bool", edit: map[string]string{"vaultSkipTLSVerify": "yes"}, param: "vaultSkipTLSVerify", msg: []string{`"true" or "false"`, `not "yes"`}},
	{name: "class objectFormat", edit: map[string]string{"objectFormat": "yaml"}, param: "objectFormat", msg: []string{`"data"`, `not "yaml"`}},

	{name: "objects missing", edit: map[string]string{"objects": del}, param: "objects", msg: []string{"is required"}},
	{name: "objects blank", edit: map[string]string{"objects": "  \n"}, param: "objects", msg: []string{"is required"}},
	{name: "objects empty list", edit: map[string]string{"objects": "[]"}, param: "objects", msg: []string{"at least one"}},
	{name: "objects null", edit: map[string]string{"objects": "~"}, param: "objects", msg: []string{"at least one"}},
	{name: "objects a mapping", edit: map[string]string{"objects": "objectName: a\nsecretPath: b\n"}, param: "objects", msg: []string{"YAML list"}},
	{name: "objects a scalar", edit: map[string]string{"objects": "secret/data/a"}, param: "objects", msg: []string{"YAML list"}},
	{name: "objects bad YAML", edit: map[string]string{"objects": "- objectName: a\n  secretPath: [b\n"}, param: "objects", msg: []string{"not valid YAML", "line "}},
	{name: "objects bad indentation", edit: map[string]string{"objects": "- objectName: a\n secretPath: b\n"}, param: "objects", msg: []string{"not valid YAML", "(line "}},
	{name: "entry a scalar", edit: map[string]string{"objects": withObject("- db-password\n")}, param: "objects[1]", msg: []string{"must be a mapping"}},
	{name: "entry a list", edit: map[string]string{"objects": withObject("- [a, b]\n")}, param: "objects[1]", msg: []string{"must be a mapping"}},
	{name: "entry null", edit: map[string]string{"objects": withObject("-\n")}, param: "objects[1].objectName", msg: []string{"is required"}},
	{name: "unknown field", edit: map[string]string{"objects": withObject("- objectName: b\n  secretPath: c\n  version: 3\n")}, param: "objects[1]", msg: []string{`unknown field "version"`, "objectName, secretPath"}},
	{name: "field in wrong case", edit: map[string]string{"objects": "- objectName: b\n  secretpath: c\n"}, param: "objects[0]", msg: []string{`unknown field "secretpath"`, `did you mean "secretPath"?`}},
	{name: "numeric field name", edit: map[string]string{"objects": "- objectName: b\n  secretPath: c\n  1: x\n"}, param: "objects[0]", msg: []string{`unknown field "1"`, "line 3"}},
	{name: "non-string field name", edit: map[string]string{"objects": "- objectName: b\n  secretPath: c\n  ? [a]\n  : x\n"}, param: "objects[0]", msg: []string{"field name that is not a string"}},
	{name: "merge key not a mapping", edit: map[string]string{"objects": "- objectName: b\n  secretPath: c\n  <<: x\n"}, param: "objects[0]", msg: []string{"merge key"}},
	{name: "merge bomb", edit: map[string]string{"objects": mergeBomb(7)}, param: "objects[0]", msg: []string{"merges more than 64 mappings"}},
	{name: "merge of itself", edit: map[string]string{"objects": "- &x {objectName: a, secretPath: b, <<: *x}\n"}, param: "objects[0]", msg: []string{"merges more than"}},
	{name: "merged unknown field", edit: map[string]string{"objects": "- &x {objectName: b, secretPath: c, path: d}\n- <<: *x\n  objectName: e\n"}, param: "objects[0]", msg: []string{`unknown field "path"`}},
	{name: "field set twice", edit: map[string]string{"objects": "- objectName: b\n  secretPath: c\n  secretPath: d\n"}, param: "objects[0].secretPath", msg: []string{"set twice"}},
	{name: "objectName missing", edit: map[string]string{"objects": withObject("- secretPath: c\n")}, param: "objects[1].objectName", msg: []string{"is required"}},
	{name: "objectName a list", edit: map[string]string{"objects": "- objectName: [a]\n  secretPath: c\n"}, param: "objects[0].objectName", msg: []string{"single value"}},
	{name: "secretKey a mapping", edit: map[string]string{"objects": "- objectName: a\n  secretPath: c\n  secretKey: {a: b}\n"}, param: "objects[0].secretKey", msg: []string{"single value"}},
	{name: "secretPath missing", edit: map[string]string{"objects": withObject("- objectName: b\n")}, param: "objects[1].secretPath", msg: []string{"is required"}},
	{name: "secretPath only v1", edit: map[string]string{"objects": "- objectName: b\n  secretPath: /v1/\n"}, param: "objects[0].secretPath", msg: []string{"after /v1/"}},
	{name: "secretPath only slashes", edit: map[string]string{"objects": "- objectName: b\n  secretPath: //\n"}, param: "objects[0].secretPath", msg: []string{"after /v1/"}},
	{name: "secretPath with NUL", edit: map[string]string{"objects": "- objectName: b\n  secretPath: \"secret/data/a\\0b\"\n"}, param: "objects[0].secretPath", msg: []string{"control characters"}},
	{name: "secretPath with newline", edit: map[string]string{"objects": "- objectName: b\n  secretPath: \"secret/data/a\\nb\"\n"}, param: "objects[0].secretPath", msg: []string{"control characters"}},
	{name: "secretPath only query", edit: map[string]string{"objects": "- objectName: b\n  secretPath: \"?version=1\"\n"}, param: "objects[0].secretPath", msg: []string{"after /v1/"}},
	{name: "secretPath climbs out", edit: map[string]string{"objects": "- objectName: b\n  secretPath: secret/../sys/raw/x\n"}, param: "objects[0].secretPath", msg: []string{`".."`}},
	{name: "secretPath climbs out after v1", edit: map[string]string{"objects": "- objectName: b\n  secretPath: /v1/../x\n"}, param: "objects[0].secretPath", msg: []string{`".."`}},
	{name: "secretPath bad query", edit: map[string]string{"objects": "- objectName: b\n  secretPath: secret/data/b?version=%zz\n"}, param: "objects[0].secretPath", msg: []string{"query string"}},
	{name: "method DELETE", edit: map[string]string{"objects": "- objectName: b\n  secretPath: c\n  method: delete\n"}, param: "objects[0].method", msg: []string{"GET (the default), PUT or POST", `not "delete"`}},
	{name: "filePermission digit 8", edit: map[string]string{"objects": "- objectName: a\n  secretPath: c\n  filePermission: \"0800\"\n"}, param: "objects[0].filePermission", msg: []string{"octal file mode", `not "0800"`}},
	{name: "filePermission too big", edit: map[string]string{"objects": "- objectName: a\n  secretPath: c\n  filePermission: \"1777\"\n"}, param: "objects[0].filePermission", msg: []string{"no greater than 0777"}},
	{name: "filePermission symbolic", edit: map[string]string{"objects": "- objectName: a\n  secretPath: c\n  filePermission: rw-r--r--\n"}, param: "objects[0].filePermission", msg: []string{`"0640"`}},
	{name: "filePermission hex", edit: map[string]string{"objects": "- objectName: a\n  secretPath: c\n  filePermission: 0x1a4\n"}, param: "objects[0].filePermission"},
	{name: "filePermission negative", edit: map[string]string{"objects": "- objectName: a\n  secretPath: c\n  filePermission: -644\n"}, param: "objects[0].filePermission"},
	{name: "filePermission bare prefix", edit: map[string]string{"objects": "- objectName: a\n  secretPath: c\n  filePermission: 0o\n"}, param: "objects[0].filePermission"},
	{name: "filePermission long value truncated", edit: map[string]string{"objects": "- objectName: a\n  secretPath: c\n  filePermission: " + strings.Repeat("9", 100) + "\n"}, param: "objects[0].filePermission", msg: []string{strings.Repeat("9", 64) + `"…`}},
	{name: "encoding unknown", edit: map[string]string{"objects": "- objectName: a\n  secretPath: c\n  encoding: latin1\n"}, param: "objects[0].encoding", msg: []string{`"base64"`, `not "latin1"`}},
	{name: "objectFormat unknown", edit: map[string]string{"objects": "- objectName: a\n  secretPath: c\n  objectFormat: xml\n"}, param: "objects[0].objectFormat", msg: []string{`not "xml"`}},
	{name: "secretArgs a string", edit: map[string]string{"objects": "- objectName: a\n  secretPath: c\n  secretArgs: ttl=1h\n"}, param: "objects[0].secretArgs", msg: []string{"must be a mapping"}},
	{name: "secretArgs a list", edit: map[string]string{"objects": "- objectName: a\n  secretPath: c\n  secretArgs: [ttl]\n"}, param: "objects[0].secretArgs", msg: []string{"must be a mapping"}},
	{name: "secretArgs key twice", edit: map[string]string{"objects": "- objectName: a\n  secretPath: c\n  secretArgs:\n    ttl: 1h\n    ttl: 2h\n"}, param: "objects[0].secretArgs", msg: []string{"set twice", "line 5"}},
	{name: "secretArgs nested key twice", edit: map[string]string{"objects": "- objectName: a\n  secretPath: c\n  secretArgs: {a: {b: 1, b: 2}}\n"}, param: "objects[0].secretArgs", msg: []string{"set twice"}},
	{name: "secretArgs key twice as number and string", edit: map[string]string{"objects": "- objectName: a\n  secretPath: c\n  secretArgs: {1: a, \"1\": b}\n"}, param: "objects[0].secretArgs", msg: []string{"set twice"}},
	{name: "secretArgs keys collide as JSON", edit: map[string]string{"objects": "- objectName: a\n  secretPath: c\n  secretArgs: {1: a, 1.0: b}\n"}, param: "objects[0].secretArgs", msg: []string{"same once written as JSON"}},
	{name: "secretArgs null key", edit: map[string]string{"objects": "- objectName: a\n  secretPath: c\n  secretArgs: {~: a}\n"}, param: "objects[0].secretArgs", msg: []string{"plain scalar keys"}},
	{name: "secretArgs list key", edit: map[string]string{"objects": "- objectName: a\n  secretPath: c\n  secretArgs: {? [a]: b}\n"}, param: "objects[0].secretArgs"},
	{name: "secretArgs NaN", edit: map[string]string{"objects": "- objectName: a\n  secretPath: c\n  secretArgs: {x: .nan}\n"}, param: "objects[0].secretArgs", msg: []string{"JSON can carry"}},
	{name: "secretArgs bad tag", edit: map[string]string{"objects": "- objectName: a\n  secretPath: c\n  secretArgs: {x: !!int abc}\n"}, param: "objects[0].secretArgs", msg: []string{"not valid YAML"}},

	{name: "tokens not JSON", edit: map[string]string{"csi.storage.k8s.io/serviceAccount.tokens": "{"}, param: "csi.storage.k8s.io/serviceAccount.tokens", msg: []string{"JSON object"}},
	{name: "tokens wrong shape", edit: map[string]string{"csi.storage.k8s.io/serviceAccount.tokens": `{"vault":"abc"}`}, param: "csi.storage.k8s.io/serviceAccount.tokens"},
	{name: "tokens empty token", edit: map[string]string{"csi.storage.k8s.io/serviceAccount.tokens": `{"vault":{"token":""}}`}, param: "csi.storage.k8s.io/serviceAccount.tokens", msg: []string{`no token for audience "vault"`}},
	{name: "tokens bad expiry", edit: map[string]string{"csi.storage.k8s.io/serviceAccount.tokens": `{"vault":{"token":"t","expirationTimestamp":"tomorrow"}}`}, param: "csi.storage.k8s.io/serviceAccount.tokens", msg: []string{"RFC 3339"}},
}

func TestParseErrors(t *testing.T) {
	for _, tt := range parseErrorCases {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseEdited(t, tt.edit, tt.defaults)
			wantError(t, err, tt.param, tt.msg...)
		})
	}
}

func TestParseRequestErrors(t *testing.T) {
	good := encode(t, baseAttrs())
	tests := []struct {
		name                           string
		attributes, target, permission string
		param                          string
		msg                            string
	}{
		{"attributes not JSON", `{"roleName": `, testTarget, testPerm, "attributes", "JSON object"},
		{"attributes not an object", `["roleName"]`, testTarget, testPerm, "attributes", "JSON object"},
		{"attribute not a string", `{"roleName": 1}`, testTarget, testPerm, "attributes", "all strings"},
		{"attributes empty", ``, testTarget, testPerm, "attributes", "JSON object"},
		{"target path empty", good, "", testPerm, "targetPath", "is required"},
		{"permission empty", good, testTarget, "", "permission", `"420"`},
		{"permission octal-looking", good, testTarget, "0644", "permission", `not "0644"`},
		{"permission too big", good, testTarget, "512", "permission", "no greater than 511"},
		{"permission negative", good, testTarget, "-1", "permission", "decimal"},
		{"permission text", good, testTarget, "rw", "permission", "decimal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.attributes, tt.target, tt.permission, Defaults{})
			wantError(t, err, tt.param, tt.msg)
		})
	}
}

// objectNameCases are objectNames and the words of their error ("" means
// valid); FuzzObjectName starts from them.
var objectNameCases = []struct {
	name string
	msg  string
}{
	{"password", ""},
	{"db/password", ""},
	{"a/b/c.txt", ""},
	{".hidden", ""},
	{"a..b", ""},
	{"..a", ""},
	{"a b", ""},
	{strings.Repeat("x", 255), ""},
	{strings.Repeat("x", 255) + "/" + strings.Repeat("y", 255), ""},
	{"/etc/passwd", "is absolute"},
	{"//x", "is absolute"},
	{"..", `".."`},
	{".", `"."`},
	{"../x", `".."`},
	{"a/../../x", `".."`},
	{"a/..", `".."`},
	{"./a", `"."`},
	{"a/./b", `"."`},
	{"a//b", "empty segment"},
	{"a/", "empty segment"},
	{`a\b`, "backslash"},
	{`..\..\x`, "backslash"},
	{"a\x00b", "NUL"},
	{strings.Repeat("x", 256), "at most 255 bytes"},
	{"a/" + strings.Repeat("x", 256), "at most 255 bytes"},
}

func TestObjectNames(t *testing.T) {
	for _, tt := range objectNameCases {
		t.Run(fmt.Sprintf("%.40q", tt.name), func(t *testing.T) {
			b, err := json.Marshal(tt.name) // a JSON string is a YAML double-quoted scalar
			if err != nil {
				t.Fatal(err)
			}
			objects := "- objectName: " + string(b) + "\n  secretPath: secret/data/a\n"
			m, err := parseEdited(t, map[string]string{"objects": objects}, Defaults{})
			if tt.msg == "" {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if got := m.Objects[0].Name; got != tt.name || !filepath.IsLocal(got) {
					t.Errorf("Name = %q, want %q and a local path", got, tt.name)
				}
				return
			}
			wantError(t, err, "objects[0].objectName", tt.msg)
		})
	}
}

func TestObjectNameConflicts(t *testing.T) {
	tests := []struct {
		name    string
		objects []string
		param   string
		msg     []string
	}{
		{"same name", []string{"a", "b", "a"}, "objects[2].objectName", []string{`"a" is also the objectName of objects[0]`, "unique"}},
		{"same nested name", []string{"db/user", "db/user"}, "objects[1].objectName", []string{"objects[0]"}},
		{"file then directory", []string{"db", "db/password"}, "objects[1].objectName", []string{`needs "db" to be a directory`, "objects[0]"}},
		{"deep file then directory", []string{"a/b", "a/b/c/d"}, "objects[1].objectName", []string{`needs "a/b" to be a directory`}},
		{"directory then file", []string{"x", "db/password", "db"}, "objects[2].objectName", []string{"directory of objects[1]", `"db/password"`}},
		{"siblings are fine", []string{"db/user", "db/password", "dbx", "db2/a"}, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			for _, n := range tt.objects {
				fmt.Fprintf(&b, "- objectName: %q\n  secretPath: secret/data/x\n", n)
			}
			_, err := parseEdited(t, map[string]string{"objects": b.String()}, Defaults{})
			if tt.param == "" {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				return
			}
			wantError(t, err, tt.param, tt.msg...)
		})
	}
}

// secretPathCases are secretPaths and what they parse to; FuzzSecretPath
// starts from them.
var secretPathCases = []struct {
	in    string
	path  string
	query url.Values
}{
	{"secret/data/a", "secret/data/a", nil},
	{"/secret/data/a", "secret/data/a", nil},
	{"v1/secret/data/a", "secret/data/a", nil},
	{"/v1/secret/data/a", "secret/data/a", nil},
	{"secret/data/v1/a", "secret/data/v1/a", nil},
	{"v1", "v1", nil},
	{"secret/data/a?version=3", "secret/data/a", url.Values{"version": {"3"}}},
	{"/v1/secret/data/a?version=3&x=a%20b", "secret/data/a", url.Values{"version": {"3"}, "x": {"a b"}}},
	{"secret/data/a?list=1&list=2", "secret/data/a", url.Values{"list": {"1", "2"}}},
	{"secret/data/a?", "secret/data/a", nil},
	{"secret/data/a?q=x?y", "secret/data/a", url.Values{"q": {"x?y"}}},
	{"secret/data/a..b", "secret/data/a..b", nil},
	{"//secret/data/a", "secret/data/a", nil},
	{"/v1//secret/data/a", "secret/data/a", nil},
}

func TestSecretPath(t *testing.T) {
	for _, tt := range secretPathCases {
		t.Run(tt.in, func(t *testing.T) {
			b, _ := json.Marshal(tt.in)
			o := objectsOf(t, "- objectName: a\n  secretPath: "+string(b)+"\n")[0]
			if o.Path != tt.path {
				t.Errorf("Path = %q, want %q", o.Path, tt.path)
			}
			if diff := cmp.Diff(tt.query, o.Query); diff != "" {
				t.Errorf("Query (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMethod(t *testing.T) {
	for in, want := range map[string]string{"": "GET", "get": "GET", "Get": "GET", "GET": "GET", "put": "PUT", "Post": "POST", "POST": "POST"} {
		t.Run(in, func(t *testing.T) {
			line := ""
			if in != "" {
				line = "  method: " + in + "\n"
			}
			o := objectsOf(t, "- objectName: a\n  secretPath: kv/a\n"+line)[0]
			if o.Method != want {
				t.Errorf("Method = %q, want %q", o.Method, want)
			}
		})
	}
}

// filePermissionCases are filePermission values as written in YAML and
// their modes; FuzzFilePermission starts from them.
var filePermissionCases = []struct {
	yaml string
	want os.FileMode
}{
	{"", 0o644}, // the request's permission
	{"0600", 0o600},
	{`"0600"`, 0o600},
	{"600", 0o600},
	{`"600"`, 0o600},
	{"0o600", 0o600},
	{`"0o600"`, 0o600},
	{"0O440", 0o440},
	// The peer's users write the mode unquoted; a YAML library would turn
	// this into the integer 420, which must not become 0420.
	{"0644", 0o644},
	{"0440", 0o440},
	{"440", 0o440},
	{"0777", 0o777},
	{"0", 0},
	{"!!int 0400", 0o400},
}

func TestFilePermission(t *testing.T) {
	for _, tt := range filePermissionCases {
		t.Run(tt.yaml, func(t *testing.T) {
			line := ""
			if tt.yaml != "" {
				line = "  filePermission: " + tt.yaml + "\n"
			}
			o := objectsOf(t, "- objectName: a\n  secretPath: kv/a\n"+line)[0]
			if o.Mode != tt.want {
				t.Errorf("Mode = %#o, want %#o", o.Mode, tt.want)
			}
		})
	}
	t.Run("request permission is the default", func(t *testing.T) {
		m, err := Parse(encode(t, baseAttrs()), testTarget, "256", Defaults{})
		if err != nil {
			t.Fatal(err)
		}
		if m.Objects[0].Mode != 0o400 {
			t.Errorf("Mode = %#o, want 0400", m.Objects[0].Mode)
		}
	})
}

// encodingCases are encodings and formats; FuzzEncoding starts from them.
var encodingCases = []struct {
	name        string
	classFormat string
	fields      string
	encoding    Encoding
	format      Format
}{
	{"defaults", "", "", EncodingUTF8, FormatEnvelope},
	{"utf-8", "", "  encoding: utf-8\n", EncodingUTF8, FormatEnvelope},
	{"utf8 upper", "", "  encoding: UTF8\n", EncodingUTF8, FormatEnvelope},
	{"base64", "", "  encoding: base64\n", EncodingBase64, FormatEnvelope},
	{"hex", "", "  encoding: HEX\n", EncodingHex, FormatEnvelope},
	{"object data", "", "  objectFormat: data\n", EncodingUTF8, FormatData},
	{"class data", "data", "", EncodingUTF8, FormatData},
	{"class json", "json", "", EncodingUTF8, FormatEnvelope},
	{"object json overrides class data", "data", "  objectFormat: json\n", EncodingUTF8, FormatEnvelope},
	{"object data overrides class json", "JSON", "  objectFormat: Data\n", EncodingUTF8, FormatData},
}

func TestEncodingAndFormat(t *testing.T) {
	for _, tt := range encodingCases {
		t.Run(tt.name, func(t *testing.T) {
			m := mustParse(t, map[string]string{
				"objectFormat": tt.classFormat,
				"objects":      "- objectName: a\n  secretPath: kv/a\n" + tt.fields,
			}, Defaults{})
			if o := m.Objects[0]; o.Encoding != tt.encoding || o.Format != tt.format {
				t.Errorf("Encoding, Format = %q, %q; want %q, %q", o.Encoding, o.Format, tt.encoding, tt.format)
			}
		})
	}
}

func TestScalarsKeepTheirText(t *testing.T) {
	// A YAML library resolving these would hand back 83, true and 1.
	o := objectsOf(t, "- objectName: 0123\n  secretPath: kv/a\n  secretKey: yes\n- objectName: b\n  secretPath: kv/b\n  secretKey: 1.0\n")
	if o[0].Name != "0123" || o[0].Key != "yes" || o[1].Key != "1.0" {
		t.Errorf("got names/keys %q %q %q, want 0123 yes 1.0", o[0].Name, o[0].Key, o[1].Key)
	}
}

func TestSecretArgs(t *testing.T) {
	o := objectsOf(t, `
- objectName: a
  secretPath: pki/issue/r
  method: POST
  secretArgs:
    common_name: a.example.com
    ttl: 1h
    ip_sans: [10.0.0.1]
    nested: {x: 1, 2: y, true: z, 1.5: w, list: [{k: v}]}
    country: NO
    mode: 0644
    big: 9007199254740993
    none: ~
- objectName: b
  secretPath: pki/issue/r
  secretArgs: {}
`)
	want := map[string]any{
		"common_name": "a.example.com",
		"ttl":         "1h",
		"ip_sans":     []any{"10.0.0.1"},
		"nested":      map[string]any{"x": 1, "2": "y", "true": "z", "1.5": "w", "list": []any{map[string]any{"k": "v"}}},
		"big":         9007199254740993,
		"none":        nil,
		"country":     "NO", // YAML 1.1 would say false; the peer's yaml.v3 sends "NO"
		"mode":        420,
	}
	if diff := cmp.Diff(want, o[0].Args); diff != "" {
		t.Errorf("Args (-want +got):\n%s", diff)
	}
	body, err := json.Marshal(o[0].Args)
	if err != nil || !strings.Contains(string(body), `"big":9007199254740993`) {
		t.Errorf("JSON body %s (%v) lost integer precision", body, err)
	}
	if o[1].Args == nil || len(o[1].Args) != 0 {
		t.Errorf("secretArgs: {} gave %#v, want an empty, non-nil map", o[1].Args)
	}
}

// mergeBomb is a few hundred bytes whose merge keys (<<), followed through
// aliases, name 10^levels mappings.
func mergeBomb(levels int) string {
	var b strings.Builder
	b.WriteString("- secretArgs:\n    k0: &a0 {objectName: x}\n")
	for i := 1; i <= levels; i++ {
		fmt.Fprintf(&b, "    k%d: &a%d {<<: [*a%d%s]}\n", i, i, i-1, strings.Repeat(fmt.Sprintf(", *a%d", i-1), 9))
	}
	fmt.Fprintf(&b, "  <<: *a%d\n  secretPath: y\n", levels)
	return b.String()
}

func TestMergeKeys(t *testing.T) {
	got := objectsOf(t, `
- &db {objectName: db-user, secretPath: database/creds/app, secretKey: username}
- <<: *db
  objectName: db-password
  secretKey: password
- <<: [{secretKey: first, method: put}, {secretKey: second, encoding: hex}]
  objectName: c
  secretPath: kv/c
`)
	want := []Object{
		{Name: "db-user", Path: "database/creds/app", Key: "username", Method: "GET", Mode: 0o644, Encoding: EncodingUTF8},
		{Name: "db-password", Path: "database/creds/app", Key: "password", Method: "GET", Mode: 0o644, Encoding: EncodingUTF8},
		{Name: "c", Path: "kv/c", Key: "first", Method: "PUT", Mode: 0o644, Encoding: EncodingHex},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestRequestKey(t *testing.T) {
	base := Object{
		Name: "a", Path: "database/creds/app", Method: "GET",
		Query: url.Values{"a": {"1"}, "b": {"2"}},
		Args:  map[string]any{"x": 1, "y": map[string]any{"p": "q", "r": []any{1, "s"}}},
	}
	with := func(f func(*Object)) Object {
		o := base
		f(&o)
		return o
	}
	same := []struct {
		name string
		o    Object
	}{
		{"other name, key, mode, encoding, format", with(func(o *Object) {
			o.Name, o.Key, o.Mode, o.Encoding, o.Format = "b", "password", 0o600, EncodingHex, FormatData
		})},
		{"query built in another order", with(func(o *Object) { o.Query = url.Values{"b": {"2"}, "a": {"1"}} })},
		{"args built in another order", with(func(o *Object) {
			o.Args = map[string]any{"y": map[string]any{"r": []any{1, "s"}, "p": "q"}, "x": 1}
		})},
		{"float and int of one value", with(func(o *Object) {
			o.Args = map[string]any{"x": 1.0, "y": map[string]any{"p": "q", "r": []any{1, "s"}}}
		})},
		{"method in lower case", with(func(o *Object) { o.Method = "get" })},
		{"empty method is GET", with(func(o *Object) { o.Method = "" })},
	}
	for _, tt := range same {
		t.Run("same/"+tt.name, func(t *testing.T) {
			if base.RequestKey() != tt.o.RequestKey() {
				t.Error("keys differ, want equal")
			}
		})
	}
	differ := []struct {
		name string
		o    Object
	}{
		{"method", with(func(o *Object) { o.Method = "PUT" })},
		{"path", with(func(o *Object) { o.Path = "database/creds/other" })},
		{"path vs query boundary", with(func(o *Object) { o.Path = "database/creds/app?a=1"; o.Query = url.Values{"b": {"2"}} })},
		{"query value", with(func(o *Object) { o.Query = url.Values{"a": {"1"}, "b": {"3"}} })},
		{"query value order", with(func(o *Object) { o.Query = url.Values{"a": {"1"}, "b": {"2", "2"}} })},
		{"no query", with(func(o *Object) { o.Query = nil })},
		{"arg value", with(func(o *Object) { o.Args = map[string]any{"x": 2, "y": map[string]any{"p": "q", "r": []any{1, "s"}}} })},
		{"arg type", with(func(o *Object) { o.Args = map[string]any{"x": "1", "y": map[string]any{"p": "q", "r": []any{1, "s"}}} })},
		{"nested arg", with(func(o *Object) { o.Args = map[string]any{"x": 1, "y": map[string]any{"p": "q", "r": []any{"s", 1}}} })},
		{"no args", with(func(o *Object) { o.Args = nil })},
		{"empty args", with(func(o *Object) { o.Args = map[string]any{} })},
	}
	keys := map[string]string{base.RequestKey(): "base"}
	for _, tt := range differ {
		t.Run("differ/"+tt.name, func(t *testing.T) {
			k := tt.o.RequestKey()
			if prev, ok := keys[k]; ok {
				t.Errorf("key equals that of %q", prev)
			}
			keys[k] = tt.name
		})
	}
	t.Run("nil and empty args differ", func(t *testing.T) {
		a, b := with(func(o *Object) { o.Args = nil }), with(func(o *Object) { o.Args = map[string]any{} })
		if a.RequestKey() == b.RequestKey() {
			t.Error("no body and {} share a key")
		}
	})
	t.Run("args JSON cannot carry", func(t *testing.T) {
		o := with(func(o *Object) { o.Args = map[string]any{"ch": make(chan int)} })
		if o.RequestKey() == "" {
			t.Error("empty key")
		}
	})
	t.Run("does not hold args", func(t *testing.T) {
		o := with(func(o *Object) { o.Args = map[string]any{"token": "hvs.SECRETVALUE"} })
		if strings.Contains(o.RequestKey(), "SECRETVALUE") {
			t.Error("RequestKey holds an argument value")
		}
	})
}

func TestTokens(t *testing.T) {
	tests := []struct {
		name string
		attr *string
		want map[string]Token
	}{
		{name: "absent", attr: nil, want: map[string]Token{}},
		{name: "empty", attr: ptr(""), want: map[string]Token{}},
		{name: "empty object", attr: ptr("{}"), want: map[string]Token{}},
		{name: "null", attr: ptr("null"), want: map[string]Token{}},
		{
			name: "two audiences",
			attr: ptr(`{"vault":{"token":"t1","expirationTimestamp":"2030-01-02T03:04:05Z"},"https://kubernetes.default.svc":{"token":"t2","expirationTimestamp":"2030-01-02T04:04:05+01:00"}}`),
			want: map[string]Token{
				"vault":                          {Value: redact.New("t1"), ExpiresAt: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)},
				"https://kubernetes.default.svc": {Value: redact.New("t2"), ExpiresAt: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)},
			},
		},
		{name: "no expiry", attr: ptr(`{"vault":{"token":"t1"}}`), want: map[string]Token{"vault": {Value: redact.New("t1")}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			edit := map[string]string{}
			if tt.attr != nil {
				edit["csi.storage.k8s.io/serviceAccount.tokens"] = *tt.attr
			}
			m := mustParse(t, edit, Defaults{})
			if diff := cmp.Diff(tt.want, m.Tokens, secretCmp, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
				t.Errorf("Tokens (-want +got):\n%s", diff)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// TestErrorsDoNotLeak feeds secrets into every input that can fail and checks
// no message carries them: error text ends up in pod events.
func TestErrorsDoNotLeak(t *testing.T) {
	const secret = "S3CRET-VALUE-7f3a"
	tests := []struct {
		name  string
		param string
		edit  map[string]string
	}{
		{"tokens truncated JSON", "csi.storage.k8s.io/serviceAccount.tokens", map[string]string{"csi.storage.k8s.io/serviceAccount.tokens": `{"vault":{"token":"` + secret}},
		{"tokens bad character", "csi.storage.k8s.io/serviceAccount.tokens", map[string]string{"csi.storage.k8s.io/serviceAccount.tokens": secret}},
		{"tokens wrong type", "csi.storage.k8s.io/serviceAccount.tokens", map[string]string{"csi.storage.k8s.io/serviceAccount.tokens": `{"vault":"` + secret + `"}`}},
		{"tokens bad expiry", "csi.storage.k8s.io/serviceAccount.tokens", map[string]string{"csi.storage.k8s.io/serviceAccount.tokens": `{"vault":{"token":"` + secret + `","expirationTimestamp":"x` + secret + `"}}`}},
		{"secretArgs bad tag", "objects[0].secretArgs", map[string]string{"objects": "- objectName: a\n  secretPath: c\n  secretArgs: {password: !!int " + secret + "}\n"}},
		{"secretArgs bad nested tag", "objects[0].secretArgs", map[string]string{"objects": "- objectName: a\n  secretPath: c\n  secretArgs: {x: [!!float " + secret + "]}\n"}},
		{"secretArgs key twice", "objects[0].secretArgs", map[string]string{"objects": "- objectName: a\n  secretPath: c\n  secretArgs: {" + secret + ": 1, " + secret + ": 2}\n"}},
		{"secretArgs list key", "objects[0].secretArgs", map[string]string{"objects": "- objectName: a\n  secretPath: c\n  secretArgs: {? [" + secret + "]: x}\n"}},
		{"secretArgs map key", "objects[0].secretArgs", map[string]string{"objects": "- objectName: a\n  secretPath: c\n  secretArgs: {? {a: " + secret + "}: x}\n"}},
		{"secretArgs null key", "objects[0].secretArgs", map[string]string{"objects": "- objectName: a\n  secretPath: c\n  secretArgs: {~: " + secret + "}\n"}},
		{"secretArgs a string", "objects[0].secretArgs", map[string]string{"objects": "- objectName: a\n  secretPath: c\n  secretArgs: " + secret + "\n"}},
		{"secretArgs unterminated quote", "objects", map[string]string{"objects": "- objectName: a\n  secretPath: c\n  secretArgs: {password: \"" + secret + "\n"}},
		{"secretArgs unknown anchor", "objects", map[string]string{"objects": "- objectName: a\n  secretPath: c\n  secretArgs: {password: *" + secret + "}\n"}},
		{"objects a scalar", "objects", map[string]string{"objects": secret}},
		{"entry a scalar", "objects[0]", map[string]string{"objects": "- " + secret + "\n"}},
		{"entry a list", "objects[0]", map[string]string{"objects": "- [" + secret + "]\n"}},
		{"field a list", "objects[0].secretKey", map[string]string{"objects": "- objectName: a\n  secretPath: c\n  secretKey: [" + secret + "]\n"}},
		{"unknown anchor in entry", "objects", map[string]string{"objects": "- objectName: *" + secret + "\n"}},
		{"address with password", "vaultAddress", map[string]string{"vaultAddress": "https://user:" + secret + "@vault:8200"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseEdited(t, tt.edit, Defaults{})
			wantError(t, err, tt.param)
			if err != nil && strings.Contains(err.Error(), secret) {
				t.Errorf("error leaks the input: %v", err)
			}
		})
	}
	t.Run("key twice that reads like a line number", func(t *testing.T) {
		_, err := parseEdited(t, map[string]string{"objects": "- objectName: a\n  secretPath: c\n  secretArgs: {line 7321: 1, line 7321: 2}\n"}, Defaults{})
		wantError(t, err, "objects[0].secretArgs", "(line 3 of objects)")
		if err != nil && strings.Contains(err.Error(), "7321") {
			t.Errorf("error leaks the key: %v", err)
		}
	})
	t.Run("invalid attributes", func(t *testing.T) {
		_, err := Parse(`{"csi.storage.k8s.io/serviceAccount.tokens": "`+secret+`", "roleName": `, testTarget, testPerm, Defaults{})
		wantError(t, err, "attributes")
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("error leaks the input: %v", err)
		}
	})
}

func TestUnknownParams(t *testing.T) {
	m := mustParse(t, map[string]string{
		"vaultCAPem":                   "-----BEGIN CERTIFICATE-----",
		"zzz":                          "value-z",
		"KubernetesServiceAccountPath": "/var/run/token",
		"csi.storage.k8s.io/ephemeral": "true",
		"secretProviderClass":          "spc",
		"objectFormat":                 "data",
		"vaultAuthType":                "jwt",
	}, Defaults{})
	want := []string{"KubernetesServiceAccountPath", "vaultCAPem", "zzz"}
	if diff := cmp.Diff(want, m.UnknownParams); diff != "" {
		t.Errorf("UnknownParams (-want +got):\n%s", diff)
	}
	got := m.Unknown()
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Unknown() (-want +got):\n%s", diff)
	}
	got[0] = "changed"
	if m.UnknownParams[0] != want[0] {
		t.Error("Unknown() shares its slice with the Mount")
	}
	if none := mustParse(t, nil, Defaults{}).Unknown(); len(none) != 0 {
		t.Errorf("Unknown() = %q for a clean class, want none", none)
	}
}

func TestErrorString(t *testing.T) {
	err := &Error{Param: "objects[2].filePermission", Reason: `must be an octal file mode such as "0640"`}
	const want = `invalid parameter "objects[2].filePermission": must be an octal file mode such as "0640"`
	if err.Error() != want {
		t.Errorf("Error() = %q, want %q", err.Error(), want)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(oneObject, "", "420", "")
	f.Add("- objectName: db/password\n  secretPath: /v1/secret/data/db?version=2\n  secretKey: password\n  filePermission: 0640\n", `{"vault":{"token":"t","expirationTimestamp":"2030-01-02T03:04:05Z"}}`, "420", "data")
	f.Add("- objectName: ../x\n  secretPath: a\n", "{", "0", "json")
	f.Add("- objectName: a\n  secretPath: pki/issue/r\n  method: put\n  secretArgs: {common_name: x, ttl: 1h, alt: [a, b], n: {1: 2}}\n", "", "511", "")
	f.Add("- objectName: a\\b\n  secretPath: a\n- objectName: a\n  secretPath: b\n", "null", "420", "")
	f.Add("- &x {objectName: a, secretPath: b}\n- *x\n", `{"a":{"token":""}}`, "420", "")
	f.Add("- {objectName: a, secretPath: b, <<: {secretKey: c}}\n", "", "420", "")
	f.Add(mergeBomb(3), "", "420", "")
	f.Fuzz(func(t *testing.T, objects, tokens, permission, format string) {
		attrs := baseAttrs()
		attrs["objects"] = objects
		attrs["csi.storage.k8s.io/serviceAccount.tokens"] = tokens
		attrs["objectFormat"] = format
		b, err := json.Marshal(attrs)
		if err != nil {
			t.Skip()
		}
		m, err := Parse(string(b), testTarget, permission, Defaults{})
		if err != nil {
			rejected(t, err, "")
			return
		}
		for _, o := range m.Objects {
			if !filepath.IsLocal(o.Name) {
				t.Fatalf("accepted objectName %q is not a local path", o.Name)
			}
			if o.Mode > 0o777 {
				t.Fatalf("accepted mode %#o", o.Mode)
			}
			if o.Path == "" || hasSegment(o.Path, "..") {
				t.Fatalf("accepted secretPath %q", o.Path)
			}
			if len(o.RequestKey()) != 64 {
				t.Fatalf("RequestKey %q is not a SHA-256 digest", o.RequestKey())
			}
		}
	})
}
