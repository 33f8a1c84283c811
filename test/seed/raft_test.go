package seed

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// testDestroyThenRaft: `destroy` removes what the seed's deploy
// made (a plan first, then --yes), keeping the data it lists; the user
// deletes that data with the commands destroy prints; then the Raft variant
// (examples/setup/oke-raft-kms.yaml with the operator's Kubernetes-Secret
// unseal instead of OCI KMS, and no storage class: the bed has no OCI block
// volumes) comes up from one apply, verifies, and serves the same pod.
func testDestroyThenRaft(t *testing.T) {
	c := bed.cluster

	out, code := setupCmd(t, 2*time.Minute, seedArgs("destroy")...)
	if code != 2 || !strings.Contains(out, "Vault vault/vault") || !strings.Contains(out, "EtcdCluster vault/vault-etcd") {
		t.Fatalf("destroy without --yes: exit %d, want 2 and a plan naming the Vault and the EtcdCluster", code)
	}
	if _, err := c.Client.AppsV1().Deployments(vaultNS).Get(t.Context(), "vault-operator", metav1.GetOptions{}); err != nil {
		t.Fatalf("destroy's plan deleted something: %v", err)
	}
	if out, code := setupCmd(t, 5*time.Minute, append(seedArgs("destroy"), "--yes")...); code != 0 {
		t.Fatalf("destroy --yes exited %d:\n%s", code, out)
	}
	eventually(t, 3*time.Minute, "the seed's pods gone", func() (bool, string) {
		left := append(pods(t, vaultNS, vaultSelector), pods(t, vaultNS, etcdSelector)...)
		left = append(left, pods(t, "etcd-operator-system", "")...)
		names := make([]string, len(left))
		for i, p := range left {
			names[i] = p.Name
		}
		return len(left) == 0, fmt.Sprint(names)
	})
	if out, code := setupCmd(t, 2*time.Minute, seedArgs("destroy")...); code != 0 || !strings.Contains(out, "Nothing to delete") {
		t.Errorf("destroy after destroy: exit %d, want 0 and nothing to delete", code)
	}
	// What destroy kept and listed: the unseal keys and the claims.
	if err := c.Client.CoreV1().Secrets(vaultNS).Delete(t.Context(), "vault-unseal-keys", metav1.DeleteOptions{}); err != nil {
		t.Errorf("the unseal keys destroy keeps: %v", err)
	}
	if err := c.Client.CoreV1().PersistentVolumeClaims(vaultNS).DeleteCollection(t.Context(), metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
		t.Fatal(err)
	}

	file := raftOnBed(t)
	out, code = setupCmd(t, 20*time.Minute, "apply", "-f", file, "--operator-chart", bed.chart)
	if code != 0 {
		t.Fatalf("apply of the Raft variant exited %d:\n%s", code, out)
	}
	checkVault(t, 3)
	applied := time.Now()
	if out, code := setupCmd(t, 5*time.Minute, "verify", "-f", file, "--operator-chart", bed.chart); code != 0 || strings.Contains(out, "FAIL") {
		t.Errorf("verify of the Raft variant exited %d", code)
	}
	if _, code := setupCmd(t, 5*time.Minute, "plan", "-f", file, "--operator-chart", bed.chart); code != 0 {
		t.Errorf("plan after apply of the Raft variant exited %d, want 0", code)
	}
	claims, err := c.Client.CoreV1().PersistentVolumeClaims(vaultNS).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(claims.Items) != 3 {
		t.Errorf("%d claims in %s, want one Raft volume per Vault pod", len(claims.Items), vaultNS)
	}
	// The provider installed for the seed reads from the new Vault: same
	// address, a new CA that the operator copies into the provider's
	// namespace and kubelet then swaps into its pods' mounted Secret (it
	// checks every sync period, about a minute). The provider trusts it from
	// the next mount on, without a restart: measured here, through the
	// socket, before a pod depends on it.
	probe := newGatedPod(t, appNS, appSA, "testapp")
	client := providerClient(t)
	var lastErr error
	eventually(t, 3*time.Minute, "a mount from the new Vault", func() (bool, string) {
		_, lastErr = client.Mount(t.Context(), probe.request(t))
		return lastErr == nil, fmt.Sprint(lastErr)
	})
	t.Logf("the provider mounted from the new Vault (new CA) %s after its apply, without a restart", time.Since(applied).Round(time.Second))
	if _, err := c.Client.CoreV1().Pods(appNS).Get(t.Context(), "testapp", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the seed's testapp pod is still there: %v", err)
	}
	pod := appPod(t, "testapp")
	for key, want := range seedSecret {
		if got := readFile(t, appNS, pod, "/mnt/secrets/"+key); got != want {
			t.Errorf("%s from the Raft Vault = %q, want %q", key, got, want)
		}
	}
	snapshotRestore(t, file)
}

