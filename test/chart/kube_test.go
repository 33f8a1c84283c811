package chart_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/release"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"

	"github.com/okevault/vault-csi-provider/test/testbed"
)

// TestAPIServer checks the chart and the examples against a real
// kube-apiserver (one for all subtests: starting it is the slow part).
func TestAPIServer(t *testing.T) {
	kube := testbed.StartKube(t)
	ctx := t.Context()
	dry := newDryRunner(kube)
	if err := kube.CreateNamespace(ctx, releaseNamespace); err != nil {
		t.Fatal(err)
	}

	// Strict validation must be on, or the dry runs below prove little.
	t.Run("strict validation rejects unknown fields", func(t *testing.T) {
		objs := decodeObjects(t, []byte(mustRender(t, releaseNamespace, nil).Manifest))
		ds := objs.get(t, "DaemonSet", releaseName).DeepCopy()
		c := ds.Object["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)
		c["readOnlyRootFilesystem"] = true // belongs in securityContext
		err := dry.apply(ctx, ds)
		if err == nil || !strings.Contains(err.Error(), `unknown field "spec.template.spec.containers[0].readOnlyRootFilesystem"`) {
			t.Fatalf("dry run of a DaemonSet with an unknown field: %v, want a strict-validation error", err)
		}
	})

	// Every rendered object of every case, server-side dry run, strict.
	t.Run("chart dry run", func(t *testing.T) {
		for _, tc := range renderCases {
			t.Run(tc.name, func(t *testing.T) {
				rel := mustRender(t, releaseNamespace, parseValues(t, tc.values))
				dryRunAll(t, dry, decodeObjects(t, []byte(rel.Manifest)))
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
		if crs, err := c.RbacV1().ClusterRoles().List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=" + releaseName}); err != nil || len(crs.Items) != 0 {
			t.Errorf("ClusterRoles of the release: %v, %v; want none by default", crs, err)
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
		if err := kube.CreateNamespace(ctx, metav1.NamespaceDefault); err != nil {
			t.Fatal(err)
		}
		for _, ex := range exampleFiles(t) {
			t.Run(ex.rel, func(t *testing.T) {
				switch {
				case ex.rel == "vault-csi-provider-values.yaml":
					// Values for this chart: what they render must be valid.
					vals, err := readValuesFile(ex.path)
					if err != nil {
						t.Fatal(err)
					}
					dryRunAll(t, dry, decodeObjects(t, []byte(mustRender(t, releaseNamespace, vals).Manifest)))
				case ex.values:
					t.Skipf("values for another chart: checked in TestExamples")
				default:
					dryRunAll(t, dry, ex.objects(t))
				}
			})
		}
	})
}

// dryRunAll dry-runs every object, skipping (and saying so) the kinds the
// test bed has no CRD for.
func dryRunAll(t *testing.T, dry *dryRunner, objs objects) {
	t.Helper()
	if len(objs) == 0 {
		t.Fatal("no objects")
	}
	for _, u := range objs {
		if why := skipDryRun(u); why != "" {
			t.Logf("not dry-run: %s %s: %s", u.GetKind(), u.GetName(), why)
			continue
		}
		if err := dry.apply(t.Context(), u); err != nil {
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
