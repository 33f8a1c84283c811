package provider_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"google.golang.org/grpc/codes"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	"github.com/okevault/vault-csi-provider/internal/cache"
	"github.com/okevault/vault-csi-provider/provider"
	"github.com/okevault/vault-csi-provider/test/testbed"
)

// The tests in this file run against a real Vault dev server and a real
// kube-apiserver: every login is a Kubernetes-auth login that Vault checks
// with TokenReview.

// bed is shared by the package's real-part tests.
var bed struct {
	once  sync.Once
	err   error
	kube  *testbed.Kube
	vault *testbed.Vault
}

const (
	readerNS   = "provider-test"
	readerSA   = "reader"
	readerRole = "reader"
)

// realBed starts kube and Vault once, seeds the user's scenario and adds what
// these tests read: a KV v1 mount, a PKI engine, a role for the reader SA.
func realBed(t *testing.T) (*testbed.Kube, *testbed.Vault) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the real Vault and kube-apiserver; skipped under -short")
	}
	bed.once.Do(func() { bed.err = startBed() })
	if bed.err != nil {
		t.Fatal(bed.err)
	}
	testbed.LogOnFailure(t, bed.kube, bed.vault)
	return bed.kube, bed.vault
}

func startBed() (err error) {
	ctx := context.Background()
	if bed.kube, err = testbed.NewKube(ctx, testbed.KubeOptions{}); err != nil {
		return err
	}
	if bed.vault, err = testbed.NewVault(ctx, testbed.VaultOptions{}); err != nil {
		return err
	}
	if err = bed.vault.SeedScenario(ctx, bed.kube); err != nil {
		return err
	}
	v := bed.vault.Client
	steps := []func() error{
		func() error { return bed.vault.EnableAudit(ctx) },
		func() error {
			return v.Sys().MountWithContext(ctx, "kv1", &vaultapi.MountInput{Type: "kv", Options: map[string]string{"version": "1"}})
		},
		func() error { return v.Sys().MountWithContext(ctx, "pki", &vaultapi.MountInput{Type: "pki"}) },
		func() error {
			_, err := v.Logical().WriteWithContext(ctx, "pki/root/generate/internal", map[string]any{"common_name": "test-ca", "ttl": "24h"})
			return err
		},
		func() error {
			_, err := v.Logical().WriteWithContext(ctx, "pki/roles/web", map[string]any{"allowed_domains": "example.com", "allow_subdomains": true, "max_ttl": "1h"})
			return err
		},
		func() error {
			return v.Sys().PutPolicyWithContext(ctx, "reader", `
path "secret/data/*" { capabilities = ["read"] }
path "kv1/*" { capabilities = ["read"] }
path "pki/issue/web" { capabilities = ["update"] }
`)
		},
		func() error { return bed.kube.CreateServiceAccount(ctx, readerNS, readerSA) },
		func() error { return bed.kube.CreateServiceAccount(ctx, readerNS, "intruder") },
		func() error {
			_, err := v.Logical().WriteWithContext(ctx, "auth/kubernetes/role/"+readerRole, map[string]any{
				"bound_service_account_names":      []string{readerSA},
				"bound_service_account_namespaces": []string{readerNS},
				"audience":                         "vault",
				"token_policies":                   []string{"reader"},
				"token_ttl":                        "1h",
			})
			return err
		},
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

// podToken creates a pod object and a TokenRequest token bound to it, as
// kubelet does for the CSIDriver's tokenRequests.
func podToken(t *testing.T, kube *testbed.Kube, ns, sa, name string) (pod, string) {
	t.Helper()
	p, err := kube.CreatePod(t.Context(), ns, name, sa)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := kube.Token(t.Context(), ns, sa, "vault", p, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return pod{namespace: ns, name: name, uid: string(p.UID), serviceAccount: sa}, tok
}

// auditCount counts requests to path in Vault's audit log.
func auditCount(t *testing.T, path string) int {
	t.Helper()
	n, err := bed.vault.AuditCount(path)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func files(resp *v1alpha1.MountResponse) map[string]string {
	out := map[string]string{}
	for _, f := range resp.GetFiles() {
		out[f.Path] = string(f.Contents)
	}
	return out
}

func TestMountSeedScenario(t *testing.T) {
	kube, v := realBed(t)
	sc := v.Scenario()
	s := serve(t, provider.Options{})
	p, tok := podToken(t, kube, sc.Namespace, sc.ServiceAccount, "testapp-seed")
	params := map[string]string{
		"roleName":     sc.Role,
		"vaultAddress": v.Addr,
		"objects": `
- objectName: username
  secretPath: secret/data/testapp
  secretKey: username
- objectName: db/password
  secretPath: secret/data/testapp
  secretKey: password
  filePermission: "0600"
`,
	}
	resp, err := s.client.Mount(t.Context(), request(t, p, params, "vault", tok))
	if err != nil {
		t.Fatal(err)
	}
	got := files(resp)
	if got["username"] != sc.SecretData["username"] || got["db/password"] != sc.SecretData["password"] {
		t.Errorf("files = %v, want the scenario's secret", got)
	}
	modes := map[string]int32{}
	for _, f := range resp.Files {
		modes[f.Path] = f.Mode
	}
	if modes["username"] != 0o644 || modes["db/password"] != 0o600 {
		t.Errorf("modes = %v, want username 420 (0644, the driver's default) and db/password 384 (0600)", modes)
	}
	if len(resp.ObjectVersion) != 2 {
		t.Errorf("%d object versions, want 2", len(resp.ObjectVersion))
	}

	// Outside the policy: denied by Vault with a real token, named in the message.
	params["objects"] = "- objectName: other\n  secretPath: secret/data/other\n  secretKey: x\n"
	resp, err = s.client.Mount(t.Context(), request(t, p, params, "vault", tok))
	wantCode(t, resp, err, codes.PermissionDenied, `"other"`, "secret/data/other")
}

func TestMountEngines(t *testing.T) {
	kube, v := realBed(t)
	ctx := t.Context()
	kv := v.Client.KVv2("secret")
	if _, err := kv.Put(ctx, "engines", map[string]any{"v": "one", "b64": base64.StdEncoding.EncodeToString([]byte("bin\x00ary")), "hex": "cafe", "n": 42}); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "engines", map[string]any{"v": "two", "b64": base64.StdEncoding.EncodeToString([]byte("bin\x00ary")), "hex": "cafe", "n": 42}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Client.Logical().WriteWithContext(ctx, "kv1/app", map[string]any{"user": "v1-user"}); err != nil {
		t.Fatal(err)
	}
	s := serve(t, provider.Options{})
	p, tok := podToken(t, kube, readerNS, readerSA, "engines")
	mount := func(objects string) (*v1alpha1.MountResponse, error) {
		return s.client.Mount(ctx, request(t, p, map[string]string{"roleName": readerRole, "vaultAddress": v.Addr, "objects": objects}, "vault", tok))
	}

	resp, err := mount(`
- {objectName: latest, secretPath: secret/data/engines, secretKey: v}
- {objectName: first, secretPath: "secret/data/engines?version=1", secretKey: v}
- {objectName: number, secretPath: secret/data/engines, secretKey: n}
- {objectName: binary, secretPath: secret/data/engines, secretKey: b64, encoding: base64}
- {objectName: hexed, secretPath: secret/data/engines, secretKey: hex, encoding: hex}
- {objectName: data.json, secretPath: secret/data/engines, objectFormat: data}
- {objectName: envelope.json, secretPath: secret/data/engines}
- {objectName: v1-user, secretPath: kv1/app, secretKey: user}
- {objectName: v1.json, secretPath: /v1/kv1/app}
`)
	if err != nil {
		t.Fatal(err)
	}
	got := files(resp)
	for name, want := range map[string]string{"latest": "two", "first": "one", "number": "42", "binary": "bin\x00ary", "hexed": "\xca\xfe", "v1-user": "v1-user"} {
		if got[name] != want {
			t.Errorf("%s = %q, want %q", name, got[name], want)
		}
	}
	var data map[string]any
	if err := json.Unmarshal([]byte(got["data.json"]), &data); err != nil || data["v"] != "two" || len(data) != 4 {
		t.Errorf("data.json = %s, want the secret's own key/value map", got["data.json"])
	}
	var env struct {
		RequestID string `json:"request_id"`
		Data      struct {
			Data     map[string]any `json:"data"`
			Metadata map[string]any `json:"metadata"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(got["envelope.json"]), &env); err != nil || env.RequestID == "" || env.Data.Data["v"] != "two" || env.Data.Metadata["version"] == nil {
		t.Errorf("envelope.json = %s, want Vault's whole response as the peer writes it", got["envelope.json"])
	}
	if strings.Contains(got["envelope.json"], `"auth":null`) || strings.Contains(got["envelope.json"], `"wrap_info":null`) {
		t.Errorf("envelope.json = %s: the peer (vault/api's Secret, omitempty) leaves out a null auth and wrap_info", got["envelope.json"])
	}
	var v1 struct {
		Data map[string]any `json:"data"`
	}
	if err := json.Unmarshal([]byte(got["v1.json"]), &v1); err != nil || v1.Data["user"] != "v1-user" {
		t.Errorf("v1.json = %s", got["v1.json"])
	}

	t.Run("PUT engine once per mount", func(t *testing.T) {
		before := auditCount(t, "pki/issue/web")
		resp, err := mount(`
- objectName: tls.crt
  secretPath: pki/issue/web
  method: PUT
  secretArgs: {common_name: app.example.com, ttl: 10m}
  secretKey: certificate
- objectName: tls.key
  secretPath: pki/issue/web
  method: PUT
  secretArgs: {ttl: 10m, common_name: app.example.com}
  secretKey: private_key
`)
		if err != nil {
			t.Fatal(err)
		}
		got := files(resp)
		if !strings.HasPrefix(got["tls.crt"], "-----BEGIN CERTIFICATE-----") || !strings.Contains(got["tls.key"], "PRIVATE KEY-----") {
			t.Fatalf("tls.crt/tls.key are not a certificate and key: %.40q %.40q", got["tls.crt"], got["tls.key"])
		}
		if n := auditCount(t, "pki/issue/web") - before; n != 1 {
			t.Errorf("%d pki/issue requests for two objects of one mount, want 1 (cert and key must match)", n)
		}
	})

	t.Run("missing key", func(t *testing.T) {
		resp, err := mount("- {objectName: nokey, secretPath: secret/data/engines, secretKey: nope}")
		wantCode(t, resp, err, codes.NotFound, `"nokey"`, `"nope"`)
	})
	t.Run("missing path", func(t *testing.T) {
		resp, err := mount("- {objectName: ok, secretPath: secret/data/engines, secretKey: v}\n- {objectName: gone, secretPath: secret/data/nothing-here, secretKey: v}")
		wantCode(t, resp, err, codes.NotFound, `"gone"`, "secret/data/nothing-here")
	})
	t.Run("bad base64", func(t *testing.T) {
		resp, err := mount("- {objectName: b, secretPath: secret/data/engines, secretKey: v, encoding: base64}")
		wantCode(t, resp, err, codes.InvalidArgument, `"b"`, "base64")
	})
}

func TestMountDenials(t *testing.T) {
	kube, v := realBed(t)
	s := serve(t, provider.Options{})
	objects := "- {objectName: a, secretPath: secret/data/testapp, secretKey: username}"

	// The intruder's token is real; Vault refuses it after a real TokenReview.
	p, tok := podToken(t, kube, readerNS, "intruder", "intruder-0")
	resp, err := s.client.Mount(t.Context(), request(t, p, map[string]string{"roleName": readerRole, "vaultAddress": v.Addr, "objects": objects}, "vault", tok))
	wantCode(t, resp, err, codes.PermissionDenied, "login")

	// A token for another audience is refused too.
	p2, err := kube.CreatePod(t.Context(), readerNS, "wrong-aud", readerSA)
	if err != nil {
		t.Fatal(err)
	}
	other, err := kube.Token(t.Context(), readerNS, readerSA, "not-vault", p2, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pp := pod{namespace: readerNS, name: p2.Name, uid: string(p2.UID), serviceAccount: readerSA}
	resp, err = s.client.Mount(t.Context(), request(t, pp, map[string]string{"roleName": readerRole, "vaultAddress": v.Addr, "objects": objects}, "vault", other))
	wantCode(t, resp, err, codes.PermissionDenied)

	// A token whose claims are for another service account than the pod's.
	resp, err = s.client.Mount(t.Context(), request(t, pod{namespace: readerNS, name: "x", uid: "u", serviceAccount: readerSA}, map[string]string{"roleName": readerRole, "vaultAddress": v.Addr, "objects": objects}, "vault", tok))
	wantCode(t, resp, err, codes.PermissionDenied, "intruder")
}

func TestMountVaultDown(t *testing.T) {
	kube, _ := realBed(t)
	s := serve(t, provider.Options{MountTimeout: 10 * time.Second})
	p, tok := podToken(t, kube, readerNS, readerSA, "vault-down")
	start := time.Now()
	// A port nothing listens on: connection refused, retried by the client, then Unavailable.
	resp, err := s.client.Mount(t.Context(), request(t, p, map[string]string{"roleName": readerRole, "vaultAddress": "http://127.0.0.1:1", "objects": "- {objectName: a, secretPath: secret/data/a}"}, "vault", tok))
	wantCode(t, resp, err, codes.Unavailable, "login", "connection refused")
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v: the mount deadline was not honoured", d)
	}
}

func TestLoginSharedAndRenewedOn403(t *testing.T) {
	kube, v := realBed(t)
	s := serve(t, provider.Options{})
	params := map[string]string{"roleName": readerRole, "vaultAddress": v.Addr, "objects": "- {objectName: u, secretPath: kv1/shared, secretKey: user}"}
	if _, err := v.Client.Logical().WriteWithContext(t.Context(), "kv1/shared", map[string]any{"user": "shared"}); err != nil {
		t.Fatal(err)
	}
	logins := func() int { return auditCount(t, "auth/kubernetes/login") }
	before := logins()

	// Five pods of one service account, each with its own pod-bound token,
	// mounting at once: one login.
	var wg sync.WaitGroup
	for i := range 5 {
		p, tok := podToken(t, kube, readerNS, readerSA, "shared-"+string(rune('a'+i)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.client.Mount(context.Background(), request(t, p, params, "vault", tok)); err != nil {
				t.Errorf("pod %s: %v", p.name, err)
			}
		}()
	}
	wg.Wait()
	if n := logins() - before; n != 1 {
		t.Fatalf("%d logins for 5 pods of one service account, want 1", n)
	}

	// Revoke every token from that login path: the cached token now gets a
	// 403, and the provider logs in again once and succeeds.
	if err := v.Client.Sys().RevokePrefixWithContext(t.Context(), "auth/kubernetes/login"); err != nil {
		t.Fatal(err)
	}
	p, tok := podToken(t, kube, readerNS, readerSA, "after-revoke")
	resp, err := s.client.Mount(t.Context(), request(t, p, params, "vault", tok))
	if err != nil {
		t.Fatalf("mount after revocation: %v", err)
	}
	if files(resp)["u"] != "shared" {
		t.Errorf("files = %v", files(resp))
	}
	if n := logins() - before; n != 2 {
		t.Errorf("%d logins in all, want 2 (one re-login after the 403)", n)
	}
}

func TestObjectVersionsStableAndMoving(t *testing.T) {
	kube, v := realBed(t)
	keys := provider.Keys(staticKey("0123456789abcdef0123456789abcdef"))
	s := serve(t, provider.Options{Keys: keys})
	p, tok := podToken(t, kube, readerNS, readerSA, "versions")
	params := map[string]string{"roleName": readerRole, "vaultAddress": v.Addr, "objects": "- {objectName: u, secretPath: kv1/versioned, secretKey: user}\n- {objectName: w, secretPath: kv1/versioned, secretKey: other}"}
	write := func(user string) {
		if _, err := v.Client.Logical().WriteWithContext(t.Context(), "kv1/versioned", map[string]any{"user": user, "other": "fixed"}); err != nil {
			t.Fatal(err)
		}
	}
	versions := func() map[string]string {
		resp, err := s.client.Mount(t.Context(), request(t, p, params, "vault", tok))
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, ov := range resp.ObjectVersion {
			out[ov.Id] = ov.Version
		}
		return out
	}
	write("a")
	v1, v2 := versions(), versions()
	if v1["u"] == "" || v1["u"] != v2["u"] || v1["w"] != v2["w"] {
		t.Fatalf("versions changed without a change: %v then %v", v1, v2)
	}
	// Another provider with the same key (another node, or after a restart) agrees.
	other := serve(t, provider.Options{Keys: keys})
	resp, err := other.client.Mount(t.Context(), request(t, p, params, "vault", tok))
	if err != nil || resp.ObjectVersion[0].Version != v1["u"] {
		t.Errorf("another provider computes %v, %v; want %s", resp.GetObjectVersion(), err, v1["u"])
	}
	write("b")
	v3 := versions()
	if v3["u"] == v1["u"] || v3["w"] != v1["w"] {
		t.Errorf("after changing u only: %v -> %v; want u to move and w to stay", v1, v3)
	}
}

type staticKey string

func (k staticKey) Key(context.Context) ([]byte, error) { return []byte(k), nil }

// TestNothingLeaks mounts with real tokens through success and failure at
// trace level and checks that no token or secret value reached the logs or
// an error message.
func TestNothingLeaks(t *testing.T) {
	kube, v := realBed(t)
	s := serve(t, provider.Options{})
	const value = "leak-canary-7f3a9"
	if _, err := v.Client.Logical().WriteWithContext(t.Context(), "kv1/canary", map[string]any{"user": value}); err != nil {
		t.Fatal(err)
	}
	p, tok := podToken(t, kube, readerNS, readerSA, "canary")
	var messages []string
	for _, objects := range []string{
		"- {objectName: a, secretPath: kv1/canary, secretKey: user}",
		"- {objectName: a, secretPath: kv1/canary, secretKey: user, encoding: hex}",
		"- {objectName: a, secretPath: kv1/canary, secretKey: missing}",
		"- {objectName: a, secretPath: kv1/canary, secretKey: user}\n- {objectName: b, secretPath: secret/metadata/testapp}", // denied: not in the policy
	} {
		_, err := s.client.Mount(t.Context(), request(t, p, map[string]string{"roleName": readerRole, "vaultAddress": v.Addr, "objects": objects}, "vault", tok))
		if err != nil {
			messages = append(messages, err.Error())
		}
	}
	if len(messages) != 3 {
		t.Fatalf("%d failed mounts, want 3: %v", len(messages), messages)
	}
	out := s.logs.String() + strings.Join(messages, "\n")
	secrets := map[string]string{"pod token": tok, "secret value": value, "scenario password": v.Scenario().SecretData["password"]}
	for name, secret := range secrets {
		if strings.Contains(out, secret) {
			t.Errorf("the %s appears in logs or errors", name)
		}
	}
	// A Vault token starts with hvs. in Vault 1.10+.
	if strings.Contains(out, "hvs.") {
		t.Error("a Vault token appears in logs or errors")
	}
	if !strings.Contains(s.logs.String(), `"msg":"mount"`) {
		t.Error("no mount line was logged: the check above saw nothing")
	}
}

// The JWT auth method takes the same pod token, verified by Vault against
// the apiserver's service-account signing key.
func TestMountJWTAuth(t *testing.T) {
	kube, v := realBed(t)
	ctx := t.Context()
	if err := v.ConfigureJWTAuth(ctx, kube, "jwt"); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Client.Logical().WriteWithContext(ctx, "auth/jwt/role/reader", map[string]any{
		"role_type":       "jwt",
		"bound_audiences": []string{"vault"},
		"user_claim":      "sub",
		"bound_subject":   "system:serviceaccount:" + readerNS + ":" + readerSA,
		"token_policies":  []string{"reader"},
		"token_ttl":       "1h",
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Client.Logical().WriteWithContext(ctx, "kv1/jwt", map[string]any{"user": "via-jwt"}); err != nil {
		t.Fatal(err)
	}
	s := serve(t, provider.Options{})
	p, tok := podToken(t, kube, readerNS, readerSA, "jwt-pod")
	before := auditCount(t, "auth/jwt/login")
	resp, err := s.client.Mount(ctx, request(t, p, map[string]string{
		"roleName": readerRole, "vaultAddress": v.Addr, "vaultAuthType": "jwt",
		"objects": "- {objectName: u, secretPath: kv1/jwt, secretKey: user}",
	}, "vault", tok))
	if err != nil {
		t.Fatal(err)
	}
	if files(resp)["u"] != "via-jwt" {
		t.Errorf("files = %v", files(resp))
	}
	if n := auditCount(t, "auth/jwt/login") - before; n != 1 {
		t.Errorf("%d logins at auth/jwt, want 1", n)
	}
}

// With -login-per-pod each pod logs in with its own token.
func TestLoginPerPod(t *testing.T) {
	kube, v := realBed(t)
	s := serve(t, provider.Options{LoginPerPod: true})
	if _, err := v.Client.Logical().WriteWithContext(t.Context(), "kv1/perpod", map[string]any{"user": "x"}); err != nil {
		t.Fatal(err)
	}
	params := map[string]string{"roleName": readerRole, "vaultAddress": v.Addr, "objects": "- {objectName: u, secretPath: kv1/perpod, secretKey: user}"}
	before := auditCount(t, "auth/kubernetes/login")
	for _, name := range []string{"perpod-a", "perpod-b", "perpod-c"} {
		p, tok := podToken(t, kube, readerNS, readerSA, name)
		for range 2 { // the second mount of a pod (a rotation poll) reuses its login
			if _, err := s.client.Mount(t.Context(), request(t, p, params, "vault", tok)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n := auditCount(t, "auth/kubernetes/login") - before; n != 3 {
		t.Errorf("%d logins for 3 pods mounting twice each, want 3", n)
	}
}

// -read-cache-ttl: mounts of one identity share a GET for the TTL (one read
// per identity and path in a rotation pass); PUTs are never shared.
func TestReadCache(t *testing.T) {
	kube, v := realBed(t)
	reads, err := cache.NewReads(100, 64<<20, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	s := serve(t, provider.Options{Reads: reads})
	if _, err := v.Client.Logical().WriteWithContext(t.Context(), "kv1/cached", map[string]any{"user": "c"}); err != nil {
		t.Fatal(err)
	}
	params := map[string]string{"roleName": readerRole, "vaultAddress": v.Addr, "objects": `
- {objectName: u, secretPath: kv1/cached, secretKey: user}
- {objectName: crt, secretPath: pki/issue/web, method: PUT, secretArgs: {common_name: c.example.com, ttl: 10m}, secretKey: certificate}
`}
	readsBefore, issuesBefore := auditCount(t, "kv1/cached"), auditCount(t, "pki/issue/web")
	for _, name := range []string{"cached-a", "cached-b", "cached-c"} {
		p, tok := podToken(t, kube, readerNS, readerSA, name)
		if _, err := s.client.Mount(t.Context(), request(t, p, params, "vault", tok)); err != nil {
			t.Fatal(err)
		}
	}
	if n := auditCount(t, "kv1/cached") - readsBefore; n != 1 {
		t.Errorf("%d reads of kv1/cached for 3 pods of one identity, want 1", n)
	}
	if n := auditCount(t, "pki/issue/web") - issuesBefore; n != 3 {
		t.Errorf("%d certificate issues for 3 mounts, want 3: a PUT is never shared", n)
	}
}
