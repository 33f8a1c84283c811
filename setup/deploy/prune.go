package deploy

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/sets"
)

// Deleted is the Op of a pruned object.
const Deleted Op = "delete"

// prunableKinds are the kinds deploy may ever have applied, beyond those in
// the current render (a kind the file no longer uses is still looked at).
// Namespaces and CRDs are never pruned: deleting one deletes everything in
// it or of its kind, which is a human's call.
var prunableKinds = []schema.GroupVersionKind{
	{Version: "v1", Kind: "ServiceAccount"},
	{Version: "v1", Kind: "Service"},
	{Group: "apps", Version: "v1", Kind: "Deployment"},
	{Group: "policy", Version: "v1", Kind: "PodDisruptionBudget"},
	{Group: "networking.k8s.io", Version: "v1", Kind: "NetworkPolicy"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "Role"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "RoleBinding"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "ClusterRole"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "ClusterRoleBinding"},
	{Group: "operator.etcd.io", Version: "v1alpha1", Kind: "EtcdCluster"},
	{Group: "vault.banzaicloud.com", Version: "v1alpha1", Kind: "Vault"},
}

// PlanPrune lists the objects labelled as applied by setup name that keep
// (the current render) no longer contains. Custom resources come first, so
// the operators still run while their objects go.
func (a *Applier) PlanPrune(ctx context.Context, name string, keep []*unstructured.Unstructured) ([]Result, []*unstructured.Unstructured, error) {
	kept := sets.New[string]()
	kinds := map[schema.GroupVersionKind]bool{}
	for _, o := range keep {
		kept.Insert(key(o))
		kinds[o.GroupVersionKind()] = true
	}
	for _, gvk := range prunableKinds {
		kinds[gvk] = true
	}
	selector := fmt.Sprintf("%s=%s,%s=%s", LabelManagedBy, managedBy, LabelSetup, name)
	var gone []*unstructured.Unstructured
	for gvk := range kinds {
		if gvk.Kind == "Namespace" || gvk.Kind == "CustomResourceDefinition" {
			continue
		}
		m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if meta.IsNoMatchError(err) {
			continue // the kind's CRD is not installed: nothing of it exists
		}
		if err != nil {
			return nil, nil, err
		}
		list, err := a.dyn.Resource(m.Resource).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return nil, nil, fmt.Errorf("list %s: %w", gvk.Kind, err)
		}
		for i := range list.Items {
			o := &list.Items[i]
			o.SetGroupVersionKind(gvk)
			if !kept.Has(key(o)) {
				gone = append(gone, o)
			}
		}
	}
	// Reverse apply order: custom resources, then the rest.
	sortForApply(gone)
	for i, j := 0, len(gone)-1; i < j; i, j = i+1, j-1 {
		gone[i], gone[j] = gone[j], gone[i]
	}
	results := make([]Result, 0, len(gone))
	for _, o := range gone {
		results = append(results, Result{Op: Deleted, Object: describe(o)})
	}
	return results, gone, nil
}

// Prune deletes what PlanPrune returned.
func (a *Applier) Prune(ctx context.Context, gone []*unstructured.Unstructured, done func(Result)) error {
	for _, o := range gone {
		ri, err := a.resource(o)
		if err != nil {
			return fmt.Errorf("prune %s: %w", describe(o), err)
		}
		if err := ri.Delete(ctx, o.GetName(), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("prune %s: %w", describe(o), err)
		}
		if done != nil {
			done(Result{Op: Deleted, Object: describe(o)})
		}
	}
	return nil
}

func key(o *unstructured.Unstructured) string {
	return o.GroupVersionKind().GroupKind().String() + "/" + o.GetNamespace() + "/" + o.GetName()
}
