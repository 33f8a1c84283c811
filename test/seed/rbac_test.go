package seed

import (
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/okevault/vault-csi-provider/test/testbed"
)

// canI runs `kubectl auth can-i verb resource -n namespace --as` the
// service account ns/sa (namespace "" is --all-namespaces): kubectl exits
// 0 for yes and 1 for no.
func canI(t *testing.T, ns, sa, verb, resource, namespace string) bool {
	t.Helper()
	bin, err := testbed.Bin("kubectl")
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"--kubeconfig", bed.cluster.KubeconfigPath, "auth", "can-i", verb, resource, "--as", "system:serviceaccount:" + ns + ":" + sa}
	if namespace == "" {
		args = append(args, "--all-namespaces")
	} else {
		args = append(args, "-n", namespace)
	}
	out, err := exec.CommandContext(t.Context(), bin, args...).CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return true
	case errors.As(err, &exit) && exit.ExitCode() == 1 && strings.HasPrefix(string(out), "no"):
		return false
	}
	t.Fatalf("kubectl auth can-i: %v: %s", err, out)
	return false
}

// checkOperatorRBAC: each operator's service account may do its work in
// its namespaces, and not elsewhere (issue #23 item 1; docs/setup.md,
// "What each operator may do").
func checkOperatorRBAC(t *testing.T) {
	t.Helper()
	type access struct{ verb, resource, namespace string }
	for _, op := range []struct {
		ns, sa      string
		can, cannot []access
	}{
		{vaultNS, "vault-operator",
			[]access{{"create", "secrets", vaultNS}, {"create", "statefulsets.apps", vaultNS}, {"update", "vaults.vault.banzaicloud.com", vaultNS}, {"update", "secrets", "vault-csi-provider"}},
			[]access{{"list", "secrets", ""}, {"get", "secrets", "kube-system"}, {"create", "secrets", appNS}, {"delete", "pods", "kube-system"}, {"create", "statefulsets.apps", appNS}}},
		{"etcd-operator-system", "etcd-operator-controller-manager",
			[]access{{"create", "statefulsets.apps", vaultNS}, {"list", "statefulsets.apps", ""}, {"update", "etcdclusters.operator.etcd.io/status", vaultNS}},
			[]access{{"create", "statefulsets.apps", appNS}, {"get", "secrets", vaultNS}, {"list", "secrets", ""}, {"delete", "services", "kube-system"}}},
	} {
		for _, a := range op.can {
			if !canI(t, op.ns, op.sa, a.verb, a.resource, a.namespace) {
				t.Errorf("%s/%s cannot %s %s in %q; it needs to", op.ns, op.sa, a.verb, a.resource, a.namespace)
			}
		}
		for _, a := range op.cannot {
			if canI(t, op.ns, op.sa, a.verb, a.resource, a.namespace) {
				t.Errorf("%s/%s can %s %s in %q", op.ns, op.sa, a.verb, a.resource, a.namespace)
			}
		}
	}
}
