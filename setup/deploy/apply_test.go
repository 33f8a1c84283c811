package deploy_test

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/okevault/vault-csi-provider/setup"
	"github.com/okevault/vault-csi-provider/setup/deploy"
	"github.com/okevault/vault-csi-provider/test/testbed"
)

func prepared(t *testing.T, example string) *setup.Prepared {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/bank-vaults/vault-operator").Output()
	if err != nil {
		t.Fatal(err)
	}
	f, err := setup.Load(filepath.Join("..", "..", "examples", "setup", example))
	if err != nil {
		t.Fatal(err)
	}
	p, err := setup.Prepare(f, setup.Overrides{
		VaultAddr:     "https://127.0.0.1:8200",
		OperatorChart: filepath.Join(strings.TrimSpace(string(out)), "deploy", "charts", "vault-operator"),
	}, func(string) string { return "x" })
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestApplyToAPIServer server-side applies both examples' objects to a real
// kube-apiserver: the CRDs from the bank-vaults module and the etcd operator
// manifest are installed, and the Vault and EtcdCluster objects must pass
// their real schemas. A second apply and a plan find nothing to change.
func TestApplyToAPIServer(t *testing.T) {
	kube := testbed.StartKube(t)
	ctx := t.Context()
	a, err := deploy.NewApplier(kube.RESTConfig, setup.FieldManager)
	if err != nil {
		t.Fatal(err)
	}
	for _, example := range []string{"seed.yaml", "oke-raft-kms.yaml"} {
		t.Run(example, func(t *testing.T) {
			objs, err := deploy.Render(ctx, prepared(t, example).Deploy)
			if err != nil {
				t.Fatal(err)
			}
			count := map[deploy.Op]int{}
			if err := a.Apply(ctx, objs, func(r deploy.Result) { count[r.Op]++ }); err != nil {
				t.Fatal(err)
			}
			// The second example reuses the first's namespace and names.
			if count[deploy.Created]+count[deploy.Updated] == 0 {
				t.Fatalf("first apply changed nothing: %v", count)
			}
			var changed []string
			if err := a.Apply(ctx, objs, func(r deploy.Result) {
				if r.Op != deploy.Unchanged {
					changed = append(changed, r.Object)
				}
			}); err != nil {
				t.Fatal(err)
			}
			if len(changed) > 0 {
				t.Errorf("second apply changed %v", changed)
			}
			results, err := a.Plan(ctx, objs)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range results {
				if r.Op != deploy.Unchanged {
					t.Errorf("plan after apply: %s %s %v", r.Op, r.Object, r.Fields)
				}
			}
		})
	}

	// The Vault object is stored as rendered, and owned by our field manager.
	v, err := kube.Dynamic.Resource(schema.GroupVersionResource{Group: "vault.banzaicloud.com", Version: "v1alpha1", Resource: "vaults"}).
		Namespace("vault").Get(ctx, "vault", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	managers := map[string]bool{}
	for _, mf := range v.GetManagedFields() {
		managers[mf.Manager] = true
	}
	if !managers[setup.FieldManager] {
		t.Errorf("Vault object managers %v lack %s", managers, setup.FieldManager)
	}
}

// TestPrune: an object the render no longer holds is deleted; what another
// setup or no setup made is not.
func TestPrune(t *testing.T) {
	kube := testbed.StartKube(t)
	ctx := t.Context()
	a, err := deploy.NewApplier(kube.RESTConfig, setup.FieldManager)
	if err != nil {
		t.Fatal(err)
	}
	p := prepared(t, "seed.yaml")
	objs, err := deploy.Render(ctx, p.Deploy)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Apply(ctx, objs, nil); err != nil {
		t.Fatal(err)
	}
	if err := kube.CreateServiceAccount(ctx, "default", "hand-made"); err != nil {
		t.Fatal(err)
	}
	if results, _, err := a.PlanPrune(ctx, p.Name, objs); err != nil || len(results) != 0 {
		t.Fatalf("prune right after apply: %v %v", results, err)
	}

	p.Deploy.ServiceAccounts = nil // the file no longer declares testapp
	objs, err = deploy.Render(ctx, p.Deploy)
	if err != nil {
		t.Fatal(err)
	}
	results, gone, err := a.PlanPrune(ctx, p.Name, objs)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 1 || results[0].Object != "ServiceAccount default/testapp" {
		t.Fatalf("prune plan: %v", results)
	}
	if err := a.Prune(ctx, gone, nil); err != nil {
		t.Fatal(err)
	}
	sas, err := kube.Client.CoreV1().ServiceAccounts("default").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, sa := range sas.Items {
		names = append(names, sa.Name)
	}
	if strings.Join(names, ",") != "hand-made" {
		t.Fatalf("service accounts left in default: %v", names)
	}
}
