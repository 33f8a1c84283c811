package setup

import (
	"fmt"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// canI asks the apiserver what `kubectl auth can-i --as` asks: may the
// service account ns/name do verb on resource (group/resource[/sub]) in
// namespace ("" is cluster-wide)?
func (b *bed) canI(t *testing.T, ns, name, verb, group, resource, sub, namespace string) bool {
	t.Helper()
	sar, err := b.kube.Client.AuthorizationV1().SubjectAccessReviews().Create(t.Context(), &authorizationv1.SubjectAccessReview{
		Spec: authorizationv1.SubjectAccessReviewSpec{
			User:   fmt.Sprintf("system:serviceaccount:%s:%s", ns, name),
			Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: namespace, Verb: verb, Group: group, Resource: resource, Subresource: sub,
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return sar.Status.Allowed
}

// TestOperatorsNamespaceScoped against a real apiserver's RBAC: after
// deploy, each operator's service account may do its work in its
// namespaces (Vault's, and the CA's copies for the vault-operator) and
// nothing of it elsewhere: no Secrets, workloads or pods in other
// namespaces, no Secrets at all for the etcd operator.
func TestOperatorsNamespaceScoped(t *testing.T) {
	b := startBed(t)
	r, out := b.runner(t, seedForBed(t))
	if _, err := r.Apply(t.Context(), Stages{Deploy: true}); err != nil {
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	type access struct{ verb, group, resource, sub, namespace string }
	tests := []struct {
		ns, sa      string
		can, cannot []access
	}{
		{"vault", "vault-operator",
			[]access{
				{"create", "", "secrets", "", "vault"},
				{"watch", "", "secrets", "", "vault"},
				{"create", "apps", "statefulsets", "", "vault"},
				{"update", "vault.banzaicloud.com", "vaults", "status", "vault"},
				{"update", "coordination.k8s.io", "leases", "", "vault"},
				{"create", "", "secrets", "", "vault-csi-provider"}, // the CA's copy
				{"update", "", "secrets", "", "vault-csi-provider"},
			},
			[]access{
				{"list", "", "secrets", "", ""},
				{"get", "", "secrets", "", "kube-system"},
				{"create", "", "secrets", "", "default"},
				{"delete", "", "secrets", "", "vault-csi-provider"},
				{"create", "apps", "statefulsets", "", "default"},
				{"delete", "", "pods", "", "kube-system"},
				{"list", "", "configmaps", "", ""},
				{"update", "vault.banzaicloud.com", "vaults", "", "default"},
			}},
		{"etcd-operator-system", "etcd-operator-controller-manager",
			[]access{
				{"create", "apps", "statefulsets", "", "vault"},
				{"list", "apps", "statefulsets", "", ""}, // its cache watches the cluster: it has no namespace option
				{"update", "operator.etcd.io", "etcdclusters", "status", "vault"},
				{"create", "", "services", "", "vault"},
				{"create", "", "events", "", "vault"},
			},
			[]access{
				{"create", "apps", "statefulsets", "", "default"},
				{"delete", "", "services", "", "kube-system"},
				{"update", "", "configmaps", "", "kube-system"},
				{"get", "", "secrets", "", "vault"},
				{"list", "", "secrets", "", ""},
				{"update", "operator.etcd.io", "etcdclusters", "", "default"},
			}},
	}
	for _, tt := range tests {
		for _, a := range tt.can {
			if !b.canI(t, tt.ns, tt.sa, a.verb, a.group, a.resource, a.sub, a.namespace) {
				t.Errorf("%s/%s cannot %s %s/%s %s in %q; it needs to", tt.ns, tt.sa, a.verb, a.group, a.resource, a.sub, a.namespace)
			}
		}
		for _, a := range tt.cannot {
			if b.canI(t, tt.ns, tt.sa, a.verb, a.group, a.resource, a.sub, a.namespace) {
				t.Errorf("%s/%s can %s %s/%s %s in %q", tt.ns, tt.sa, a.verb, a.group, a.resource, a.sub, a.namespace)
			}
		}
	}
}
