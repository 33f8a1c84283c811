package setup

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

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

// devUnsealKey is the unseal key a Vault dev server prints at start.
func devUnsealKey(t *testing.T, v *testbed.Vault) string {
	t.Helper()
	for _, l := range strings.Split(v.Logs(), "\n") {
		if _, k, ok := strings.Cut(l, "Unseal Key: "); ok {
			return strings.TrimSpace(k)
		}
	}
	t.Fatal("the dev server printed no unseal key")
	return ""
}

// TestTokenFromOperatorSecret: with no token given, configure takes the
// root token bank-vaults stored in the unseal Secret and revokes it after
// applying; a later run generates a short-lived root token from the unseal
// key there (Vault's generate-root flow, against a real Vault) and revokes
// it at its end. No token reaches the output.
func TestTokenFromOperatorSecret(t *testing.T) {
	b := startBed(t)
	ctx := t.Context()
	v := b.vault

	// As bank-vaults leaves it after init: a root token and the unseal keys.
	stored, err := v.Client.Auth().Token().CreateOrphanWithContext(ctx, &vaultapi.TokenCreateRequest{Policies: []string{"root"}})
	if err != nil {
		t.Fatal(err)
	}
	storedToken := stored.Auth.ClientToken
	if err := b.kube.CreateNamespace(ctx, "vault"); err != nil {
		t.Fatal(err)
	}
	_, err = b.kube.Client.CoreV1().Secrets("vault").Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "vault-unseal-keys"},
		Data:       map[string][]byte{keyRootToken: []byte(storedToken), "vault-unseal-0": []byte(devUnsealKey(t, v))},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	run := func(st Stages) string {
		t.Helper()
		r, out := b.runner(t, seedForBed(t))
		r.Vault.ClearToken()
		r.TokenFromCluster = true
		if _, err := r.Apply(ctx, st); err != nil {
			t.Fatalf("apply: %v\n%s", err, out)
		}
		if err := r.Close(ctx); err != nil {
			t.Fatalf("close: %v\n%s", err, out)
		}
		if strings.Contains(out.String(), storedToken) {
			t.Fatalf("the output shows the stored token:\n%s", out)
		}
		return out.String()
	}

	out := run(both)
	if !strings.Contains(out, "configure: revoked the root token bank-vaults stored in Secret vault/vault-unseal-keys") {
		t.Fatalf("first run does not revoke the stored root token:\n%s", out)
	}
	probe, err := v.Client.Clone()
	if err != nil {
		t.Fatal(err)
	}
	probe.SetToken(storedToken)
	if _, err := probe.Auth().Token().LookupSelfWithContext(ctx); err == nil {
		t.Fatal("the stored root token still works")
	}

	// A later run: the stored token is revoked, a short-lived one is made.
	out = run(Stages{Configure: true})
	for _, want := range []string{"vault: generated a root token from the keys in the Secret vault/vault-unseal-keys", "No changes", "vault: revoked the root token generated for this run"} {
		if !strings.Contains(out, want) {
			t.Errorf("second run lacks %q:\n%s", want, out)
		}
	}
	// Nothing is left behind: no generate-root attempt in progress, and of
	// the root-policy tokens only the dev server's own is valid.
	st, err := v.Client.Sys().GenerateRootStatusWithContext(ctx)
	if err != nil || st.Started {
		t.Fatalf("generate-root status: %+v, %v", st, err)
	}
	accessors, err := v.Client.Logical().ListWithContext(ctx, "auth/token/accessors")
	if err != nil {
		t.Fatal(err)
	}
	roots := 0
	for _, a := range accessors.Data["keys"].([]any) {
		s, err := v.Client.Auth().Token().LookupAccessorWithContext(ctx, a.(string))
		if err != nil {
			t.Fatal(err)
		}
		if pols, _ := s.Data["policies"].([]any); len(pols) == 1 && pols[0] == "root" {
			roots++
			t.Logf("valid root-policy token: %v", s.Data["display_name"])
		}
	}
	if roots != 1 {
		t.Errorf("%d valid root-policy tokens, want only the dev server's", roots)
	}
}

