package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Templates, expansion, PKI files and KV v2 versions through the real
// driver. Role e2e-render is the e2e identity's policy plus listing
// secret/metadata/e2e/render/*, which expand: tree needs.

const renderRole = "e2e-render"

var renderOnce struct {
	sync.Once
	err error
}

func renderVault(t *testing.T) {
	t.Helper()
	renderOnce.Do(func() {
		ctx := context.Background()
		v := bed.vault.Client
		if renderOnce.err = v.Sys().PutPolicyWithContext(ctx, renderRole, `path "secret/metadata/e2e/render/*" { capabilities = ["list"] }`); renderOnce.err != nil {
			return
		}
		_, renderOnce.err = v.Logical().WriteWithContext(ctx, "auth/kubernetes/role/"+renderRole, map[string]any{
			"bound_service_account_names": []string{e2eSA}, "bound_service_account_namespaces": []string{e2eNS},
			"audience": "vault", "token_policies": []string{"e2e", renderRole}, "token_ttl": "1h",
		})
	})
	if renderOnce.err != nil {
		t.Fatal(renderOnce.err)
	}
}

const renderObjects = `
- objectName: db
  secretPath: secret/data/e2e/render/db
  write: false
- objectName: pgpass
  template: |
    *:5432:app:{{ (object "db").username }}:{{ (object "db").password }}
- objectName: app.env
  template: |
    API_KEY={{ (secret "secret/data/e2e/render/app").api_key }}
- objectName: app
  secretPath: secret/data/e2e/render/app
  secretKey: "*"
- objectName: services
  secretPath: secret/metadata/e2e/render/tree
  expand: tree
- objectName: tls
  secretPath: pki/issue/web
  method: PUT
  secretArgs: {common_name: render.example.com, ttl: 10m}
  objectFormat: pem-split
- objectName: tls.pem
  secretPath: pki/issue/web
  method: PUT
  secretArgs: {common_name: render.example.com, ttl: 10m}
  objectFormat: pem-bundle
`

