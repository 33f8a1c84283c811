package vaultconfig_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/okevault/vault-csi-provider/internal/redact"
	"github.com/okevault/vault-csi-provider/setup/vaultconfig"
	"github.com/okevault/vault-csi-provider/test/testbed"
)

func publicKeyPEM(t *testing.T) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func apply(t *testing.T, c vaultconfig.Client, d *vaultconfig.Desired) *vaultconfig.Plan {
	t.Helper()
	p, err := vaultconfig.Compute(t.Context(), c, d)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Apply(t.Context(), c, nil); err != nil {
		t.Fatal(err)
	}
	return p
}

func changes(p *vaultconfig.Plan) string {
	var s []string
	for _, c := range p.Changes {
		s = append(s, c.String())
	}
	return strings.Join(s, "\n")
}

// TestConvergeAndPrune against a real Vault: engines of several kinds, a
// JWT auth method and role, initial secrets; a second plan is empty; prune
// removes only what this package made and the desired state dropped.
func TestConvergeAndPrune(t *testing.T) {
	v := testbed.StartVault(t)
	c := v.Client.Logical()
	ctx := t.Context()

	// Made by someone else: prune must leave it.
	if err := v.Client.Sys().PutPolicyWithContext(ctx, "hand-made", `path "x/*" { capabilities = ["read"] }`); err != nil {
		t.Fatal(err)
	}
	d := &vaultconfig.Desired{
		Policies: []vaultconfig.Policy{
			{Name: "apps-read", HCL: `path "apps/*" { capabilities = ["read"] }`},
			{Name: "old", HCL: `path "old/*" { capabilities = ["read"] }`},
		},
		Mounts: []vaultconfig.Mount{
			{Path: "apps", Type: "kv", Options: map[string]string{"version": "1"}},
			{Path: "kv2", Type: "kv", Options: map[string]string{"version": "2"}},
			{Path: "transit", Type: "transit", Options: map[string]string{}},
		},
		Auth: []vaultconfig.AuthMethod{{
			Path: "jwt", Type: "jwt",
			Config: map[string]any{"jwt_validation_pubkeys": []string{publicKeyPEM(t)}, "bound_issuer": "https://kubernetes.default.svc.cluster.local"},
			Roles: []vaultconfig.Role{
				{Name: "app", Data: map[string]any{
					"role_type": "jwt", "user_claim": "sub", "bound_audiences": []string{"vault"},
					"bound_claims_type": "string",
					"bound_claims":      map[string]any{"/kubernetes.io/namespace": []string{"default"}},
					"token_policies":    []string{"apps-read"}, "token_ttl": int64(600), "token_max_ttl": int64(0),
				}},
				{Name: "old-role", Data: map[string]any{"role_type": "jwt", "user_claim": "sub", "bound_audiences": []string{"vault"}, "token_policies": []string{"old"}}},
			},
		}},
		Secrets: []vaultconfig.Secret{
			{Mount: "apps", Path: "one", KVVersion: 1, Data: map[string]redact.Secret{"k": redact.New("v1")}},
			{Mount: "kv2", Path: "two", KVVersion: 2, Data: map[string]redact.Secret{"k": redact.New("v2")}},
		},
	}
	first := apply(t, c, d)
	if len(first.Changes) != 11 {
		t.Errorf("first apply: %d changes, want 11:\n%s", len(first.Changes), changes(first))
	}
	again, err := vaultconfig.Compute(ctx, c, d)
	if err != nil {
		t.Fatal(err)
	}
	if !again.Empty() {
		t.Fatalf("second plan not empty:\n%s", changes(again))
	}
	s, err := v.Client.KVv2("kv2").Get(ctx, "two")
	if err != nil || s.Data["k"] != "v2" {
		t.Fatalf("kv2/two: %v %v", s, err)
	}

	// Initial secrets are never overwritten.
	if _, err := v.Client.KVv2("kv2").Put(ctx, "two", map[string]any{"k": "rotated"}); err != nil {
		t.Fatal(err)
	}
	if p, _ := vaultconfig.Compute(ctx, c, d); !p.Empty() {
		t.Fatalf("a rotated initial secret is a change:\n%s", changes(p))
	}

	// Drop a policy, a role and an engine; prune removes them, not hand-made.
	d.Policies = d.Policies[:1]
	d.Auth[0].Roles = d.Auth[0].Roles[:1]
	d.Mounts = d.Mounts[:2]
	p, err := vaultconfig.Compute(ctx, c, d)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Empty() {
		t.Fatalf("without prune, dropping items plans changes:\n%s", changes(p))
	}
	d.Prune = true
	p = apply(t, c, d)
	want := "- role auth/jwt/role/old-role\n- secrets engine transit/\n- policy old"
	if got := changes(p); got != want {
		t.Fatalf("prune:\n%s\nwant:\n%s", got, want)
	}
	pols, err := v.Client.Sys().ListPoliciesWithContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(pols, ","), "hand-made") {
		t.Errorf("prune removed a policy it did not make: %v", pols)
	}
	// secret/ (the dev server's own) was never declared nor managed: kept.
	if m, err := v.Client.Sys().GetMountWithContext(ctx, "secret"); err != nil || m == nil {
		t.Errorf("secret/ was removed: %v", err)
	}
}

