package chart_test

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
)

// TestSecureDefaults: with vault.address set and no allowedVaultAddresses
// the provider allows only that address, unless allowAnyVaultAddress says
// otherwise (Helm cannot tell an unset list from []); a deleted pod's leases
// are revoked by default, which needs the pod watch and its RBAC.
func TestSecureDefaults(t *testing.T) {
	const addr = "https://vault.vault.svc:8200"
	cases := []struct {
		name, values string
		want         string // the -allowed-vault-addresses arg; "": none
		notes        []string
	}{
		{"vault.address alone", "vault:\n  address: " + addr + "\n", "-allowed-vault-addresses=" + addr,
			[]string{"Only " + addr + " (vault.address) is allowed", "allowAnyVaultAddress=true"}},
		{"global.externalVaultAddr alone", "global:\n  externalVaultAddr: " + addr + "\n", "-allowed-vault-addresses=" + addr,
			[]string{"Only " + addr + " (vault.address) is allowed"}},
		{"an explicit list", "vault:\n  address: " + addr + "\nallowedVaultAddresses: [\"https://vault-0.vault:8200\"]\n", "-allowed-vault-addresses=https://vault-0.vault:8200", nil},
		{"the explicit opt-out", "vault:\n  address: " + addr + "\nallowAnyVaultAddress: true\n", "",
			[]string{"No allowedVaultAddresses is set"}},
		{"no address to pin", "", "", []string{"No allowedVaultAddresses is set"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rel := mustRender(t.Context(), t, releaseNamespace, parseValues(t, tc.values))
			c := providerContainer(t, decodeObjects(t, []byte(rel.Manifest)))
			i := slices.IndexFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, "-allowed-vault-addresses=") })
			switch {
			case tc.want == "" && i >= 0:
				t.Errorf("args have %s, want none", c.Args[i])
			case tc.want != "" && (i < 0 || c.Args[i] != tc.want):
				t.Errorf("args %q, want %s", c.Args, tc.want)
			}
			if miss := missingFrom(rel.Info.Notes, tc.notes...); len(miss) > 0 {
				t.Errorf("NOTES lack %q:\n%s", miss, rel.Info.Notes)
			}
		})
	}

	t.Run("leases end with their pods", func(t *testing.T) {
		objs := decodeObjects(t, []byte(mustRender(t.Context(), t, releaseNamespace, nil).Manifest))
		c := providerContainer(t, objs)
		if !slices.Contains(c.Args, "-revoke-on-pod-delete") {
			t.Errorf("default args %q lack -revoke-on-pod-delete", c.Args)
		}
		if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "NODE_NAME" }) {
			t.Errorf("default env %v lacks NODE_NAME", c.Env)
		}
		var cr rbacv1.ClusterRole
		typed(t, objs.get(t, "ClusterRole", releaseName+"-pods"), &cr)
		if len(cr.Rules) != 1 || !slices.Equal(cr.Rules[0].Verbs, []string{"list", "watch"}) {
			t.Errorf("default pod ClusterRole rules %+v, want list and watch on pods", cr.Rules)
		}
		objs = decodeObjects(t, []byte(mustRender(t.Context(), t, releaseNamespace, parseValues(t, "revokeOnPodDelete: false\n")).Manifest))
		if c := providerContainer(t, objs); slices.Contains(c.Args, "-revoke-on-pod-delete") || objs.hasNamed("ClusterRole", releaseName+"-pods") {
			t.Error("revokeOnPodDelete: false still watches pods")
		}
	})
}