// TestDestroy against a real apiserver: destroy lists what deploy labelled
// for the setup and deletes it only with yes; what it did not make, the
// namespace and CRDs, and the operators' unseal Secret stay.
func TestDestroy(t *testing.T) {
	b := startBed(t)
	ctx := t.Context()
	f := seedForBed(t)
	r, out := b.runner(t, f)
	if _, err := r.Apply(ctx, Stages{Deploy: true}); err != nil {
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	// Not made by setup: a service account in its namespace, and the
	// Secret the operator would have made at init.
	if err := b.kube.CreateServiceAccount(ctx, "vault", "hand-made"); err != nil {
		t.Fatal(err)
	}
	_, err := b.kube.Client.CoreV1().Secrets("vault").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "vault-unseal-keys"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	out.Reset()
	sum, err := r.Destroy(ctx, false)
	if err != nil {
		t.Fatalf("destroy plan: %v\n%s", err, out)
	}
	t.Logf("destroy plan:\n%s", out)
	for _, want := range []string{
		"destroy: - Vault vault/vault",
		"destroy: - EtcdCluster vault/vault-etcd",
		"destroy: - ServiceAccount default/testapp",
		"destroy: kept Namespace vault",
		"destroy: kept CustomResourceDefinition vaults.vault.banzaicloud.com",
		"destroy: kept Secret vault/vault-unseal-keys",
		"Run again with --yes",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("destroy plan lacks %q", want)
		}
	}
	if strings.Contains(out.String(), "hand-made") {
		t.Error("destroy lists what it did not make")
	}
	if strings.Index(out.String(), "- Vault vault/vault") > strings.Index(out.String(), "- Deployment") {
		t.Error("custom resources are not deleted before the operators")
	}
	if _, err := b.kube.Client.CoreV1().ServiceAccounts("default").Get(ctx, "testapp", metav1.GetOptions{}); err != nil {
		t.Fatalf("the plan deleted something: %v", err)
	}

	out.Reset()
	if _, err := r.Destroy(ctx, true); err != nil {
		t.Fatalf("destroy: %v\n%s", err, out)
	}
	if _, err := b.kube.Client.CoreV1().ServiceAccounts("default").Get(ctx, "testapp", metav1.GetOptions{}); err == nil {
		t.Error("testapp's service account is still there")
	}
	for _, check := range []func() error{
		func() error {
			_, err := b.kube.Client.CoreV1().ServiceAccounts("vault").Get(ctx, "hand-made", metav1.GetOptions{})
			return err
		},
		func() error {
			_, err := b.kube.Client.CoreV1().Secrets("vault").Get(ctx, "vault-unseal-keys", metav1.GetOptions{})
			return err
		},
		func() error {
			_, err := b.kube.Client.CoreV1().Namespaces().Get(ctx, "vault", metav1.GetOptions{})
			return err
		},
	} {
		if err := check(); err != nil {
			t.Errorf("destroy deleted what it must keep: %v", err)
		}
	}
	out.Reset()
	if sum, err = r.Destroy(ctx, false); err != nil || sum.Deleted != 0 {
		t.Fatalf("after destroy: %v, %+v\n%s", err, sum, out)
	}
}

// TestPlanSealedVault: a plan against a sealed Vault says so, and names what
// unseals it, rather than passing on Vault's 503; a plan that also deploys
// counts configure as pending, as on a new cluster.
func TestPlanSealedVault(t *testing.T) {
	b := startBed(t)
	if err := b.vault.Client.Sys().SealWithContext(t.Context()); err != nil {
		t.Fatal(err)
	}
	r, _ := b.runner(t, seedForBed(t))
	_, err := r.Plan(t.Context(), Stages{Configure: true})
	if err == nil || !strings.Contains(err.Error(), "is sealed") || !strings.Contains(err.Error(), "kubectl -n vault get pods -L vault-sealed") {
		t.Fatalf("plan of a sealed Vault: %v; want it named sealed, with what to look at", err)
	}
	r, out := b.runner(t, seedForBed(t))
	if _, err := r.Plan(t.Context(), both); err != nil || !strings.Contains(out.String(), "configure: + everything declared") || !strings.Contains(out.String(), "is sealed") {
		t.Fatalf("plan of deploy and a sealed Vault: %v\n%s", err, out)
	}
}
