package setup

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/okevault/vault-csi-provider/setup/deploy"
	"github.com/okevault/vault-csi-provider/test/testbed"
)

// TestOCIKMSConfigVaultParses gives the Vault configuration that deploy
// renders for examples/setup/oke-raft-kms.yaml to Vault's own checker
// (`vault operator diagnose`): the Vault CR's schema checks nothing inside
// config. Without OCI the seal cannot be reached, so the check is that Vault
// parses the file and gets as far as building the OCI KMS client from the
// stanza (it fails on credentials, not on a missing or misspelled key).
// Diagnose runs in a network namespace of its own with no interface up: the
// OCI SDK would otherwise ask the instance metadata service.
func TestOCIKMSConfigVaultParses(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real Vault binary")
	}
	vault, err := testbed.Bin("vault")
	if err != nil {
		t.Skip(err)
	}
	if _, err := exec.LookPath("unshare"); err != nil || os.Geteuid() != 0 {
		t.Skip("needs root and unshare for an isolated network namespace")
	}
	f, err := Load(filepath.Join("..", "examples", "setup", "oke-raft-kms.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := Prepare(f, Overrides{VaultAddr: "https://127.0.0.1:8200", OperatorChart: operatorChartDir(t)}, seedEnv)
	if err != nil {
		t.Fatal(err)
	}
	v, err := deploy.VaultObject(p.Deploy)
	if err != nil {
		t.Fatal(err)
	}
	// What bank-vaults' config template would do on the pod, and paths of
	// this test's own.
	dir := t.TempDir()
	raw := strings.ReplaceAll(string(v.Spec.Config.Raw), "${.Env.POD_NAME}", "vault-0")
	var config map[string]any
	if err := json.Unmarshal([]byte(raw), &config); err != nil {
		t.Fatal(err)
	}
	if _, ok := config["seal"].(map[string]any)["ocikms"]; !ok {
		t.Fatalf("rendered config has no ocikms seal: %s", raw)
	}
	if raft, ok := config["storage"].(map[string]any)["raft"].(map[string]any); ok {
		raft["path"] = filepath.Join(dir, "raft")
		if err := os.Mkdir(raft["path"].(string), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	b, err := json.Marshal(config)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "vault.json")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}

	cmd := exec.CommandContext(t.Context(), "unshare", "--net", vault, "operator", "diagnose", "-config="+file, "-format=json")
	cmd.Env = append(os.Environ(), "HOME="+dir)
	out, _ := cmd.Output() // diagnose exits non-zero: the seal cannot be reached here
	type check struct {
		Name, Status, Message string
		Children              []check
	}
	var report check
	if err := json.Unmarshal(out, &report); err != nil {
		t.Fatalf("diagnose output: %v\n%s", err, out)
	}
	found := map[string]check{}
	var walk func(c check)
	walk = func(c check) {
		found[c.Name] = c
		for _, ch := range c.Children {
			walk(ch)
		}
	}
	walk(report)
	if c := found["Parse Configuration"]; c.Status != "ok" {
		t.Errorf("Vault's configuration parser: %s %s", c.Status, c.Message)
	}
	seal := found["Create Vault Server Configuration Seals"]
	t.Logf("seal check: %s: %s", seal.Status, seal.Message)
	if !strings.Contains(seal.Message, "OCI KMS client") || !strings.Contains(seal.Message, "configuration provider") {
		t.Errorf("the ocikms stanza did not reach the OCI KMS client's credentials: %q", seal.Message)
	}
}
