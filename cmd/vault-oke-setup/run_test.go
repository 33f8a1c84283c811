package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/okevault/vault-csi-provider/test/testbed"
)

const seed = "../../examples/setup/seed.yaml"

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

type result struct {
	code           int
	stdout, stderr string
}

func runCmd(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(t.Context(), args, envOf(env), &out, &errOut)
	return result{code, out.String(), errOut.String()}
}

// TestUsageErrors needs no real parts.
func TestUsageErrors(t *testing.T) {
	secrets := map[string]string{"TESTAPP_USERNAME": "u", "TESTAPP_PASSWORD": "p"}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("apiVersion: setup.okevault.io/v1alpha1\nkind: VaultSetup\nmetadata: {name: x}\nspec:\n  configure:\n    polices: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The seed without its deploy side: setup cannot reach Vault by itself.
	configureOnly := configureOnlySeed(t)
	// A kubeconfig naming a cluster nobody serves: loaded, never called.
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\nusers: [{name: u, user: {}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		wantErr string
	}{
		{"no command", nil, nil, "usage:"},
		{"unknown command", nil, []string{"bogus"}, `unknown command "bogus"`},
		{"no file", nil, []string{"plan"}, "-f setup.yaml is required"},
		{"unknown field", nil, []string{"plan", "-f", bad}, `line 6: unknown field "polices"`},
		{"no token", secrets, []string{"configure", "-f", configureOnly, "--vault-addr", "http://127.0.0.1:1"}, "configure: no Vault token: give --vault-token-file"},
		{"no vault address", map[string]string{"TESTAPP_USERNAME": "u", "TESTAPP_PASSWORD": "p"}, []string{"configure", "-f", configureOnly}, "configure: spec.configure.vaultAddress: no Vault address"},
		{"secret values for configure", nil, []string{"configure", "-f", seed}, "configure: spec.configure.secrets[0].data.username.env: $TESTAPP_USERNAME is not set"},
		{"destroy needs a deploy side", nil, []string{"destroy", "-f", configureOnly}, "no spec.deploy"},
		{"snapshot needs a file", nil, []string{"snapshot", "-f", seed}, "snapshot needs --snapshot FILE"},
		{"no snapshot of etcd", map[string]string{"KUBECONFIG": kubeconfig},
			[]string{"snapshot", "-f", seed, "--snapshot", filepath.Join(t.TempDir(), "vault.snap")}, "etcd, which Vault cannot snapshot"},
		{"no restore into etcd", map[string]string{"KUBECONFIG": kubeconfig},
			[]string{"restore", "-f", seed, "--snapshot", bad, "--yes"}, "etcd, which Vault cannot snapshot"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCmd(t, tt.env, tt.args...)
			if r.code != exitError {
				t.Errorf("exit %d, want %d", r.code, exitError)
			}
			if !strings.Contains(r.stderr, tt.wantErr) {
				t.Errorf("stderr %q lacks %q", r.stderr, tt.wantErr)
			}
		})
	}
}

func configureOnlySeed(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(seed)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	start, end := strings.Index(s, "  deploy:\n"), strings.Index(s, "  configure:\n")
	path := filepath.Join(t.TempDir(), "configure-only.yaml")
	if err := os.WriteFile(path, []byte(s[:start]+s[end:]), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestConventions: help in the usual spellings exits 0 on stdout, flags
// go before or after the command, and version needs nothing else.
func TestConventions(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"--help"}, {"help"}, {"plan", "-h"}, {"apply", "--help"}, {"help", "plan"}, {"-f", seed, "verify", "-h"}} {
		r := runCmd(t, nil, args...)
		if r.code != exitOK || !strings.Contains(r.stdout, "usage: vault-oke-setup") || !strings.Contains(r.stdout, "-context") || r.stderr != "" {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want the help on stdout and exit 0", args, r.code, r.stdout, r.stderr)
		}
	}
	r := runCmd(t, nil, "version")
	if r.code != exitOK || !strings.HasPrefix(r.stdout, "vault-oke-setup dev go1.") {
		t.Errorf("version: exit %d, stdout %q", r.code, r.stdout)
	}

	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("apiVersion: setup.okevault.io/v1alpha1\nkind: VaultSetup\nmetadata: {name: x}\nspec:\n  configure:\n    polices: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"plan", "-f", bad}, {"-f", bad, "plan"}, {"--dry-run", "apply", "-f", bad}} {
		if r := runCmd(t, nil, args...); r.code != exitError || !strings.Contains(r.stderr, `unknown field "polices"`) {
			t.Errorf("%q: exit %d, stderr %q; want the file read and refused", args, r.code, r.stderr)
		}
	}
	for _, tc := range []struct {
		args    []string
		wantErr string
	}{
		{[]string{"-f", seed}, "usage:"},
		{[]string{"plan", "-f", seed, "extra"}, `unexpected arguments ["extra"] after plan`},
		{[]string{"plan", "--bogus"}, "flag provided but not defined: -bogus"},
	} {
		if r := runCmd(t, nil, tc.args...); r.code != exitError || !strings.Contains(r.stderr, tc.wantErr) {
			t.Errorf("%q: exit %d, stderr %q; want exit 1 and %q", tc.args, r.code, r.stderr, tc.wantErr)
		}
	}
}

// TestKubeContext: --context picks a context of the kubeconfig, as kubectl's.
func TestKubeContext(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kubeconfig")
	const kc = `apiVersion: v1
kind: Config
clusters:
- {name: a, cluster: {server: "https://a.example:6443"}}
- {name: b, cluster: {server: "https://b.example:6443"}}
users:
- {name: u, user: {token: not-a-secret}}
contexts:
- {name: ctx-a, context: {cluster: a, user: u}}
- {name: ctx-b, context: {cluster: b, user: u}}
current-context: ctx-a
`
	if err := os.WriteFile(path, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	for ctx, want := range map[string]string{"": "https://a.example:6443", "ctx-b": "https://b.example:6443"} {
		cfg, err := kubeConfig(path, ctx, envOf(nil))
		if err != nil || cfg.Host != want {
			t.Errorf("--context %q: %v, %v; want host %s", ctx, cfg, err, want)
		}
	}
	if _, err := kubeConfig(path, "ctx-c", envOf(nil)); err == nil || !strings.Contains(err.Error(), "ctx-c") {
		t.Errorf("--context ctx-c: %v, want an error naming it", err)
	}
}

// TestExitCodes runs the command in-process against the test bed: plan
// exits 2 while changes are pending, apply 0, plan 0 once converged, verify 0;
// an unreachable Vault is 1. The root token never reaches the output.
func TestExitCodes(t *testing.T) {
	b := startCommandBed(t)
	kube, vault, jwt := b.kube, b.vault, b.jwt
	env := map[string]string{"TESTAPP_USERNAME": "testapp", "TESTAPP_PASSWORD": "pw-1234"}
	flags := b.flags(vault.Addr)
	// deploy on a fresh cluster needs nothing but the file and a kubeconfig.
	r := runCmd(t, nil, "deploy", "--dry-run", "-f", seed, "--kubeconfig", kube.KubeconfigPath, "--operator-chart", b.chart)
	if r.code != exitPending || !strings.Contains(r.stdout, "deploy: + Vault vault/vault") {
		t.Fatalf("deploy --dry-run with nothing set: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}

	steps := []struct {
		cmd      string
		extra    []string
		want     int
		contains string
	}{
		{"plan", nil, exitPending, "Plan: "},
		{"apply", []string{"--dry-run"}, exitPending, "Plan: "},
		{"apply", nil, exitOK, "Applied: "},
		{"plan", nil, exitOK, "No changes"},
		{"apply", nil, exitOK, "No changes"},
		{"verify", nil, exitOK, "0 failed"},
		{"destroy", nil, exitPending, "destroy: - Vault vault/vault"},
		{"destroy", []string{"--yes"}, exitOK, "Destroyed: "},
		{"destroy", nil, exitOK, "Nothing to delete"},
	}
	for _, s := range steps {
		start := time.Now()
		r := runCmd(t, env, append(append([]string{s.cmd}, flags...), s.extra...)...)
		t.Logf("%s %v: exit %d in %s", s.cmd, s.extra, r.code, time.Since(start).Round(time.Millisecond))
		if r.code != s.want || !strings.Contains(r.stdout, s.contains) {
			t.Fatalf("%s %v: exit %d (want %d), stdout lacks %q?\nstdout:\n%s\nstderr:\n%s", s.cmd, s.extra, r.code, s.want, s.contains, r.stdout, r.stderr)
		}
		for _, secret := range []string{vault.RootToken + "\n", "pw-1234", jwt} {
			if strings.Contains(r.stdout+r.stderr, secret) {
				t.Fatalf("%s printed a secret", s.cmd)
			}
		}
	}

	// Unreachable Vault: exit 1, the step named.
	r = runCmd(t, env, append([]string{"configure"}, append(flags, "--vault-addr", "http://127.0.0.1:1", "--timeout", "2s")...)...)
	if r.code != exitError || !strings.Contains(r.stderr, "configure: plan against Vault at http://127.0.0.1:1") {
		t.Fatalf("unreachable Vault: exit %d\n%s", r.code, r.stderr)
	}
}

// commandBed is a real apiserver and a real Vault dev server outside it,
// with the files the command needs to configure that Vault.
type commandBed struct {
	kube  *testbed.Kube
	vault *testbed.Vault
	dir   string
	jwt   string // the reviewer's token
	chart string // the vault-operator chart in the module cache
}

func startCommandBed(t *testing.T) *commandBed {
	t.Helper()
	kube := testbed.StartKube(t)
	vault := testbed.StartVault(t)
	ctx := t.Context()
	dir := t.TempDir()

	// Vault runs outside the cluster: it reviews tokens as a service account
	// bound to system:auth-delegator, with a token we give it.
	if err := kube.CreateServiceAccount(ctx, "kube-system", "vault-tokenreview"); err != nil {
		t.Fatal(err)
	}
	_, err := kube.Client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "vault-tokenreview"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:auth-delegator"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "vault-tokenreview", Namespace: "kube-system"}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	jwt, err := kube.Token(ctx, "kube-system", "vault-tokenreview", "", nil, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := kube.CreateServiceAccount(ctx, "default", "default"); err != nil { // verify's outsider
		t.Fatal(err)
	}
	files := map[string][]byte{"reviewer.jwt": []byte(jwt), "kube-ca.pem": kube.CAPEM, "vault.token": []byte(vault.RootToken)}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	chart, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/bank-vaults/vault-operator").Output()
	if err != nil {
		t.Fatal(err)
	}
	return &commandBed{kube: kube, vault: vault, dir: dir, jwt: jwt,
		chart: filepath.Join(strings.TrimSpace(string(chart)), "deploy", "charts", "vault-operator")}
}

// flags are the seed's command-line flags for the bed, with Vault at vaultAddr
// and the token in a file.
func (b *commandBed) flags(vaultAddr string) []string {
	return []string{"-f", seed,
		"--kubeconfig", b.kube.KubeconfigPath,
		"--vault-addr", vaultAddr,
		"--vault-token-file", filepath.Join(b.dir, "vault.token"),
		"--kubernetes-host", b.kube.Host,
		"--kubernetes-ca-file", filepath.Join(b.dir, "kube-ca.pem"),
		"--reviewer-jwt-file", filepath.Join(b.dir, "reviewer.jwt"),
		"--operator-chart", b.chart,
		"--wait", "10s",
	}
}