func TestTemplatesExpansionAndPKIFiles(t *testing.T) {
	shared(t)
	renderVault(t)
	kv := bed.vault.Client.KVv2("secret")
	kvVersions := map[string]int{}
	for path, data := range map[string]map[string]any{
		"e2e/render/db":       {"username": "render-user", "password": "render-pass-1"},
		"e2e/render/app":      {"api_key": "k-1", "region": "eu"},
		"e2e/render/tree/web": {"user": "w"},
		"e2e/render/tree/api": {"user": "a", "token": "t"},
	} {
		s, err := kv.Put(t.Context(), path, data)
		if err != nil {
			t.Fatal(err)
		}
		kvVersions[path] = s.VersionMetadata.Version
	}
	applyClass(t, e2eNS, "render", map[string]string{"roleName": renderRole, "objects": renderObjects},
		map[string]any{"secretName": "e2e-render-tls", "type": "kubernetes.io/tls", "data": []map[string]string{
			{"objectName": "tls.pem", "key": "tls.key"}, {"objectName": "tls.pem", "key": "tls.crt"},
		}},
	)
	pod := podFor(t, e2eNS, e2eSA, "render")
	vol := mustPublish(t, pod, "render")
	got := files(t, vol)

	want := map[string]string{
		"pgpass":             "*:5432:app:render-user:render-pass-1\n",
		"app.env":            "API_KEY=k-1\n",
		"app/api_key":        "k-1",
		"app/region":         "eu",
		"services/web/user":  "w",
		"services/api/user":  "a",
		"services/api/token": "t",
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s = %q, want %q", k, got[k], w)
		}
	}
	for _, k := range []string{"tls/tls.crt", "tls/tls.key", "tls/ca.crt", "tls/ca-chain.crt", "tls.pem"} {
		if got[k] == "" {
			t.Errorf("no file %s", k)
		}
	}
	if _, ok := got["db"]; ok {
		t.Error("db (write: false) was written")
	}
	if len(got) != len(want)+5 {
		t.Errorf("%d files, want %d: %v", len(got), len(want)+5, sortedNames(got))
	}
	if _, err := tls.X509KeyPair([]byte(got["tls/tls.crt"]), []byte(got["tls/tls.key"])); err != nil {
		t.Errorf("tls/tls.crt and tls/tls.key are not a key pair: %v", err)
	}
	modes, err := vol.Modes()
	if err != nil {
		t.Fatal(err)
	}
	if m := modes["tls/tls.key"].Perm(); m != 0o600 {
		t.Errorf("tls/tls.key mode %v, want 0600", m)
	}
	if m := modes["tls/tls.crt"].Perm(); m != fs.FileMode(0o644) {
		t.Errorf("tls/tls.crt mode %v, want 0644", m)
	}

	versions := objectVersions(t, pod, "render")
	wantPrefix := fmt.Sprintf("kv2:%d:", kvVersions["e2e/render/app"])
	if v := versions["app/api_key"]; !strings.HasPrefix(v, wantPrefix) || len(v) <= len(wantPrefix) {
		t.Errorf("version of app/api_key = %q, want %s<HMAC> in SecretProviderClassPodStatus", v, wantPrefix)
	}
	if v := versions["pgpass"]; v == "" || strings.HasPrefix(v, "kv2:") {
		t.Errorf("version of pgpass = %q, want an HMAC (a template has no one KV version)", v)
	}
	if len(versions) != len(got) {
		t.Errorf("%d object versions for %d files: %v", len(versions), len(got), versions)
	}

	// The bundle synced as a kubernetes.io/tls Secret by the driver.
	var s *corev1.Secret
	eventually(t, 30*time.Second, "Secret e2e-render-tls synced", func() (bool, string) {
		var err error
		s, err = bed.kube.Client.CoreV1().Secrets(e2eNS).Get(t.Context(), "e2e-render-tls", metav1.GetOptions{})
		return err == nil, fmt.Sprint(err)
	})
	if _, err := tls.X509KeyPair(s.Data["tls.crt"], s.Data["tls.key"]); s.Type != corev1.SecretTypeTLS || err != nil {
		t.Errorf("synced Secret: type %s, key pair: %v", s.Type, err)
	}

	// Rotation re-renders the template from the new secret; an unchanged
	// secret keeps its versions.
	if _, err := kv.Put(t.Context(), "e2e/render/db", map[string]any{"username": "render-user", "password": "render-pass-2"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*rotationPoll, "re-rendered pgpass", func() (bool, string) {
		f := files(t, vol)
		return strings.Contains(f["pgpass"], "render-pass-2"), "pgpass not re-rendered yet"
	})
	// The driver records versions after it writes the files.
	var now map[string]string
	eventually(t, 10*rotationPoll, "version of pgpass moved", func() (bool, string) {
		now = objectVersions(t, pod, "render")
		return now["pgpass"] != versions["pgpass"], now["pgpass"]
	})
	if now["app/api_key"] != versions["app/api_key"] {
		t.Errorf("after changing db only: app/api_key %s -> %s, want unchanged", versions["app/api_key"], now["app/api_key"])
	}
}

// A template error reaches the pod's mount as InvalidArgument naming the
// object's template and line, without the secret's value.
func TestTemplateErrorThroughTheDriver(t *testing.T) {
	shared(t)
	renderVault(t)
	if _, err := bed.vault.Client.KVv2("secret").Put(t.Context(), "e2e/render/broken", map[string]any{"password": "never-shown"}); err != nil {
		t.Fatal(err)
	}
	applyClass(t, e2eNS, "render-broken", map[string]string{"roleName": renderRole, "objects": "- objectName: t\n  secretPath: secret/data/e2e/render/broken\n  template: |\n    user={{ .Data.user }}\n"})
	v, err := publish(t, podFor(t, e2eNS, e2eSA, "render-broken"), "render-broken", "")
	wantMountError(t, v, err, "InvalidArgument", "objects[0].template", "line 1", `"user"`)
	if err != nil && strings.Contains(err.Error(), "never-shown") {
		t.Errorf("the error shows the secret's value: %v", err)
	}
}

func sortedNames(m map[string]string) []string {
	return slices.Sorted(maps.Keys(m))
}
