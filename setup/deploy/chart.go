package deploy

import (
	"context"
	"fmt"
	"maps"
	"os"
	"strings"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/cli"
	"helm.sh/helm/v3/pkg/registry"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// operatorImageTag pins the operator image when the chart is the module's
// development copy (version 0.0.0, appVersion "latest").
const operatorImageTag = "v1.23.0"

// RenderChart renders c's templates for namespace, as `helm template`
// would, and returns its CRDs followed by the rendered objects, each with
// its namespace set.
func RenderChart(ctx context.Context, c Chart, namespace string) ([]*unstructured.Unstructured, error) {
	ch, err := loadChart(c)
	if err != nil {
		return nil, err
	}
	vals := maps.Clone(c.Values)
	if vals == nil {
		vals = map[string]any{}
	}
	if ch.Metadata.Version == "0.0.0" {
		img, _ := vals["image"].(map[string]any)
		img = maps.Clone(img)
		if img == nil {
			img = map[string]any{}
		}
		if _, set := img["tag"]; !set {
			img["tag"] = operatorImageTag
		}
		vals["image"] = img
	}

	cfg := &action.Configuration{Log: func(string, ...any) {}}
	inst := action.NewInstall(cfg)
	inst.ClientOnly = true
	inst.DryRun = true
	inst.Replace = true
	inst.ReleaseName = c.ReleaseName
	inst.Namespace = namespace
	inst.DisableHooks = true
	rel, err := inst.RunWithContext(ctx, ch, vals)
	if err != nil {
		return nil, err
	}

	var out []*unstructured.Unstructured
	for _, crd := range ch.CRDObjects() {
		objs, err := decodeYAML(crd.File.Data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", crd.Name, err)
		}
		out = append(out, objs...)
	}
	objs, err := decodeYAML([]byte(rel.Manifest))
	if err != nil {
		return nil, fmt.Errorf("rendered manifest: %w", err)
	}
	for _, o := range objs {
		if o.GetNamespace() == "" && !clusterScoped(o) {
			o.SetNamespace(namespace)
		}
		// The objects are applied by us, not by a Helm release.
		labels := o.GetLabels()
		delete(labels, "helm.sh/chart")
		o.SetLabels(labels)
	}
	return append(out, objs...), nil
}

// loadChart loads a local chart directory or archive, or pulls an oci://
// or repository chart at its pinned version.
func loadChart(c Chart) (*chart.Chart, error) {
	if _, err := os.Stat(c.Ref); err == nil {
		return loader.Load(c.Ref)
	}
	if !strings.Contains(c.Ref, "://") {
		return nil, fmt.Errorf("chart %q: no such local chart", c.Ref)
	}
	rc, err := registry.NewClient()
	if err != nil {
		return nil, err
	}
	inst := action.NewInstall(&action.Configuration{})
	inst.SetRegistryClient(rc)
	inst.Version = c.Version
	path, err := inst.LocateChart(c.Ref, cli.New())
	if err != nil {
		return nil, err
	}
	return loader.Load(path)
}

// clusterScoped covers the cluster-scoped kinds a chart may render.
func clusterScoped(o *unstructured.Unstructured) bool {
	switch o.GetKind() {
	case "Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding",
		"PriorityClass", "StorageClass", "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration":
		return true
	}
	return false
}
