package seed

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// The seed's secret values, given to setup as the file asks ($TESTAPP_*).
var seedSecret = map[string]string{"username": "seed-user", "password": "seed-pass-Ω"}

// setupCmd runs vault-oke-setup from the module root, as docs/setup.md does,
// with the bed's kubeconfig and the seed's variables; it returns the output
// and the exit code.
func setupCmd(t *testing.T, timeout time.Duration, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bed.setupBin, args...)
	cmd.Dir = bed.root
	cmd.Env = append(os.Environ(), "KUBECONFIG="+bed.cluster.KubeconfigPath,
		"TESTAPP_USERNAME="+seedSecret["username"], "TESTAPP_PASSWORD="+seedSecret["password"])
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	t.Logf("$ vault-oke-setup %s  (%s)\n%s", strings.Join(args, " "), time.Since(start).Round(time.Second), out.String())
	var exit *exec.ExitError
	switch {
	case err == nil:
		return out.String(), 0
	case errors.As(err, &exit):
		return out.String(), exit.ExitCode()
	default:
		t.Fatalf("vault-oke-setup %s: %v", args[0], err)
		return "", -1
	}
}

// seedFile is the seed with the operator chart from the pinned module.
func seedArgs(cmd string) []string {
	return []string{cmd, "-f", "examples/setup/seed.yaml", "--operator-chart", bed.chart}
}

// TestSeed runs the user's scenario, then its faults, then destroys it and
// brings up the Raft variant: in that order, on one cluster, each step on
// what the one before left.
func TestSeed(t *testing.T) {
	shared(t)
	steps := []struct {
		name string
		run  func(*testing.T)
	}{
		{"Scenario", testScenario},
		{"VaultFailover", testVaultFailover},
		{"EtcdMemberLoss", testEtcdMemberLoss},
		{"DestroyThenRaft", testDestroyThenRaft},
	}
	for _, s := range steps {
		if !t.Run(s.name, s.run) && s.name == "Scenario" {
			return // the rest needs the scenario
		}
	}
}

// testScenario: one apply takes the empty cluster to a verified HA Vault
// on etcd; a second changes nothing; the provider's chart, installed as the
// docs say, mounts the seed's secret into the testapp pod.
func testScenario(t *testing.T) {
	if out, code := setupCmd(t, 20*time.Minute, seedArgs("apply")...); code != 0 {
		t.Fatalf("apply exited %d:\n%s", code, out)
	}
	checkOperators(t)
	checkEtcd(t, 3)
	checkVault(t, 3)
	checkOperatorRBAC(t)

	out, code := setupCmd(t, 5*time.Minute, seedArgs("verify")...)
	if code != 0 || strings.Contains(out, "FAIL") || !strings.Contains(out, "PASS") {
		t.Errorf("verify exited %d", code)
	}
	if _, code := setupCmd(t, 5*time.Minute, seedArgs("plan")...); code != 0 {
		t.Errorf("plan after apply exited %d, want 0 (nothing to change)", code)
	}

	installProvider(t)
	pod := appPod(t, "testapp")
	for key, want := range seedSecret {
		if got := readFile(t, appNS, pod, "/mnt/secrets/"+key); got != want {
			t.Errorf("%s in the pod = %q, want %q", key, got, want)
		}
	}
}
