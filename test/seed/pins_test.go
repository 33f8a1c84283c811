package seed

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/okevault/vault-csi-provider/setup"
	"github.com/okevault/vault-csi-provider/test/testbed"
)

// TestSeedPinsWhatTheBedBuilds: the versions the setup examples pin and the
// ones the bed builds (test/tools/versions.env) are the same; changing one
// without the other fails here, not as an image the bed's node cannot find.
// It needs no cluster.
func TestSeedPinsWhatTheBedBuilds(t *testing.T) {
	root, err := testbed.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	v := map[string]string{}
	f, err := os.Open(filepath.Join(root, "test", "tools", "versions.env"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for sc := bufio.NewScanner(f); sc.Scan(); {
		if k, val, ok := strings.Cut(sc.Text(), "="); ok && !strings.HasPrefix(k, "#") {
			v[k] = val
		}
	}
	want := []string{
		"docker.io/hashicorp/vault:" + strings.TrimPrefix(v["VAULT_VERSION"], "v"),
		"ghcr.io/bank-vaults/bank-vaults:" + v["BANK_VAULTS_VERSION"],
		"tag: " + v["VAULT_OPERATOR_VERSION"],
		"version: " + strings.TrimPrefix(v["VAULT_OPERATOR_VERSION"], "v"),
		"version: " + v["ETCD_VERSION"],
	}
	for _, name := range []string{"seed.yaml", "oke-raft-kms.yaml"} {
		b, err := os.ReadFile(filepath.Join(root, "examples", "setup", name))
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range want {
			if w == "version: "+v["ETCD_VERSION"] && name != "seed.yaml" {
				continue // Raft: no etcd
			}
			if !strings.Contains(string(b), w) {
				t.Errorf("examples/setup/%s does not pin %q (test/tools/versions.env)", name, w)
			}
		}
	}
	if got := "v" + setup.DefaultOperatorChartVersion; got != v["VAULT_OPERATOR_VERSION"] {
		t.Errorf("setup's default operator chart %s, the bed builds the operator %s", got, v["VAULT_OPERATOR_VERSION"])
	}
}
