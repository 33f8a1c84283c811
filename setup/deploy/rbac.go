package deploy

import (
	"fmt"
	"slices"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

// The operators' RBAC, narrowed to what their code does. Their own
// manifests grant every verb on Secrets, pods and workloads cluster-wide:
// whoever took over an operator's pod could read or change every Secret of
// the cluster.

// etcdOperatorRole is the etcd operator's ClusterRole in its v0.2.0 install
// manifest; etcdOperatorSA its service account.
const (
	etcdOperatorRole = "etcd-operator-manager-role"
	etcdOperatorSA   = "etcd-operator-controller-manager"
)

// scopeVaultOperator narrows the vault-operator chart's ClusterRole to
// what the operator does cluster-wide (nothing, unless caNamespaces is "*")
// and grants the rest with Roles. The operator watches only its own
// namespace (WATCH_NAMESPACE, which Render sets to Vault's: vault-operator
// v1.23.0, cmd/main.go, cache DefaultNamespaces), so there it gets the
// chart's rules but the cluster-scoped ones (namespaces, CRDs). In each CA
// namespace it gets what its CA copy does there (distributeCACertificate:
// get, create and update a Secret, through an uncached client). The
// ClusterRole keeps its name, emptied rather than removed, so that applying
// over an older install takes the cluster-wide grant away without prune.
func scopeVaultOperator(objs []*unstructured.Unstructured, s *Spec) ([]any, error) {
	var role *rbacv1.ClusterRole
	var subjects []rbacv1.Subject
	at := -1
	for i, o := range objs {
		var err error
		switch o.GetKind() {
		case "ClusterRole":
			role, at = &rbacv1.ClusterRole{}, i
			err = runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, role)
		case "ClusterRoleBinding":
			b := &rbacv1.ClusterRoleBinding{}
			err = runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, b)
			subjects = b.Subjects
		}
		if err != nil {
			return nil, fmt.Errorf("the operator chart's %s: %w", o.GetKind(), err)
		}
	}
	if role == nil || subjects == nil {
		return nil, fmt.Errorf("the operator chart rendered no ClusterRole and ClusterRoleBinding to narrow (serviceAccount.create: false?)")
	}
	inNamespace := slices.DeleteFunc(slices.Clone(role.Rules), func(r rbacv1.PolicyRule) bool {
		return slices.Contains(r.Resources, "namespaces") || slices.Contains(r.Resources, "customresourcedefinitions")
	})
	added := roleAndBinding(role.Name, s.Namespace, inNamespace, subjects)
	caCopy := []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "create", "update"}}}
	role.Rules = nil
	for _, ns := range s.Vault.CANamespaces {
		switch {
		case ns == "*":
			// Every namespace: the copy needs their list, and Secrets everywhere.
			role.Rules = slices.Concat(caCopy, []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"list"}}})
		case ns != s.Namespace:
			added = append(added, roleAndBinding(role.Name+"-ca-copy", ns, caCopy, subjects)...)
		}
	}
	narrowed, err := toUnstructured(role)
	if err != nil {
		return nil, err
	}
	narrowed.SetLabels(objs[at].GetLabels())
	objs[at] = narrowed
	return added, nil
}

// scopeEtcdOperator narrows the etcd operator's ClusterRole. v0.2.0 has no
// namespace option: its manager caches EtcdClusters, StatefulSets, Services
// and ConfigMaps of the whole cluster (internal/controller,
// SetupWithManager), so it keeps get, list and watch on those cluster-wide,
// and nothing else there. It writes them, and events, only in Vault's
// namespace, where its EtcdCluster is (a Role). It gets no Secrets and no
// cert-manager objects: they serve etcd TLS only, which setup never asks
// of it. A manifest of another version is applied as given.
func scopeEtcdOperator(objs []*unstructured.Unstructured, s *Spec) ([]*unstructured.Unstructured, []any, error) {
	i := slices.IndexFunc(objs, func(o *unstructured.Unstructured) bool {
		return o.GetKind() == "ClusterRole" && o.GetName() == etcdOperatorRole
	})
	if i < 0 {
		return objs, nil, nil
	}
	read := []rbacv1.PolicyRule{
		{APIGroups: []string{"operator.etcd.io"}, Resources: []string{"etcdclusters"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"apps"}, Resources: []string{"statefulsets"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{""}, Resources: []string{"services", "configmaps"}, Verbs: []string{"get", "list", "watch"}},
	}
	narrowed, err := toUnstructured(&rbacv1.ClusterRole{
		TypeMeta:   typeMeta("rbac.authorization.k8s.io/v1", "ClusterRole"),
		ObjectMeta: metav1.ObjectMeta{Name: etcdOperatorRole, Labels: objs[i].GetLabels()},
		Rules:      read,
	})
	if err != nil {
		return nil, nil, err
	}
	objs[i] = narrowed
	write := []rbacv1.PolicyRule{
		{APIGroups: []string{"operator.etcd.io"}, Resources: []string{"etcdclusters"}, Verbs: []string{"update", "patch"}},
		{APIGroups: []string{"operator.etcd.io"}, Resources: []string{"etcdclusters/status"}, Verbs: []string{"get", "update", "patch"}},
		{APIGroups: []string{"operator.etcd.io"}, Resources: []string{"etcdclusters/finalizers"}, Verbs: []string{"update"}},
		{APIGroups: []string{"apps"}, Resources: []string{"statefulsets"}, Verbs: []string{"create", "update", "patch", "delete"}},
		{APIGroups: []string{""}, Resources: []string{"services", "configmaps"}, Verbs: []string{"create", "update", "patch", "delete"}},
		{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
	}
	sa := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: etcdOperatorSA, Namespace: etcdOperatorNS(objs)}}
	return objs, roleAndBinding("etcd-operator-manager", s.Namespace, write, sa), nil
}

func roleAndBinding(name, namespace string, rules []rbacv1.PolicyRule, subjects []rbacv1.Subject) []any {
	meta := metav1.ObjectMeta{Name: name, Namespace: namespace}
	return []any{
		&rbacv1.Role{TypeMeta: typeMeta("rbac.authorization.k8s.io/v1", "Role"), ObjectMeta: meta, Rules: rules},
		&rbacv1.RoleBinding{
			TypeMeta: typeMeta("rbac.authorization.k8s.io/v1", "RoleBinding"), ObjectMeta: meta,
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
			Subjects: subjects,
		},
	}
}
