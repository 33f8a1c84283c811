package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestBench runs the whole program in-process on a tiny workload against this
// repository's provider and checks the shape of the results and the Vault
// work counted — never durations.
func TestBench(t *testing.T) {
	if testing.Short() {
		t.Skip("starts kube-apiserver, Vault and the provider")
	}
	const sa, pods = 2, 6
	res := runBench(t, "-sas=2", "-pods=6", "-objects=3", "-secrets=2", "-concurrency=3", "-rounds=2")

	var names []string
	for _, ph := range res.Phases {
		names = append(names, ph.Name)
	}
	if diff := cmp.Diff([]string{"storm", "rotation-1", "rotation-2", "floor"}, names); diff != "" {
		t.Fatalf("phases (-want +got):\n%s", diff)
	}
	if res.Provider.RuntimeName != "vault-csi-provider" {
		t.Errorf("provider runtime name = %q, want vault-csi-provider", res.Provider.RuntimeName)
	}
	// Objects 0 and 2 read the service account's own secret, object 1 a shared one.
	wantPlan := PlanInfo{
		ServiceAccounts: sa, Pods: pods, ObjectsPerMount: 3, PathsPerMount: 2, SharedSecrets: 2, OwnSecrets: sa,
		SecretBytes: 1000, FloorLogins: sa, FloorReads: 2 * sa, MountReads: 2 * pods,
	}
	if diff := cmp.Diff(wantPlan, res.Plan); diff != "" {
		t.Errorf("plan (-want +got):\n%s", diff)
	}

	for _, ph := range res.Phases {
		if len(ph.Errors) > 0 {
			t.Errorf("%s: errors %v: %v", ph.Name, ph.Errors, ph.ErrorSamples)
		}
		if ph.Mounts != pods || ph.Calls == 0 || ph.Vault.Reads == 0 {
			t.Errorf("%s: mounts %d, calls %d, reads %d; want %d mounts and some calls and reads", ph.Name, ph.Mounts, ph.Calls, ph.Vault.Reads, pods)
		}
		if ph.Vault.Other != 0 {
			t.Errorf("%s: other Vault requests %v, want none", ph.Name, ph.Vault.OtherPaths)
		}
		if ph.TokenReviews == nil {
			t.Errorf("%s: TokenReviews not counted", ph.Name)
		}
	}

	storm, floor := res.Phases[0], res.Phases[3]
	// Logins are cached per identity: at most one per service account.
	if storm.Vault.Logins < 1 || storm.Vault.Logins > sa {
		t.Errorf("storm: %d logins, want 1..%d", storm.Vault.Logins, sa)
	}
	if storm.TokenReviews != nil && (*storm.TokenReviews < 1 || *storm.TokenReviews > sa) {
		t.Errorf("storm: %d TokenReviews, want 1..%d", *storm.TokenReviews, sa)
	}
	// Each mount reads each of its distinct paths at most once.
	if storm.Vault.Reads > res.Plan.MountReads {
		t.Errorf("storm: %d reads, want at most %d", storm.Vault.Reads, res.Plan.MountReads)
	}
	// A rotation pass within the Vault token's TTL logs in no more.
	for _, ph := range res.Phases[1:3] {
		if ph.Vault.Logins != 0 {
			t.Errorf("%s: %d logins, want 0", ph.Name, ph.Vault.Logins)
		}
		if ph.TokenReviews != nil && *ph.TokenReviews != 0 {
			t.Errorf("%s: %d TokenReviews, want 0", ph.Name, *ph.TokenReviews)
		}
		if ph.Vault.Reads > res.Plan.MountReads {
			t.Errorf("%s: %d reads, want at most %d", ph.Name, ph.Vault.Reads, res.Plan.MountReads)
		}
	}
	// The floor is the benchmark's own work: Vault must count exactly that.
	if floor.Vault.Logins != sa || floor.Vault.Reads != res.Plan.FloorReads {
		t.Errorf("floor: %d logins and %d reads, want %d and %d", floor.Vault.Logins, floor.Vault.Reads, sa, res.Plan.FloorReads)
	}
	if floor.Calls != sa+res.Plan.FloorReads {
		t.Errorf("floor: %d calls, want %d", floor.Calls, sa+res.Plan.FloorReads)
	}
}

// runBench runs the benchmark with args and returns its JSON results.
func runBench(t *testing.T, args ...string) Results {
	t.Helper()
	out := filepath.Join(t.TempDir(), "results.json")
	var table bytes.Buffer
	if err := run(t.Context(), append(args, "-json="+out), &table, t.Output()); err != nil {
		t.Fatalf("run: %v", err)
	}
	t.Logf("\n%s", table.String())
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var res Results
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatalf("results JSON: %v", err)
	}
	return res
}

// TestBenchDynamic runs -dynamic: each pod's certificate is issued once in
// the storm, and a rotation pass issues none (it looks the leases up).
func TestBenchDynamic(t *testing.T) {
	if testing.Short() {
		t.Skip("starts kube-apiserver, Vault and the provider")
	}
	const pods = 4
	res := runBench(t, "-sas=2", "-pods=4", "-objects=2", "-secrets=1", "-concurrency=2", "-rounds=1", "-dynamic")
	storm, rotation := res.Phases[0], res.Phases[1]
	for _, ph := range []Phase{storm, rotation} {
		if len(ph.Errors) > 0 {
			t.Errorf("%s: errors %v: %v", ph.Name, ph.Errors, ph.ErrorSamples)
		}
	}
	if storm.Vault.Leases != pods {
		t.Errorf("storm: %d leases, want %d (one certificate per pod)", storm.Vault.Leases, pods)
	}
	if rotation.Vault.Leases != 0 || rotation.Vault.OtherPaths["sys/leases/lookup"] != pods {
		t.Errorf("rotation: %d leases and other requests %v; want 0 leases and %d lookups", rotation.Vault.Leases, rotation.Vault.OtherPaths, pods)
	}
}
