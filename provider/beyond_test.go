package provider_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	"github.com/okevault/vault-csi-provider/provider"
	"github.com/okevault/vault-csi-provider/test/testbed"
)

// Templates, expansion, PKI files and KV v2 versions against the real Vault.
// They read secret/data/render/* as role "render" (the reader's policy plus
// listing secret/metadata/render/*), bound to the reader service account.

const renderRole = "render"

var renderOnce struct {
	sync.Once
	err error
}

func renderBed(t *testing.T) (*testbed.Kube, *testbed.Vault) {
	t.Helper()
	kube, v := realBed(t)
	renderOnce.Do(func() {
		ctx := context.Background()
		if renderOnce.err = v.Client.Sys().PutPolicyWithContext(ctx, "render", `path "secret/metadata/render/*" { capabilities = ["list"] }`); renderOnce.err != nil {
			return
		}
		_, renderOnce.err = v.Client.Logical().WriteWithContext(ctx, "auth/kubernetes/role/"+renderRole, map[string]any{
			"bound_service_account_names":      []string{readerSA},
			"bound_service_account_namespaces": []string{readerNS},
			"audience":                         "vault",
			"token_policies":                   []string{"reader", "render"},
			"token_ttl":                        "1h",
		})
	})
	if renderOnce.err != nil {
		t.Fatal(renderOnce.err)
	}
	return kube, v
}

// renderMount mounts objects as role render for a new pod named name.
func renderMount(t *testing.T, s *served, name string) func(objects string) (*v1alpha1.MountResponse, error) {
	t.Helper()
	kube, v := renderBed(t)
	p, tok := podToken(t, kube, readerNS, readerSA, name)
	return func(objects string) (*v1alpha1.MountResponse, error) {
		return s.client.Mount(t.Context(), request(t, p, map[string]string{"roleName": renderRole, "vaultAddress": v.Addr, "objects": objects}, "vault", tok))
	}
}

func putKV(t *testing.T, v *testbed.Vault, path string, data map[string]any) {
	t.Helper()
	if _, err := v.Client.KVv2("secret").Put(t.Context(), path, data); err != nil {
		t.Fatal(err)
	}
}

func versionsOf(resp *v1alpha1.MountResponse) map[string]string {
	out := map[string]string{}
	for _, ov := range resp.GetObjectVersion() {
		out[ov.Id] = ov.Version
	}
	return out
}

func modesOf(resp *v1alpha1.MountResponse) map[string]int32 {
	out := map[string]int32{}
	for _, f := range resp.GetFiles() {
		out[f.Path] = f.Mode
	}
	return out
}

func TestKV2VersionInObjectVersion(t *testing.T) {
	_, v := renderBed(t)
	putKV(t, v, "render/versioned", map[string]any{"u": "one"})
	s := serve(t, provider.Options{Keys: staticKey("0123456789abcdef0123456789abcdef")})
	mount := renderMount(t, s, "kv2-versions")
	const objects = `
- {objectName: u, secretPath: secret/data/render/versioned, secretKey: u}
- {objectName: first, secretPath: "secret/data/render/versioned?version=1", secretKey: u}
- {objectName: v1, secretPath: kv1/render, secretKey: user}
`
	if _, err := v.Client.Logical().WriteWithContext(t.Context(), "kv1/render", map[string]any{"user": "x"}); err != nil {
		t.Fatal(err)
	}
	versions := func() map[string]string {
		resp, err := mount(objects)
		if err != nil {
			t.Fatal(err)
		}
		return versionsOf(resp)
	}
	a, b := versions(), versions()
	if !strings.HasPrefix(a["u"], "kv2:1:") || len(a["u"]) <= len("kv2:1:") || a["u"] != b["u"] {
		t.Fatalf("versions %v then %v; want u at kv2:1:<HMAC>, stable", a, b)
	}
	if strings.HasPrefix(a["v1"], "kv2:") || a["v1"] == "" {
		t.Errorf("a KV v1 object has version %q, want the HMAC alone", a["v1"])
	}

	putKV(t, v, "render/versioned", map[string]any{"u": "two"})
	c := versions()
	if !strings.HasPrefix(c["u"], "kv2:2:") || c["first"] != a["first"] || c["v1"] != a["v1"] {
		t.Errorf("after a new KV version: %v -> %v; want u at kv2:2, first (pinned to version 1) and v1 unchanged", a, c)
	}

	// Without the HMAC key the KV version still shows.
	bare := serve(t, provider.Options{})
	resp, err := renderMount(t, bare, "kv2-versions-bare")(objects)
	if err != nil {
		t.Fatal(err)
	}
	if got := versionsOf(resp); got["u"] != "kv2:2:" || got["v1"] != "" {
		t.Errorf("versions without a key = %v, want u kv2:2: and v1 empty", got)
	}
}

