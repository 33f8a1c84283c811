package migration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/okevault/vault-csi-provider/test/testbed"
)

// docPath is the guide the test follows, from the module root.
const docPath = "docs/migration.md"

// docBlock names a fenced sh block of the guide by a line it contains.
type docBlock struct {
	name, marker string
}

// The blocks the test runs, in the guide's order.
var (
	blockAudiences = docBlock{"the audience inventory (before the switch, 1)", "kubectl get csidriver secrets-store.csi.k8s.io"}
	blockAddresses = docBlock{"the address inventory (before the switch, 2)", ".vaultTLSClientCertPath"}
	blockNamespace = docBlock{"the namespace (before the switch, 5)", "kubectl create namespace vault-csi-provider"}
	blockSwitch    = docBlock{"the switch", "csi.enabled=false"}
	blockRollback  = docBlock{"the rollback", "helm uninstall vault-csi-provider"}
)

// fencedSh returns the guide's fenced sh blocks, each dedented by its
// fence's indentation (blocks inside list items are indented).
func fencedSh(md string) []string {
	var blocks []string
	var cur []string
	indent, open := "", false
	for _, line := range strings.Split(md, "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case !open && strings.HasPrefix(trimmed, "```sh"):
			open, cur = true, nil
			indent = line[:len(line)-len(strings.TrimLeft(line, " \t"))]
		case open && trimmed == "```":
			open = false
			blocks = append(blocks, strings.Join(cur, "\n")+"\n")
		case open:
			cur = append(cur, strings.TrimPrefix(line, indent))
		}
	}
	return blocks
}

// docCommands reads the guide's block that contains b.marker; exactly one
// must.
func docCommands(t *testing.T, b docBlock) string {
	t.Helper()
	root, err := testbed.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(root, docPath))
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, block := range fencedSh(string(md)) {
		if strings.Contains(block, b.marker) {
			found = append(found, block)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s: %d fenced sh blocks contain %q, want 1 (the test runs the guide's own commands)", docPath, len(found), b.marker)
	}
	return found[0]
}

// vaultHelmVersionRe is the --version of a helm command on vault-helm.
var vaultHelmVersionRe = regexp.MustCompile(`--version [^\s\\]+`)

// adapt changes only chart references and paths in the guide's commands:
// the chart hashicorp/vault is the extracted vault-helm folder (and its
// example version the installed one), charts/vault-csi-provider this
// clone's chart, my-values.yaml the test's values file.
func adapt(t *testing.T, block string, p paths) string {
	t.Helper()
	lines := strings.Split(block, "\n")
	for i, line := range lines {
		if strings.Contains(line, " hashicorp/vault ") {
			line = vaultHelmVersionRe.ReplaceAllString(line, "--version "+vaultHelmVersion)
			line = strings.Replace(line, " hashicorp/vault ", " "+p.vaultChart+" ", 1)
		}
		line = strings.ReplaceAll(line, " charts/vault-csi-provider ", " "+p.ourChart+" ")
		line = strings.ReplaceAll(line, " my-values.yaml", " "+p.values)
		lines[i] = line
	}
	out := strings.Join(lines, "\n")
	if strings.Contains(out, "hashicorp/vault ") || strings.Contains(out, " charts/") || strings.Contains(out, " my-values.yaml") {
		t.Fatalf("%s: a chart reference or path the test does not know how to adapt:\n%s", docPath, out)
	}
	return out
}

// paths are what adapt substitutes.
type paths struct {
	vaultChart, ourChart, values string
}

// shell runs the guide's commands as a user's shell would, with the bed's
// helm and kubectl first in PATH and the cluster's kubeconfig.
type shell struct {
	c   *testbed.Cluster
	env []string
	dir string
}

func newShell(c *testbed.Cluster) (*shell, error) {
	bin, err := testbed.BinDir()
	if err != nil {
		return nil, err
	}
	home := filepath.Join(c.Dir, "helm")
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k == "KUBECONFIG" || k == "PATH" || strings.HasPrefix(k, "HELM_") || strings.HasPrefix(k, "VAULT_") {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "PATH="+bin+":"+os.Getenv("PATH"), "KUBECONFIG="+c.KubeconfigPath,
		"HELM_CACHE_HOME="+home+"/cache", "HELM_CONFIG_HOME="+home+"/config", "HELM_DATA_HOME="+home+"/data")
	return &shell{c: c, env: env, dir: c.Dir}, nil
}

// run runs a block with bash -eo pipefail, logging it and its output, and
// fails the test if it fails.
func (s *shell) run(ctx context.Context, t *testing.T, name, script string) (string, time.Duration) {
	t.Helper()
	start := time.Now()
	cmd := exec.CommandContext(ctx, "bash", "-eo", "pipefail", "-c", script)
	cmd.Env = s.env
	cmd.Dir = s.dir
	out, err := cmd.CombinedOutput()
	took := time.Since(start)
	t.Logf("%s, from %s (%s):\n%s--- output:\n%s", name, docPath, took.Round(100*time.Millisecond), script, out)
	if err != nil {
		t.Fatalf("%s from %s failed: %v\n%s", name, docPath, err, out)
	}
	return string(out), took
}

// runDoc runs the guide's block b, adapted.
func (s *shell) runDoc(ctx context.Context, t *testing.T, b docBlock, p paths) (string, time.Duration) {
	t.Helper()
	return s.run(ctx, t, b.name, adapt(t, docCommands(t, b), p))
}

func TestFencedSh(t *testing.T) {
	md := "x\n```sh\na\n```\n1. y\n\n   ```sh\n   b \\\n     c\n   ```\n```yaml\nz\n```\n"
	got := fencedSh(md)
	want := []string{"a\n", "b \\\n  c\n"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("fencedSh = %q, want %q", got, want)
	}
}
