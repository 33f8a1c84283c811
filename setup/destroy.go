package setup

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"

	"github.com/okevault/vault-csi-provider/setup/deploy"
)

// Destroy removes what deploy made for this setup: every object labelled
// with its name (the same selection and order as prune), custom resources
// first, so the operators still run while their objects go. It prints the
// plan first and deletes only with yes. It never touches what it did not
// label; namespaces and CRDs stay (deleting one deletes everything in it or
// of its kind), and so do the data the operators made: the unseal-keys
// Secret and the PersistentVolumeClaims, listed as kept with the commands
// that remove them. It returns what it deleted, or would delete.
func (r *Runner) Destroy(ctx context.Context, yes bool) (Summary, error) {
	var sum Summary
	if err := r.requireDeploy(); err != nil {
		return sum, fmt.Errorf("destroy: %w", err)
	}
	objs, err := deploy.Render(ctx, r.Prepared.Deploy)
	if err != nil {
		return sum, fmt.Errorf("destroy: render: %w", err)
	}
	a, err := deploy.NewApplier(r.Kube, FieldManager)
	if err != nil {
		return sum, fmt.Errorf("destroy: %w", err)
	}
	// PlanPrune looks at the kinds of what it is given and keeps what it is
	// given: objects of each rendered kind with no name make it look at
	// every kind deploy applies and keep none.
	kinds := make([]*unstructured.Unstructured, 0, len(objs))
	for _, o := range objs {
		k := &unstructured.Unstructured{}
		k.SetGroupVersionKind(o.GroupVersionKind())
		kinds = append(kinds, k)
	}
	results, gone, err := a.PlanPrune(ctx, r.Prepared.Name, kinds)
	if err != nil {
		return sum, fmt.Errorf("destroy: %w", err)
	}
	for _, res := range results {
		r.printf("destroy: - %s\n", res.Object)
	}
	sum.Deleted = len(results)
	if err := r.printKept(ctx, objs); err != nil {
		return sum, err
	}
	switch {
	case len(results) == 0:
		r.printf("Nothing to delete.\n")
		return sum, nil
	case !yes:
		r.printf("Destroy plan: %d to delete. Run again with --yes to delete them.\n", len(results))
		return sum, nil
	}
	err = a.Prune(ctx, gone, func(res deploy.Result) { r.printf("destroy: - %s (deleted)\n", res.Object) })
	if err != nil {
		return sum, fmt.Errorf("destroy: %w", err)
	}
	r.printf("Destroyed: %d deleted.\n", len(results))
	return sum, nil
}

// printKept lists what destroy leaves: the namespaces and CRDs deploy made,
// and the operators' data in the deploy namespace.
func (r *Runner) printKept(ctx context.Context, objs []*unstructured.Unstructured) error {
	cs, err := kubernetes.NewForConfig(r.Kube)
	if err != nil {
		return fmt.Errorf("destroy: %w", err)
	}
	d := r.Prepared.Deploy
	for _, o := range objs {
		if o.GetKind() == "Namespace" || o.GetKind() == "CustomResourceDefinition" {
			r.printf("destroy: kept %s %s (deleting it deletes everything in it or of its kind: kubectl delete %s %s)\n", o.GetKind(), o.GetName(), o.GetKind(), o.GetName())
		}
	}
	if d.Vault.UnsealSecret != "" {
		_, err := cs.CoreV1().Secrets(d.Namespace).Get(ctx, d.Vault.UnsealSecret, metav1.GetOptions{})
		switch {
		case err == nil:
			r.printf("destroy: kept Secret %s/%s (Vault's unseal keys: the only way into the data below; kubectl -n %s delete secret %s)\n", d.Namespace, d.Vault.UnsealSecret, d.Namespace, d.Vault.UnsealSecret)
		case !apierrors.IsNotFound(err):
			return fmt.Errorf("destroy: %w", err)
		}
	}
	pvcs, err := cs.CoreV1().PersistentVolumeClaims(d.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("destroy: %w", err)
	}
	if pvcs != nil {
		for _, p := range pvcs.Items {
			r.printf("destroy: kept PersistentVolumeClaim %s/%s (Vault's data; kubectl -n %s delete pvc %s)\n", p.Namespace, p.Name, p.Namespace, p.Name)
		}
	}
	return nil
}