func TestPEMSplitAndBundle(t *testing.T) {
	_, v := renderBed(t)
	s := serve(t, provider.Options{})
	mount := renderMount(t, s, "pem")
	before := auditCount(t, "pki/issue/web")
	resp, err := mount(`
- objectName: tls
  secretPath: pki/issue/web
  method: PUT
  secretArgs: {common_name: pem.example.com, ttl: 10m}
  objectFormat: pem-split
- objectName: bundle.pem
  secretPath: pki/issue/web
  method: PUT
  secretArgs: {common_name: pem.example.com, ttl: 10m}
  objectFormat: pem-bundle
- objectName: open/tls
  secretPath: pki/issue/web
  method: PUT
  secretArgs: {common_name: open.example.com, ttl: 10m}
  objectFormat: pem-split
  filePermission: "0640"
`)
	if err != nil {
		t.Fatal(err)
	}
	if n := auditCount(t, "pki/issue/web") - before; n != 2 {
		t.Errorf("%d issue requests, want 2: pem-split and pem-bundle with the same arguments share one", n)
	}
	got := files(resp)
	modes := modesOf(resp)
	for path, mode := range map[string]int32{
		"tls/tls.crt": 0o644, "tls/tls.key": 0o600, "tls/ca.crt": 0o644, "tls/ca-chain.crt": 0o644,
		"bundle.pem": 0o600, "open/tls/tls.key": 0o640, "open/tls/tls.crt": 0o640,
	} {
		if _, ok := got[path]; !ok {
			t.Errorf("no file %s (files: %v)", path, keysOf(got))
		} else if modes[path] != mode {
			t.Errorf("%s mode %o, want %o", path, modes[path], mode)
		}
	}
	if len(got) != 9 {
		t.Errorf("%d files, want 9: %v", len(got), keysOf(got))
	}
	if len(resp.ObjectVersion) != len(resp.Files) {
		t.Errorf("%d versions for %d files", len(resp.ObjectVersion), len(resp.Files))
	}

	// The split files are a working key pair whose CA verifies it.
	pair, err := tls.X509KeyPair([]byte(got["tls/tls.crt"]), []byte(got["tls/tls.key"]))
	if err != nil {
		t.Fatalf("tls.crt and tls.key are not a pair: %v", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(got["tls/ca.crt"])) {
		t.Fatal("ca.crt holds no certificate")
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "pem.example.com"}); err != nil {
		t.Errorf("ca.crt does not verify tls.crt: %v", err)
	}
	if n := strings.Count(got["tls/tls.crt"], "BEGIN CERTIFICATE"); n != 1 {
		t.Errorf("tls.crt holds %d certificates, want the leaf alone (the chain is a self-signed root)", n)
	}

	// The bundle: the key first, then the same certificate, for kubernetes.io/tls.
	first, _ := pem.Decode([]byte(got["bundle.pem"]))
	if first == nil || !strings.Contains(first.Type, "PRIVATE KEY") {
		t.Fatalf("bundle.pem does not start with the private key")
	}
	bundle, err := tls.X509KeyPair([]byte(got["bundle.pem"]), []byte(got["bundle.pem"]))
	if err != nil {
		t.Fatalf("bundle.pem is not a key pair: %v", err)
	}
	if string(bundle.Certificate[0]) != string(pair.Certificate[0]) {
		t.Error("pem-bundle and pem-split of one mount hold different certificates")
	}

	t.Run("not a PKI response", func(t *testing.T) {
		putKV(t, v, "render/notpki", map[string]any{"x": "y"})
		resp, err := mount("- {objectName: tls, secretPath: secret/data/render/notpki, objectFormat: pem-split}")
		wantCode(t, resp, err, codes.InvalidArgument, `"tls"`, "no certificate")
	})
}

