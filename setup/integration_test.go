package setup

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/okevault/vault-csi-provider/test/testbed"
)

// bed is the seed scenario on the test bed: a real kube-apiserver and a
// real Vault dev server standing in for the cluster the operator would make.
type bed struct {
	kube  *testbed.Kube
	vault *testbed.Vault
	ov    Overrides
}

func startBed(t *testing.T) *bed {
	t.Helper()
	kube := testbed.StartKube(t)
	vault := testbed.StartVault(t)
	ca := filepath.Join(t.TempDir(), "kube-ca.pem")
	if err := os.WriteFile(ca, kube.CAPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	// No controller-manager runs, so no "default" service account exists:
	// verify's outsider must be made by hand.
	if err := kube.CreateServiceAccount(t.Context(), "default", "default"); err != nil {
		t.Fatal(err)
	}
	return &bed{kube: kube, vault: vault, ov: Overrides{
		VaultAddr:        vault.Addr,
		KubernetesHost:   kube.Host,
		KubernetesCAFile: ca,
		OperatorChart:    operatorChartDir(t),
	}}
}

// seedForBed is the seed example with one change for a Vault outside the
// cluster: a reviewer service account whose token Vault calls TokenReview with.
func seedForBed(t *testing.T) *File {
	t.Helper()
	f := seedFile(t)
	f.Spec.Configure.Auth[0].Kubernetes.Reviewer = &Reviewer{ServiceAccount: &ServiceAccountRef{Namespace: "kube-system", Name: "vault-tokenreview"}}
	return f
}

func (b *bed) runner(t *testing.T, f *File) (*Runner, *bytes.Buffer) {
	t.Helper()
	p, err := Prepare(f, b.ov, seedEnv)
	if err != nil {
		t.Fatal(err)
	}
	vc, err := NewVaultClient(p.VaultAddr, b.vault.RootToken, "", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	out := &bytes.Buffer{}
	return &Runner{Prepared: p, Kube: b.kube.RESTConfig, Vault: vc, Out: out, WaitVault: 10 * time.Second}, out
}

var both = Stages{Deploy: true, Configure: true}

// TestSeedScenario applies the seed example to a real apiserver (operator
// chart, CRDs, etcd operator, Vault and EtcdCluster objects accepted by the
// real CRD schemas) and a real Vault, verifies it, re-applies with no
// change, and repairs a hand-made drift.
func TestSeedScenario(t *testing.T) {
	b := startBed(t)
	ctx := t.Context()
	f := seedForBed(t)

	r, out := b.runner(t, f)
	sum, err := r.Plan(ctx, both)
	if err != nil {
		t.Fatalf("plan: %v\n%s", err, out)
	}
	if sum.Created == 0 {
		t.Fatalf("plan of an empty cluster creates nothing:\n%s", out)
	}
	out.Reset()
	if _, err := r.Apply(ctx, both); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	t.Logf("first apply:\n%s", out)
	for _, want := range []string{
		"deploy: + CustomResourceDefinition vaults.vault.banzaicloud.com (created)",
		"deploy: + Vault vault/vault (created)",
		"deploy: + EtcdCluster vault/vault-etcd (created)",
		"configure: + policy testapp-kv-crud",
		"configure: + role auth/kubernetes/role/testapp",
		"configure: + secret secret/testapp",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("apply output lacks %q", want)
		}
	}
	if strings.Contains(out.String(), "s3cr3t-value") {
		t.Error("apply output shows a secret value")
	}

	out.Reset()
	failed, err := r.Verify(ctx)
	if err != nil || failed != 0 {
		t.Fatalf("verify: %d failed, %v\n%s", failed, err, out)
	}
	for _, want := range []string{"login as default/testapp", "policies testapp-kv-crud", "read secret/data/testapp", "write secret/data/other denied", "login as default/default denied"} {
		if !hasLine(out.String(), "PASS", want) {
			t.Errorf("verify output lacks a PASS line with %q:\n%s", want, out)
		}
	}

	// A second apply changes nothing and says so.
	r, out = b.runner(t, seedForBed(t))
	sum, err = r.Apply(ctx, both)
	if err != nil {
		t.Fatalf("second apply: %v\n%s", err, out)
	}
	if sum.Changes() != 0 || !strings.Contains(out.String(), "No changes") {
		t.Fatalf("second apply changed %d things:\n%s", sum.Changes(), out)
	}

	// Drift: a policy edited by hand shows in plan and apply repairs it.
	if err := b.vault.Client.Sys().PutPolicyWithContext(ctx, "testapp-kv-crud", `path "secret/*" { capabilities = ["read"] }`); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	sum, err = r.Plan(ctx, Stages{Configure: true})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Updated != 1 || !strings.Contains(out.String(), `configure: ~ policy testapp-kv-crud`) || !strings.Contains(out.String(), `- path "secret/*" { capabilities = ["read"] }`) {
		t.Fatalf("plan does not show the drift:\n%s", out)
	}
	out.Reset()
	if sum, err = r.Apply(ctx, Stages{Configure: true}); err != nil || sum.Updated != 1 {
		t.Fatalf("repair: %v, %+v\n%s", err, sum, out)
	}
	out.Reset()
	if sum, err = r.Plan(ctx, both); err != nil || sum.Changes() != 0 {
		t.Fatalf("after repair: %v, %+v\n%s", err, sum, out)
	}
}

// TestBadFileWritesNothing: a file that fails validation never reaches
// Vault, and an unreachable Vault fails the plan before any write.
func TestBadFileWritesNothing(t *testing.T) {
	b := startBed(t)
	ctx := t.Context()

	f := seedForBed(t)
	f.Spec.Configure.Policies[0].HCL += "path {"
	if _, err := Prepare(f, b.ov, seedEnv); err == nil || !strings.Contains(err.Error(), "spec.configure.policies[0]") {
		t.Fatalf("bad HCL: %v", err)
	}
	pols, err := b.vault.Client.Sys().ListPoliciesWithContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pols {
		if p == "testapp-kv-crud" {
			t.Fatal("a policy was written")
		}
	}

	// Unreachable Vault: a closed port.
	f = seedFile(t)
	f.Spec.Deploy = nil
	r, out := b.runner(t, f)
	down, err := NewVaultClient("http://127.0.0.1:1", "x", "", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	r.Vault = down
	_, err = r.Apply(ctx, Stages{Configure: true})
	if err == nil || !strings.Contains(err.Error(), "configure: plan against Vault at http://127.0.0.1:1") {
		t.Fatalf("unreachable Vault: %v\n%s", err, out)
	}
}

// hasLine reports whether a line of s starts with prefix and contains sub.
func hasLine(s, prefix, sub string) bool {
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) && strings.Contains(l, sub) {
			return true
		}
	}
	return false
}

// TestPlanNewCluster: on a cluster where deploy has not run, plan cannot
// reach the Vault it will create; it reports configure as pending, not an error.
func TestPlanNewCluster(t *testing.T) {
	b := startBed(t)
	r, out := b.runner(t, seedForBed(t))
	down, err := NewVaultClient("http://127.0.0.1:1", "x", "", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	r.Vault = down
	sum, err := r.Plan(t.Context(), both)
	if err != nil || sum.Changes() == 0 || !strings.Contains(out.String(), "configure: + everything declared") {
		t.Fatalf("plan: %v %+v\n%s", err, sum, out)
	}
}
