package chart_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/release"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"github.com/okevault/vault-csi-provider/test/testbed"
)

const (
	// releaseName equals the chart name, so objects are named vault-csi-provider.
	releaseName      = "vault-csi-provider"
	releaseNamespace = "vault-csi-provider"
	fieldManager     = "chart-test"
	hmacSecretName   = "vault-csi-provider-hmac-key"
)

// kubeVersion is what the chart is rendered for: the test bed's apiserver.
var kubeVersion = chartutil.KubeVersion{Version: "v1.37.2", Major: "1", Minor: "37"}

// moduleDir returns a path below the module root.
func moduleDir(t testing.TB, elem ...string) string {
	t.Helper()
	root, err := testbed.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(append([]string{root}, elem...)...)
}

func chartDir(t testing.TB) string { return moduleDir(t, "charts", "vault-csi-provider") }

// parseValues reads a YAML values document ("" is no values).
func parseValues(t testing.TB, doc string) map[string]any {
	t.Helper()
	vals, err := chartutil.ReadValues([]byte(doc))
	if err != nil {
		t.Fatalf("values: %v", err)
	}
	return vals
}

// render runs the chart through helm's install action, client-only and dry
// run, as `helm template` does; it returns the release or helm's error
// (schema and template failures included).
func render(ctx context.Context, t testing.TB, namespace string, vals map[string]any) (*release.Release, error) {
	t.Helper()
	chrt, err := loader.Load(chartDir(t))
	if err != nil {
		t.Fatalf("load chart: %v", err)
	}
	install := action.NewInstall(&action.Configuration{Log: func(string, ...any) {}})
	install.DryRun = true
	install.ClientOnly = true
	install.Replace = true
	install.ReleaseName = releaseName
	install.Namespace = namespace
	install.KubeVersion = &kubeVersion
	return install.RunWithContext(ctx, chrt, vals)
}

// mustRender is render for values that must be accepted.
func mustRender(ctx context.Context, t testing.TB, namespace string, vals map[string]any) *release.Release {
	t.Helper()
	rel, err := render(ctx, t, namespace, vals)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	return rel
}

// objects are the Kubernetes objects of a manifest, in order.
type objects []*unstructured.Unstructured

// doc is one YAML document of a manifest: the object, and the text as
// written, which the dry runs send unchanged so that the apiserver sees
// (and strict validation rejects) duplicate fields.
type doc struct {
	obj *unstructured.Unstructured
	raw []byte
}

// splitDocs splits multi-document YAML, skipping empty documents.
func splitDocs(t testing.TB, manifest []byte) []doc {
	t.Helper()
	var docs []doc
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(manifest)))
	for {
		raw, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("read manifest: %v", err)
		}
		var m map[string]any
		if err := yaml.Unmarshal(raw, &m); err != nil {
			t.Fatalf("decode manifest document: %v\n%s", err, raw)
		}
		if len(m) == 0 {
			continue
		}
		docs = append(docs, doc{obj: &unstructured.Unstructured{Object: m}, raw: raw})
	}
}

// decodeObjects returns the objects of multi-document YAML.
func decodeObjects(t testing.TB, manifest []byte) objects {
	t.Helper()
	var objs objects
	for _, d := range splitDocs(t, manifest) {
		objs = append(objs, d.obj)
	}
	return objs
}

// get returns the object of kind and name, or fails.
func (o objects) get(t testing.TB, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, u := range o {
		if u.GetKind() == kind && u.GetName() == name {
			return u
		}
	}
	t.Fatalf("no %s %q among %v", kind, name, o.names())
	return nil
}

// hasNamed reports whether an object of kind and name exists.
func (o objects) hasNamed(kind, name string) bool {
	return slices.ContainsFunc(o, func(u *unstructured.Unstructured) bool { return u.GetKind() == kind && u.GetName() == name })
}

// names lists Kind/name of every object, for messages.
func (o objects) names() []string {
	var s []string
	for _, u := range o {
		s = append(s, u.GetKind()+"/"+u.GetName())
	}
	return s
}

// typed converts u into out, failing on fields out's type does not know.
func typed(t testing.TB, u *unstructured.Unstructured, out any) {
	t.Helper()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, out, true); err != nil {
		t.Fatalf("%s %s: %v", u.GetKind(), u.GetName(), err)
	}
}

// dryRunner applies objects to a real apiserver with server-side apply,
// dry run (nothing is stored) and strict field validation (an unknown or
// duplicate field is an error, not a warning).
type dryRunner struct {
	dyn    dynamic.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper
}

func newDryRunner(kube *testbed.Kube) *dryRunner {
	return &dryRunner{
		dyn:    kube.Dynamic,
		mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(kube.Client.Discovery())),
	}
}

func (d *dryRunner) apply(ctx context.Context, doc doc) error {
	return d.applyValidated(ctx, doc, metav1.FieldValidationStrict)
}

// applyValidated is apply with the given field validation (Strict, Warn, Ignore).
func (d *dryRunner) applyValidated(ctx context.Context, doc doc, validation string) error {
	u := doc.obj
	gvk := u.GroupVersionKind()
	what := gvk.Kind + " " + u.GetName()
	mapping, err := d.restMapping(ctx, gvk)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	var ri dynamic.ResourceInterface = d.dyn.Resource(mapping.Resource)
	if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
		ns := u.GetNamespace()
		if ns == "" {
			ns = metav1.NamespaceDefault
		}
		ri = d.dyn.Resource(mapping.Resource).Namespace(ns)
	}
	force := true
	// An apply patch may be YAML: the document goes as written.
	_, err = ri.Patch(ctx, u.GetName(), types.ApplyPatchType, doc.raw, metav1.PatchOptions{
		DryRun:          []string{metav1.DryRunAll},
		FieldValidation: validation,
		FieldManager:    fieldManager,
		Force:           &force,
	})
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// restMapping resolves gvk, refreshing discovery while a CRD applied just
// before is not listed yet.
func (d *dryRunner) restMapping(ctx context.Context, gvk schema.GroupVersionKind) (*meta.RESTMapping, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for {
		m, err := d.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err == nil || !meta.IsNoMatchError(err) {
			return m, err
		}
		d.mapper.Reset()
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// skipDryRun says why an object cannot be dry-run against the test bed, or "".
func skipDryRun(u *unstructured.Unstructured) string {
	if u.GroupVersionKind().Group == "monitoring.coreos.com" {
		return "the Prometheus Operator's CRDs are not installed in the test bed"
	}
	return ""
}

// missingFrom lists the strings of want that s does not contain.
func missingFrom(s string, want ...string) []string {
	var miss []string
	for _, w := range want {
		if !strings.Contains(s, w) {
			miss = append(miss, w)
		}
	}
	return miss
}