func TestExpandKeys(t *testing.T) {
	_, v := renderBed(t)
	putKV(t, v, "render/keys", map[string]any{"user": "u", "password": "expand-canary", "port": 5432})
	putKV(t, v, "render/badkey", map[string]any{"ok": "1", "../up": "expand-canary"})
	s := serve(t, provider.Options{Keys: staticKey("0123456789abcdef0123456789abcdef")})
	mount := renderMount(t, s, "expand-keys")

	resp, err := mount(`
- {objectName: app, secretPath: secret/data/render/keys, secretKey: "*"}
- {objectName: again, secretPath: secret/data/render/keys, expand: keys, filePermission: "0400"}
- {objectName: app/extra, secretPath: secret/data/render/keys, secretKey: user}
`)
	if err != nil {
		t.Fatal(err)
	}
	got := files(resp)
	want := map[string]string{"app/user": "u", "app/password": "expand-canary", "app/port": "5432", "again/user": "u", "again/password": "expand-canary", "again/port": "5432", "app/extra": "u"}
	if len(got) != len(want) {
		t.Errorf("files %v, want %v", keysOf(got), want)
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s = %q, want %q", k, got[k], w)
		}
	}
	if m := modesOf(resp)["again/port"]; m != 0o400 {
		t.Errorf("again/port mode %o, want 0400", m)
	}
	vs := versionsOf(resp)
	if len(vs) != len(want) || !strings.HasPrefix(vs["app/user"], "kv2:1:") || vs["app/user"] == vs["app/port"] || vs["app/user"] == vs["again/user"] {
		t.Errorf("versions %v: want one per file, each kv2:1:<its own HMAC>", vs)
	}

	t.Run("key that is not a file name", func(t *testing.T) {
		resp, err := mount("- {objectName: bad, secretPath: secret/data/render/badkey, secretKey: '*'}")
		wantCode(t, resp, err, codes.InvalidArgument, `"bad"`, `key "../up" is not a safe file name`)
		if strings.Contains(err.Error(), "expand-canary") {
			t.Error("the error shows a value")
		}
	})
	t.Run("more keys than maxObjects", func(t *testing.T) {
		resp, err := mount("- {objectName: app, secretPath: secret/data/render/keys, expand: keys, maxObjects: 2}")
		wantCode(t, resp, err, codes.InvalidArgument, `"app"`, "3 keys, more than maxObjects (2)")
	})
	t.Run("generated file collides with an object", func(t *testing.T) {
		resp, err := mount("- {objectName: app, secretPath: secret/data/render/keys, expand: keys}\n- {objectName: app/user, secretPath: secret/data/render/keys, secretKey: port}")
		wantCode(t, resp, err, codes.InvalidArgument, "objects[1].objectName", `"app/user"`, "objects[0]")
	})
}

func TestExpandTree(t *testing.T) {
	_, v := renderBed(t)
	putKV(t, v, "render/tree/web", map[string]any{"user": "w"})
	putKV(t, v, "render/tree/db", map[string]any{"user": "d", "password": "p"})
	putKV(t, v, "render/tree/nested/deeper", map[string]any{"user": "n"})
	putKV(t, v, "render/tree/gone", map[string]any{"user": "g"})
	// Deleted, but KV v2 still lists it: left out.
	if err := v.Client.KVv2("secret").Delete(t.Context(), "render/tree/gone"); err != nil {
		t.Fatal(err)
	}
	s := serve(t, provider.Options{})
	mount := renderMount(t, s, "expand-tree")

	lists, reads := auditCount(t, "secret/metadata/render/tree/"), auditCount(t, "secret/data/render/tree/db")
	resp, err := mount("- {objectName: apps, secretPath: secret/metadata/render/tree, expand: tree}")
	if err != nil {
		t.Fatal(err)
	}
	got := files(resp)
	want := map[string]string{"apps/db/user": "d", "apps/db/password": "p", "apps/web/user": "w"}
	if len(got) != len(want) {
		t.Errorf("files %v, want %v (sub-directories are not descended, deleted secrets left out)", keysOf(got), want)
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s = %q, want %q", k, got[k], w)
		}
	}
	if n := auditCount(t, "secret/metadata/render/tree/") - lists; n != 1 {
		t.Errorf("%d listings, want 1", n)
	}
	if n := auditCount(t, "secret/data/render/tree/db") - reads; n != 1 {
		t.Errorf("%d reads of db, want 1", n)
	}

	t.Run("more secrets than maxObjects fails before reading them", func(t *testing.T) {
		reads := auditCount(t, "secret/data/render/tree/web")
		resp, err := mount("- {objectName: apps, secretPath: secret/data/render/tree, expand: tree, maxObjects: 2}")
		wantCode(t, resp, err, codes.InvalidArgument, `"apps"`, "3 secrets, more than maxObjects (2)")
		if n := auditCount(t, "secret/data/render/tree/web") - reads; n != 0 {
			t.Errorf("%d reads of a secret after the guard failed, want 0", n)
		}
	})
	t.Run("list denied", func(t *testing.T) {
		resp, err := mount("- {objectName: apps, secretPath: secret/metadata/elsewhere, expand: tree}")
		wantCode(t, resp, err, codes.PermissionDenied, `"apps"`)
	})
}