// snapshotRestore: a snapshot of the Raft Vault, then a change (one more
// policy, from a copy of the file), then the snapshot restored: the change
// is gone, which `plan` of the original file (prune on) shows by exiting 0.
func snapshotRestore(t *testing.T, file string) {
	t.Helper()
	snap := filepath.Join(t.TempDir(), "vault.snap")
	if out, code := setupCmd(t, 5*time.Minute, "snapshot", "-f", file, "--operator-chart", bed.chart, "--snapshot", snap); code != 0 {
		t.Fatalf("snapshot exited %d:\n%s", code, out)
	}
	fi, err := os.Stat(snap)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 || fi.Size() == 0 {
		t.Errorf("snapshot file: mode %v, %d bytes; want 0600 and a snapshot", fi.Mode().Perm(), fi.Size())
	}

	later := editedSetup(t, file, func(spec map[string]any) {
		configure := spec["configure"].(map[string]any)
		configure["policies"] = append(configure["policies"].([]any), map[string]any{
			"name": "after-snapshot", "hcl": "path \"secret/data/later\" {\n  capabilities = [\"read\"]\n}\n",
		})
	})
	if out, code := setupCmd(t, 5*time.Minute, "configure", "-f", later, "--operator-chart", bed.chart); code != 0 {
		t.Fatalf("configure with one more policy exited %d:\n%s", code, out)
	}
	if out, code := setupCmd(t, 5*time.Minute, "plan", "-f", file, "--operator-chart", bed.chart); code != 2 || !strings.Contains(out, "after-snapshot") {
		t.Fatalf("plan of the original file after the change: exit %d, want 2 and the policy to prune", code)
	}
	if _, code := setupCmd(t, 5*time.Minute, "restore", "-f", file, "--operator-chart", bed.chart, "--snapshot", snap); code != 2 {
		t.Errorf("restore without --yes exited %d, want 2 (it only says what it would do)", code)
	}
	if out, code := setupCmd(t, 5*time.Minute, "restore", "-f", file, "--operator-chart", bed.chart, "--snapshot", snap, "--yes"); code != 0 {
		t.Fatalf("restore --yes exited %d:\n%s", code, out)
	}
	checkVault(t, 3)
	if _, code := setupCmd(t, 5*time.Minute, "plan", "-f", file, "--operator-chart", bed.chart); code != 0 {
		t.Errorf("plan after the restore exited %d, want 0: the policy made after the snapshot should be gone", code)
	}
}

// raftOnBed writes examples/setup/oke-raft-kms.yaml as the bed can run it:
// unsealed by the operator's Kubernetes Secret mode instead of OCI KMS, and
// volumes without the OCI storage class. Everything else is the example's.
func raftOnBed(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(bed.root, "examples", "setup")
	return editedSetup(t, filepath.Join(dir, "oke-raft-kms.yaml"), func(spec map[string]any) {
		v := spec["deploy"].(map[string]any)["vault"].(map[string]any)
		v["unseal"] = map[string]any{"type": "kubernetesSecret"}
		delete(v["storage"].(map[string]any)["raft"].(map[string]any), "storageClass")
		// The copy lives elsewhere: its policy files are named from the example's folder.
		for _, p := range spec["configure"].(map[string]any)["policies"].([]any) {
			if pf, ok := p.(map[string]any)["file"].(string); ok {
				p.(map[string]any)["file"] = filepath.Join(dir, pf)
			}
		}
	})
}
