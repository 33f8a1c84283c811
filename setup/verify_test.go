package setup

import (
	"fmt"
	"slices"
	"testing"
)

// TestVerifyWritesNothing against a real Vault: when a role's policy wrongly
// allows a write to its verify.deniedWrite path, which holds a real secret,
// verify reports the failure without writing there, and leaves no new path
// behind.
func TestVerifyWritesNothing(t *testing.T) {
	b := startBed(t)
	ctx := t.Context()
	v := b.vault.Client
	r, out := b.runner(t, seedForBed(t))
	if _, err := r.Apply(ctx, both); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	// The policy is wrong: it allows writing secret/data/other, which holds a real secret.
	if _, err := v.Logical().WriteWithContext(ctx, "sys/policies/acl/testapp-kv-crud", map[string]any{
		"policy": `path "secret/data/testapp" { capabilities = ["read"] }
path "secret/data/other" { capabilities = ["create", "update", "read"] }
path "secret/data/*" { capabilities = ["create", "update", "read"] }`,
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Logical().WriteWithContext(ctx, "secret/data/other", map[string]any{"data": map[string]any{"password": "real"}}); err != nil {
		t.Fatal(err)
	}
	keys := func() []string {
		s, err := v.Logical().ListWithContext(ctx, "secret/metadata")
		if err != nil {
			t.Fatal(err)
		}
		var k []string
		for _, x := range s.Data["keys"].([]any) {
			k = append(k, x.(string))
		}
		slices.Sort(k)
		return k
	}
	before := keys()

	out.Reset()
	failed, err := r.Verify(ctx)
	if err != nil || failed == 0 || !hasLine(out.String(), "FAIL", "write secret/data/other denied") {
		t.Errorf("verify: %d failed, %v; want the denied write reported as failing\n%s", failed, err, out)
	}
	s, err := v.Logical().ReadWithContext(ctx, "secret/data/other")
	if err != nil {
		t.Fatal(err)
	}
	data, _ := s.Data["data"].(map[string]any)
	meta, _ := s.Data["metadata"].(map[string]any)
	if data["password"] != "real" || len(data) != 1 || fmt.Sprint(meta["version"]) != "1" {
		t.Errorf("secret/data/other after verify: %v (version %v); want the real secret untouched, version 1", data, meta["version"])
	}
	if after := keys(); !slices.Equal(after, before) {
		t.Errorf("paths under secret/ after verify: %q, before %q", after, before)
	}
}