func TestTemplates(t *testing.T) {
	_, v := renderBed(t)
	putKV(t, v, "render/db", map[string]any{"username": "dbuser", "password": "tmpl-canary"})
	putKV(t, v, "render/app", map[string]any{"api_key": "k-1", "hosts": []any{"a", "b"}})
	s := serve(t, provider.Options{Keys: staticKey("0123456789abcdef0123456789abcdef")})
	mount := renderMount(t, s, "templates")

	dbReads, appReads := auditCount(t, "secret/data/render/db"), auditCount(t, "secret/data/render/app")
	resp, err := mount(`
- objectName: db
  secretPath: secret/data/render/db
  write: false
- objectName: pgpass
  template: |
    *:5432:app:{{ (object "db").username }}:{{ (object "db").password }}
- objectName: config.json
  secretPath: secret/data/render/app
  template: '{"key": {{ toJSON .Data.api_key }}, "hosts": "{{ .Data.hosts | join "," }}", "db": {{ toJSON .Objects.db.username }}}'
- objectName: app.env
  template: |
    API_KEY={{ (secret "secret/data/render/app").api_key }}
    DB_PASSWORD={{ (secret "/v1/secret/data/render/db").password | base64Encode }}
`)
	if err != nil {
		t.Fatal(err)
	}
	got := files(resp)
	want := map[string]string{
		"pgpass":      "*:5432:app:dbuser:tmpl-canary\n",
		"config.json": `{"key": "k-1", "hosts": "a,b", "db": "dbuser"}`,
		"app.env":     "API_KEY=k-1\nDB_PASSWORD=dG1wbC1jYW5hcnk=\n",
	}
	if len(got) != len(want) {
		t.Errorf("files %v, want %v (db is write: false)", keysOf(got), want)
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s = %q, want %q", k, got[k], w)
		}
	}
	if vs := versionsOf(resp); len(vs) != 3 || vs["pgpass"] == "" || vs["db"] != "" {
		t.Errorf("versions %v: want one per written file", vs)
	}
	if n := auditCount(t, "secret/data/render/db") - dbReads; n != 1 {
		t.Errorf("%d reads of render/db by an object and two templates, want 1", n)
	}
	if n := auditCount(t, "secret/data/render/app") - appReads; n != 1 {
		t.Errorf("%d reads of render/app, want 1", n)
	}

	t.Run("execution error names the template and line, not the value", func(t *testing.T) {
		resp, err := mount("- objectName: t\n  secretPath: secret/data/render/db\n  template: |\n    ok\n    {{ .Data.pasword }}\n")
		wantCode(t, resp, err, codes.InvalidArgument, "objects[0].template", "line 2 of the template", `"pasword"`)
		// A range over a string fails inside the bounded loop's own template
		// (internal/render counts each iteration), so no line of the user's
		// is known: the error names the template and hides the cause.
		resp, err = mount("- {objectName: t, secretPath: secret/data/render/db, template: '{{ range .Data.password }}{{ end }}'}")
		wantCode(t, resp, err, codes.InvalidArgument, "objects[0].template", "the cause is not shown")
		if strings.Contains(err.Error(), "tmpl-canary") {
			t.Errorf("the error shows a secret value: %v", err)
		}
	})
	t.Run("a template's read is denied like an object's", func(t *testing.T) {
		resp, err := mount(`- {objectName: t, template: '{{ (secret "secret/metadata/other").x }}'}`)
		wantCode(t, resp, err, codes.PermissionDenied, `"t"`, "secret/metadata/other")
	})
	t.Run("parse error before any request", func(t *testing.T) {
		resp, err := mount(`- {objectName: t, template: '{{ $p := "secret/data/render/db" }}{{ (secret $p).x }}'}`)
		wantCode(t, resp, err, codes.InvalidArgument, "objects[0].template", "literal")
	})
}

func keysOf(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