// TestRefusals: plans that would destroy data are errors, not changes.
func TestRefusals(t *testing.T) {
	v := testbed.StartVault(t)
	c := v.Client.Logical()
	for name, d := range map[string]*vaultconfig.Desired{
		"KV v2 to v1":   {Mounts: []vaultconfig.Mount{{Path: "secret", Type: "kv", Options: map[string]string{"version": "1"}}}},
		"type change":   {Mounts: []vaultconfig.Mount{{Path: "secret", Type: "transit"}}},
		"auth mismatch": {Auth: []vaultconfig.AuthMethod{{Path: "token", Type: "kubernetes"}}},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := vaultconfig.Compute(t.Context(), c, d); err == nil {
				t.Fatal("no error")
			}
		})
	}
}

// TestAuditDevices against a real Vault: an audit device is created, left
// alone when as declared, re-enabled when its options change, pruned when
// dropped; a device someone else enabled is never touched.
func TestAuditDevices(t *testing.T) {
	v := testbed.StartVault(t)
	c := v.Client.Logical()
	ctx := t.Context()

	if err := v.Client.Sys().EnableAuditWithOptionsWithContext(ctx, "hand-made", &vaultapi.EnableAuditOptions{Type: "file", Options: map[string]string{"file_path": "discard"}}); err != nil {
		t.Fatal(err)
	}
	d := &vaultconfig.Desired{Audit: []vaultconfig.AuditDevice{{Path: "file", Type: "file", Options: map[string]string{"file_path": "stdout"}}}}
	if p := apply(t, c, d); changes(p) != "+ audit device file/" {
		t.Fatalf("first plan:\n%s", changes(p))
	}
	live, err := v.Client.Sys().ListAuditWithContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if a := live["file/"]; a == nil || a.Type != "file" || a.Options["file_path"] != "stdout" || a.Description != vaultconfig.ManagedMarker {
		t.Fatalf("file/ is %+v", live["file/"])
	}
	if p := apply(t, c, d); !p.Empty() || p.Unchanged != 1 {
		t.Fatalf("second plan: %q, %d unchanged", changes(p), p.Unchanged)
	}

	d.Audit[0].Options["log_raw"] = "false"
	if p := apply(t, c, d); changes(p) != "~ audit device file/" || !strings.Contains(strings.Join(p.Changes[0].Details, "\n"), "options.log_raw: (unset) → false") {
		t.Fatalf("changed options: %q %q", changes(p), p.Changes[0].Details)
	}
	if p := apply(t, c, d); !p.Empty() {
		t.Fatalf("after the change: %q", changes(p))
	}

	// Declared where someone else's device is: refused, not replaced.
	taken := &vaultconfig.Desired{Audit: []vaultconfig.AuditDevice{{Path: "hand-made", Type: "file", Options: map[string]string{"file_path": "stdout"}}}}
	if _, err := vaultconfig.Compute(ctx, c, taken); err == nil || !strings.Contains(err.Error(), "not made by vault-oke-setup") {
		t.Fatalf("someone else's device: %v", err)
	}

	if p := apply(t, c, &vaultconfig.Desired{Prune: true}); changes(p) != "- audit device file/" {
		t.Fatalf("prune: %q", changes(p))
	}
	live, err = v.Client.Sys().ListAuditWithContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := live["file/"]; ok || live["hand-made/"] == nil {
		t.Fatalf("after prune: %v", live)
	}
}
