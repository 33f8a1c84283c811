package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// Op is what applying an object did or would do.
type Op string

// The ops of a result.
const (
	Created   Op = "create"
	Updated   Op = "update"
	Unchanged Op = "unchanged"
)

// Result is one object's plan or apply outcome.
type Result struct {
	Op     Op
	Object string // "Kind namespace/name"
	// Fields are the top-level paths that differ (plan of an update).
	Fields []string
}

// Applier server-side applies objects under one field manager.
type Applier struct {
	dyn          dynamic.Interface
	mapper       *restmapper.DeferredDiscoveryRESTMapper
	fieldManager string
}

// NewApplier returns an Applier for the cluster of cfg.
func NewApplier(cfg *rest.Config, fieldManager string) (*Applier, error) {
	// client-go's default of 5 requests a second makes a plan of ~30 objects
	// (a get and a dry-run apply each) take seconds for nothing.
	cfg = rest.CopyConfig(cfg)
	if cfg.QPS == 0 {
		cfg.QPS, cfg.Burst = 50, 100
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &Applier{
		dyn:          dyn,
		mapper:       restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(cs.Discovery())),
		fieldManager: fieldManager,
	}, nil
}

// Plan reports, for each object, whether applying it would create it,
// change it or leave it as is: an existing object is applied with
// dryRun=All and compared with what is stored. It writes nothing.
func (a *Applier) Plan(ctx context.Context, objs []*unstructured.Unstructured) ([]Result, error) {
	pendingCRDs := map[schema.GroupKind]bool{}
	for _, o := range objs {
		if isCRD(o) {
			if gk, ok := crdGroupKind(o); ok {
				pendingCRDs[gk] = true
			}
		}
	}
	out := make([]Result, 0, len(objs))
	for _, o := range objs {
		r := Result{Object: describe(o)}
		ri, err := a.resource(o)
		if err != nil {
			if meta.IsNoMatchError(err) && pendingCRDs[o.GroupVersionKind().GroupKind()] {
				// Its CRD is not installed yet: the object is new.
				r.Op = Created
				out = append(out, r)
				continue
			}
			return nil, fmt.Errorf("%s: %w", r.Object, err)
		}
		live, err := ri.Get(ctx, o.GetName(), metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			r.Op = Created
			out = append(out, r)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("get %s: %w", r.Object, err)
		}
		dry, err := a.patch(ctx, ri, o, true)
		if err != nil {
			return nil, fmt.Errorf("dry-run apply %s: %w", r.Object, err)
		}
		r.Fields = diffFields(live.Object, dry.Object)
		r.Op = Unchanged
		if len(r.Fields) > 0 {
			r.Op = Updated
		}
		out = append(out, r)
	}
	return out, nil
}

// Apply server-side applies objs in order, waiting for each CRD to be
// Established before the objects that use it, and reports each outcome.
func (a *Applier) Apply(ctx context.Context, objs []*unstructured.Unstructured, done func(Result)) error {
	for _, o := range objs {
		r := Result{Object: describe(o)}
		ri, err := a.resource(o)
		if err != nil {
			return fmt.Errorf("apply %s: %w", r.Object, err)
		}
		before := ""
		if live, err := ri.Get(ctx, o.GetName(), metav1.GetOptions{}); err == nil {
			before = live.GetResourceVersion()
		} else if !apierrors.IsNotFound(err) {
			return fmt.Errorf("get %s: %w", r.Object, err)
		}
		after, err := a.patch(ctx, ri, o, false)
		if err != nil {
			return fmt.Errorf("apply %s: %w", r.Object, err)
		}
		// A server-side apply that changes nothing keeps the resourceVersion.
		switch {
		case before == "":
			r.Op = Created
		case after.GetResourceVersion() != before:
			r.Op = Updated
		default:
			r.Op = Unchanged
		}
		if isCRD(o) {
			if err := a.waitEstablished(ctx, ri, o.GetName()); err != nil {
				return fmt.Errorf("apply %s: %w", r.Object, err)
			}
			a.mapper.Reset()
		}
		if done != nil {
			done(r)
		}
	}
	return nil
}

