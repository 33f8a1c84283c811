package chart_test

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/release"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/cli-runtime/pkg/genericclioptions"

	"github.com/okevault/vault-csi-provider/test/testbed"
)

// TestAPIServer checks the chart and the examples against a real
// kube-apiserver (one for all subtests: starting it is the slow part).
func TestAPIServer(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the real kube-apiserver; skipped under -short")
	}
	kube := testbed.StartKube(t)
	ctx := t.Context()
	dry := newDryRunner(kube)
	if err := kube.CreateNamespace(ctx, releaseNamespace); err != nil {
		t.Fatal(err)
	}

	// The dry runs below must catch what a template can get wrong, or they
	// prove little: a misplaced field, and (strict validation only) a
	// field written twice, which a YAML decoder would silently merge.
	t.Run("dry run rejects misplaced and duplicate fields", func(t *testing.T) {
		var ds doc
		for _, d := range splitDocs(t, []byte(mustRender(ctx, t, releaseNamespace, nil).Manifest)) {
			if d.obj.GetKind() == "DaemonSet" {
				ds = d
			}
		}
		if ds.obj == nil {
			t.Fatal("no DaemonSet rendered")
		}
		misplaced := ds.obj.DeepCopy()
		c := misplaced.Object["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)
		c["readOnlyRootFilesystem"] = true // belongs in securityContext
		raw, err := misplaced.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		err = dry.apply(ctx, doc{obj: misplaced, raw: raw})
		if err == nil || !strings.Contains(err.Error(), "readOnlyRootFilesystem: field not declared in schema") {
			t.Errorf("dry run of a DaemonSet with a misplaced field: %v, want it rejected", err)
		}

		dup := doc{obj: ds.obj, raw: []byte(strings.Replace(string(ds.raw), "\nspec:\n", "\nspec:\n  minReadySeconds: 0\n  minReadySeconds: 5\n", 1))}
		if string(dup.raw) == string(ds.raw) {
			t.Fatal("no top-level spec: in the DaemonSet's YAML to add a duplicate field to")
		}
		if err := dry.applyValidated(ctx, dup, metav1.FieldValidationIgnore); err != nil {
			t.Fatalf("dry run of a duplicate field with validation Ignore: %v", err)
		}
		err = dry.apply(ctx, dup)
		if err == nil || !strings.Contains(err.Error(), `key "minReadySeconds" already set`) {
			t.Errorf("strict dry run of a DaemonSet with a duplicate field: %v, want it rejected", err)
		}
	})

	// Every rendered object of every case, server-side dry run, strict.
	t.Run("chart dry run", func(t *testing.T) {
		for _, tc := range renderCases {
			t.Run(tc.name, func(t *testing.T) {
				rel := mustRender(ctx, t, releaseNamespace, parseValues(t, tc.values))
				dryRunAll(ctx, t, dry, []byte(rel.Manifest))
			})
		}
	})

	// A real install through helm's install action and client (the
	// release is recorded in a Secret, as `helm install` does).
	t.Run("install", func(t *testing.T) {
		const ns = "vault-csi-provider-install"
		flags := genericclioptions.NewConfigFlags(false)
		kubeconfig, namespace := kube.KubeconfigPath, ns
		flags.KubeConfig, flags.Namespace = &kubeconfig, &namespace
		cfg := new(action.Configuration)
		if err := cfg.Init(flags, ns, "secret", t.Logf); err != nil {
			t.Fatal(err)
		}
		chrt, err := loader.Load(chartDir(t))
		if err != nil {
			t.Fatal(err)
		}
		install := action.NewInstall(cfg)
		install.ReleaseName = releaseName
		install.Namespace = ns
		install.CreateNamespace = true
		rel, err := install.RunWithContext(ctx, chrt, parseValues(t, "vault:\n  address: https://vault.vault.svc:8200\n"))
		if err != nil {
			t.Fatalf("helm install: %v", err)
		}
		if rel.Info.Status != release.StatusDeployed {
			t.Errorf("release status %s, want deployed", rel.Info.Status)
		}
		c := kube.Client
		ds, err := c.AppsV1().DaemonSets(ns).Get(ctx, releaseName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := ds.Spec.Template.Spec.ServiceAccountName; got != releaseName {
			t.Errorf("DaemonSet serviceAccountName = %q", got)
		}
		if _, err := c.CoreV1().ServiceAccounts(ns).Get(ctx, releaseName, metav1.GetOptions{}); err != nil {
			t.Error(err)
		}
		role, err := c.RbacV1().Roles(ns).Get(ctx, releaseName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(role.Rules) != 2 || !slices.Equal(role.Rules[0].ResourceNames, []string{hmacSecretName}) {
			t.Errorf("Role rules = %+v", role.Rules)
		}
		if _, err := c.RbacV1().RoleBindings(ns).Get(ctx, releaseName, metav1.GetOptions{}); err != nil {
			t.Error(err)
		}
		// The apiserver's RBAC decides: the provider may get, list and watch
		// its HMAC key Secret (a list or watch filtered to its name, as the
		// provider's watch is), and no other Secret.
		sa := "system:serviceaccount:" + ns + ":" + releaseName
		for _, tc := range []struct {
			verb, name string
			allowed    bool
		}{
			{"get", hmacSecretName, true}, {"list", hmacSecretName, true}, {"watch", hmacSecretName, true},
			{"get", "other", false}, {"list", "", false}, {"watch", "", false}, {"delete", hmacSecretName, false},
		} {
			review, err := c.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
				User: sa, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns},
				ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: ns, Verb: tc.verb, Resource: "secrets", Name: tc.name},
			}}, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if review.Status.Allowed != tc.allowed {
				t.Errorf("the provider may %s secret %q: %t, want %t", tc.verb, tc.name, review.Status.Allowed, tc.allowed)
			}
		}
		// By default the only cluster-wide grant is the pod watch that
		// revokes deleted pods' leases (revokeOnPodDelete): list and watch
		// pods, nothing else.
		crs, err := c.RbacV1().ClusterRoles().List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=" + releaseName})
		if err != nil {
			t.Fatal(err)
		}
		var rules []string
		for _, cr := range crs.Items {
			for _, r := range cr.Rules {
				rules = append(rules, fmt.Sprintf("%s %v %v %v %v", cr.Name, r.APIGroups, r.Resources, r.ResourceNames, r.Verbs))
			}
		}
		if want := []string{releaseName + "-pods [] [pods] [] [list watch]"}; !slices.Equal(rules, want) {
			t.Errorf("ClusterRoles of the release grant %q, want %q by default", rules, want)
		}
	})

	// Every example, with the driver's CRDs installed.
	t.Run("examples", func(t *testing.T) {
		deploy, err := testbed.Bin("csidriver-deploy")
		if err != nil {
			t.Fatal(err)
		}
		for _, crd := range []string{
			"secrets-store.csi.x-k8s.io_secretproviderclasses.yaml",
			"secrets-store.csi.x-k8s.io_secretproviderclasspodstatuses.yaml",
		} {
			b, err := os.ReadFile(filepath.Join(deploy, crd))
			if err != nil {
				t.Fatal(err)
			}
			if err := kube.Apply(ctx, b); err != nil {
				t.Fatal(err)
			}
		}
		// The seed's service account: the apiserver refuses a Pod (even in a
		// dry run) whose service account does not exist.
		if err := kube.CreateServiceAccount(ctx, metav1.NamespaceDefault, "testapp"); err != nil {
			t.Fatal(err)
		}
		// The CRD's schema applies: an unknown field of a class is rejected.
		t.Run("unknown SecretProviderClass field rejected", func(t *testing.T) {
			spc := exampleFile{path: moduleDir(t, "examples", "secretproviderclass.yaml"), rel: "secretproviderclass.yaml"}.objects(t)[0]
			if err := unstructured.SetNestedField(spc.Object, "vault", "spec", "providr"); err != nil {
				t.Fatal(err)
			}
			raw, err := spc.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			err = dry.apply(ctx, doc{obj: spc, raw: raw})
			if err == nil || !strings.Contains(err.Error(), "providr") {
				t.Fatalf("dry run of a SecretProviderClass with an unknown field: %v, want it rejected", err)
			}
		})
		for _, ex := range exampleFiles(t) {
			t.Run(ex.rel, func(t *testing.T) {
				switch {
				case ex.rel == "vault-csi-provider-values.yaml":
					// Values for this chart: what they render must be valid.
					vals, err := readValuesFile(ex.path)
					if err != nil {
						t.Fatal(err)
					}
					dryRunAll(ctx, t, dry, []byte(mustRender(ctx, t, releaseNamespace, vals).Manifest))
				case ex.values:
					t.Skip("values for another chart: checked in TestExamples")
				default:
					ex.objects(t) // every document is an object
					b, err := os.ReadFile(ex.path)
					if err != nil {
						t.Fatal(err)
					}
					dryRunAll(ctx, t, dry, b)
				}
			})
		}
	})
}

