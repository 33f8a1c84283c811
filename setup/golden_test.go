package setup

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"

	"github.com/okevault/vault-csi-provider/setup/deploy"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// operatorChartDir is the vault-operator chart shipped in the Go module
// (the same chart as the pinned oci:// release, without network).
func operatorChartDir(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/bank-vaults/vault-operator").Output()
	if err != nil {
		t.Fatalf("locate the vault-operator module: %v", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "deploy", "charts", "vault-operator")
}

// TestRenderGolden renders the examples' Kubernetes objects and their Vault
// configuration and compares them with testdata/*.golden (-update rewrites).
// CRDs are listed by name only: they are the upstream files, unchanged.
func TestRenderGolden(t *testing.T) {
	for _, name := range []string{"seed", "oke-raft-kms"} {
		t.Run(name, func(t *testing.T) {
			f, err := Load(filepath.Join("..", "examples", "setup", name+".yaml"))
			if err != nil {
				t.Fatal(err)
			}
			p, err := Prepare(f, Overrides{VaultAddr: "https://127.0.0.1:8200", OperatorChart: operatorChartDir(t)}, seedEnv)
			if err != nil {
				t.Fatal(err)
			}
			objs, err := deploy.Render(t.Context(), p.Deploy)
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			for _, o := range objs {
				if o.GetKind() == "CustomResourceDefinition" {
					fmt.Fprintf(&buf, "# CustomResourceDefinition %s (upstream, unchanged)\n---\n", o.GetName())
					continue
				}
				b, err := yaml.Marshal(o.Object)
				if err != nil {
					t.Fatal(err)
				}
				buf.Write(b)
				buf.WriteString("---\n")
			}
			golden(t, filepath.Join("testdata", name+"-deploy.golden.yaml"), buf.Bytes())

			// Secret values are Sensitive: the golden file shows REDACTED.
			vc, err := json.MarshalIndent(redactedDesired(p), "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(vc, []byte("s3cr3t-value")) {
				t.Fatal("rendered configuration shows a secret value")
			}
			golden(t, filepath.Join("testdata", name+"-vault.golden.json"), append(vc, '\n'))
		})
	}
}

// redactedDesired is the desired Vault configuration with secret values
// replaced by their String form (REDACTED).
func redactedDesired(p *Prepared) any {
	type secret struct {
		Path string
		Keys map[string]string
	}
	var secrets []secret
	for _, s := range p.Vault.Secrets {
		keys := map[string]string{}
		for k, v := range s.Data {
			keys[k] = v.String()
		}
		secrets = append(secrets, secret{Path: s.Mount + "/" + s.Path, Keys: keys})
	}
	return map[string]any{
		"policies": p.Vault.Policies,
		"mounts":   p.Vault.Mounts,
		"auth":     p.Vault.Auth,
		"secrets":  secrets,
		"prune":    p.Vault.Prune,
		"probes":   p.Probes,
	}
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if d := cmp.Diff(string(want), string(got)); d != "" {
		t.Errorf("%s differs (-want +got; -update to accept):\n%s", path, d)
	}
}