func (a *Applier) patch(ctx context.Context, ri dynamic.ResourceInterface, o *unstructured.Unstructured, dryRun bool) (*unstructured.Unstructured, error) {
	data, err := json.Marshal(o.Object)
	if err != nil {
		return nil, err
	}
	// Force: we own the fields we declare, even if a person edited them.
	force := true
	opts := metav1.PatchOptions{FieldManager: a.fieldManager, Force: &force}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	return ri.Patch(ctx, o.GetName(), types.ApplyPatchType, data, opts)
}

// resource resolves o's REST resource, refreshing discovery briefly when a
// CRD applied a moment ago is not yet listed.
func (a *Applier) resource(o *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	gvk := o.GroupVersionKind()
	var m *meta.RESTMapping
	var err error
	for range 20 {
		m, err = a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err == nil || !meta.IsNoMatchError(err) {
			break
		}
		a.mapper.Reset()
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return nil, err
	}
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		return a.dyn.Resource(m.Resource).Namespace(o.GetNamespace()), nil
	}
	return a.dyn.Resource(m.Resource), nil
}

func (a *Applier) waitEstablished(ctx context.Context, ri dynamic.ResourceInterface, name string) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		crd, err := ri.Get(ctx, name, metav1.GetOptions{})
		if err == nil && established(crd) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for CRD to be Established: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func established(u *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok && m["type"] == "Established" && m["status"] == "True" {
			return true
		}
	}
	return false
}

func isCRD(o *unstructured.Unstructured) bool {
	return o.GetKind() == "CustomResourceDefinition" && o.GroupVersionKind().Group == "apiextensions.k8s.io"
}

func crdGroupKind(o *unstructured.Unstructured) (schema.GroupKind, bool) {
	g, _, _ := unstructured.NestedString(o.Object, "spec", "group")
	k, _, _ := unstructured.NestedString(o.Object, "spec", "names", "kind")
	return schema.GroupKind{Group: g, Kind: k}, g != "" && k != ""
}

func describe(o *unstructured.Unstructured) string {
	if ns := o.GetNamespace(); ns != "" {
		return fmt.Sprintf("%s %s/%s", o.GetKind(), ns, o.GetName())
	}
	return fmt.Sprintf("%s %s", o.GetKind(), o.GetName())
}

// diffFields lists the paths (two levels deep) where a dry-run result
// differs from the stored object, ignoring bookkeeping the server keeps.
func diffFields(live, want map[string]any) []string {
	strip := func(m map[string]any) map[string]any {
		c := runtimeDeepCopy(m)
		delete(c, "status")
		if md, ok := c["metadata"].(map[string]any); ok {
			for _, k := range []string{"managedFields", "resourceVersion", "generation", "creationTimestamp", "uid"} {
				delete(md, k)
			}
		}
		return c
	}
	l, w := strip(live), strip(want)
	var out []string
	for _, k := range unionKeys(l, w) {
		lm, lok := l[k].(map[string]any)
		wm, wok := w[k].(map[string]any)
		if lok && wok {
			for _, k2 := range unionKeys(lm, wm) {
				if !reflect.DeepEqual(lm[k2], wm[k2]) {
					out = append(out, k+"."+k2)
				}
			}
			continue
		}
		if !reflect.DeepEqual(l[k], w[k]) {
			out = append(out, k)
		}
	}
	return out
}

func runtimeDeepCopy(m map[string]any) map[string]any {
	return (&unstructured.Unstructured{Object: m}).DeepCopy().Object
}

func unionKeys(a, b map[string]any) []string {
	seen := map[string]bool{}
	for k := range a {
		seen[k] = true
	}
	for k := range b {
		seen[k] = true
	}
	keys := make([]string, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