// dryRunAll dry-runs every document of manifest, skipping (and saying so)
// the kinds the test bed has no CRD for.
func dryRunAll(ctx context.Context, t *testing.T, dry *dryRunner, manifest []byte) {
	t.Helper()
	docs := splitDocs(t, manifest)
	if len(docs) == 0 {
		t.Fatal("no objects")
	}
	for _, d := range docs {
		if why := skipDryRun(d.obj); why != "" {
			t.Logf("not dry-run: %s %s: %s", d.obj.GetKind(), d.obj.GetName(), why)
			continue
		}
		if err := dry.apply(ctx, d); err != nil {
			t.Errorf("server-side dry run: %v", err)
		}
	}
}

// exampleFile is a YAML or JSON file under examples/.
type exampleFile struct {
	path, rel string
	values    bool // Helm values (named *-values.yaml), not Kubernetes objects
}

func (e exampleFile) objects(t *testing.T) objects {
	t.Helper()
	b, err := os.ReadFile(e.path)
	if err != nil {
		t.Fatal(err)
	}
	objs := decodeObjects(t, b)
	for _, u := range objs {
		if u.GetAPIVersion() == "" || u.GetKind() == "" {
			t.Fatalf("%s: a document without apiVersion/kind; Helm values files must be named *-values.yaml", e.rel)
		}
	}
	return objs
}

// exampleFiles lists examples/**.{yaml,yml,json}, except examples/setup/
// (input of the setup command, not Kubernetes objects).
func exampleFiles(t *testing.T) []exampleFile {
	t.Helper()
	root := moduleDir(t, "examples")
	var files []exampleFile
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		if d.IsDir() {
			if rel == "setup" {
				return filepath.SkipDir
			}
			return nil
		}
		switch filepath.Ext(path) {
		case ".yaml", ".yml", ".json":
			base := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
			files = append(files, exampleFile{path: path, rel: filepath.ToSlash(rel), values: strings.HasSuffix(base, "-values")})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}
