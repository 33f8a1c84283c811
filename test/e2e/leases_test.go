package e2e

import (
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Dynamic secrets through the real driver: a PKI role with generate_lease
// makes every certificate a lease Vault counts. The driver's rotation polls
// (every rotationPoll) re-mount; the provider must not issue again.
const (
	leasesSA   = "leases"
	leasesRole = "e2e-leases"
	leasesPKI  = "pki/issue/e2e-leased"
)

func configureLeases(t *testing.T) {
	t.Helper()
	ctx := t.Context()
	v := bed.vault.Client
	if _, err := v.Logical().WriteWithContext(ctx, "pki/roles/e2e-leased", map[string]any{
		"allowed_domains": "example.com", "allow_subdomains": true, "max_ttl": "1h", "generate_lease": true,
	}); err != nil {
		t.Fatal(err)
	}
	if err := v.Sys().PutPolicyWithContext(ctx, leasesRole, `
path "`+leasesPKI+`" { capabilities = ["update"] }
path "sys/leases/revoke" { capabilities = ["update"] }
`); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Logical().WriteWithContext(ctx, "auth/kubernetes/role/"+leasesRole, map[string]any{
		"bound_service_account_names": []string{leasesSA}, "bound_service_account_namespaces": []string{e2eNS},
		"audience": "vault", "token_policies": []string{leasesRole}, "token_ttl": "1h",
	}); err != nil {
		t.Fatal(err)
	}
}

// liveLeases counts the leases Vault holds for the role.
func liveLeases(t *testing.T) int {
	t.Helper()
	n, err := bed.vault.LiveLeases(t.Context(), leasesPKI)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestRotationCreatesNoLeases(t *testing.T) {
	shared(t)
	configureLeases(t)
	applyClass(t, e2eNS, "leased", map[string]string{"roleName": leasesRole, "objects": `
- {objectName: tls.crt, secretPath: ` + leasesPKI + `, method: PUT, secretArgs: {common_name: e2e.example.com, ttl: 30m}, secretKey: certificate}
- {objectName: tls.key, secretPath: ` + leasesPKI + `, method: PUT, secretArgs: {common_name: e2e.example.com, ttl: 30m}, secretKey: private_key}
`})
	pod := podFor(t, e2eNS, leasesSA, "leased")
	leasesBefore, issuesBefore := liveLeases(t), auditCount(t, leasesPKI)
	reusedBefore := metric(t, "vault_csi_provider_dynamic_secrets_reused_total")
	vol := mustPublish(t, pod, "leased")
	first := files(t, vol)
	versions := objectVersions(t, pod, "leased")
	afterMount := liveLeases(t)
	if afterMount-leasesBefore != 1 {
		t.Fatalf("%d leases from the first mount, want 1", afterMount-leasesBefore)
	}

	// Each rotation poll that is served from memory looks its lease up once;
	// wait for three polls rather than for a time.
	const polls = 3
	lookups := auditCount(t, "sys/leases/lookup")
	eventually(t, 10*rotationPoll*polls, fmt.Sprintf("%d rotation polls", polls), func() (bool, string) {
		n := auditCount(t, "sys/leases/lookup") - lookups
		return n >= polls, fmt.Sprintf("%d lease lookups", n)
	})
	created := liveLeases(t) - afterMount
	t.Logf("leases created by %d rotation passes: %d; issues: %d", polls, created, auditCount(t, leasesPKI)-issuesBefore)
	if created != 0 || auditCount(t, leasesPKI)-issuesBefore != 1 {
		t.Errorf("%d leases created and %d issues by rotation, want 0 and 1 (the first mount's)", created, auditCount(t, leasesPKI)-issuesBefore)
	}
	if now := files(t, vol); now["tls.crt"] != first["tls.crt"] || now["tls.key"] != first["tls.key"] {
		t.Error("rotation replaced the certificate")
	}
	// The metric operators watch says the same: polls were served from memory.
	if reused := metric(t, "vault_csi_provider_dynamic_secrets_reused_total") - reusedBefore; reused < polls {
		t.Errorf("dynamic_secrets_reused_total grew by %v over %d polls", reused, polls)
	}
	if now := objectVersions(t, pod, "leased"); now["tls.crt"] != versions["tls.crt"] || now["tls.crt"] == "" {
		t.Errorf("object version moved without a change: %v -> %v", versions, now)
	}

	// A lease revoked behind the provider's back: the next poll issues a new
	// certificate and the driver writes it.
	if err := bed.vault.Client.Sys().RevokePrefixWithContext(t.Context(), leasesPKI); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*rotationPoll, "a new certificate after the revocation", func() (bool, string) {
		f := files(t, vol)
		return f["tls.crt"] != first["tls.crt"] && f["tls.crt"] != "", "still the revoked certificate"
	})
}

// TestPodDeleteRevokesLeases: the bed's provider runs with
// -revoke-on-pod-delete on the driver's node; deleting a pod revokes its
// certificate in Vault.
func TestPodDeleteRevokesLeases(t *testing.T) {
	shared(t)
	configureLeases(t)
	applyClass(t, e2eNS, "leased-deleted", map[string]string{"roleName": leasesRole, "objects": `
- {objectName: tls.crt, secretPath: ` + leasesPKI + `, method: PUT, secretArgs: {common_name: deleted.example.com, ttl: 30m}, secretKey: certificate}
`})
	pod := podFor(t, e2eNS, leasesSA, "leased-deleted")
	before := liveLeases(t)
	mustPublish(t, pod, "leased-deleted")
	if n := liveLeases(t) - before; n != 1 {
		t.Fatalf("%d leases after the mount, want 1", n)
	}
	zero := int64(0)
	if err := bed.kube.Client.CoreV1().Pods(e2eNS).Delete(t.Context(), pod.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the deleted pod's lease revoked", func() (bool, string) {
		n := liveLeases(t) - before
		return n == 0, fmt.Sprintf("%d leases", n)
	})
}
