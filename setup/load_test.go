package setup

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// seedEnv supplies the seed example's initial secret values.
func seedEnv(k string) string {
	return map[string]string{"TESTAPP_USERNAME": "testapp", "TESTAPP_PASSWORD": "s3cr3t-value"}[k]
}

func seedFile(t *testing.T) *File {
	t.Helper()
	f, err := Load(filepath.Join("..", "examples", "setup", "seed.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestLoadExamples(t *testing.T) {
	for _, name := range []string{"seed.yaml", "oke-raft-kms.yaml"} {
		t.Run(name, func(t *testing.T) {
			f, err := Load(filepath.Join("..", "examples", "setup", name))
			if err != nil {
				t.Fatal(err)
			}
			env := func(k string) string {
				if v := seedEnv(k); v != "" {
					return v
				}
				return "x"
			}
			if _, err := Prepare(f, Overrides{VaultAddr: "https://127.0.0.1:8200"}, env); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestBadFiles: each mistake is reported with the field (or line) it is in.
func TestBadFiles(t *testing.T) {
	seed, err := os.ReadFile(filepath.Join("..", "examples", "setup", "seed.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		edit    func(string) string
		env     Env
		wantErr []string
	}{
		{
			name: "unknown field",
			edit: func(s string) string {
				return strings.Replace(s, "            audience: vault", "            audiences: vault", 1)
			},
			wantErr: []string{"line 93", `unknown field "audiences"`},
		},
		{
			name: "wildcard service account",
			edit: func(s string) string {
				return strings.Replace(s, "serviceAccounts: [testapp]", `serviceAccounts: ["*"]`, 1)
			},
			wantErr: []string{"spec.configure.auth[0].roles[0].serviceAccounts", "wildcards are refused"},
		},
		{
			name:    "wildcard namespace",
			edit:    func(s string) string { return strings.Replace(s, "namespaces: [default]", `namespaces: ["team-*"]`, 1) },
			wantErr: []string{"spec.configure.auth[0].roles[0].namespaces", "wildcards are refused"},
		},
		{
			name:    "missing audience",
			edit:    func(s string) string { return strings.Replace(s, "            audience: vault\n", "", 1) },
			wantErr: []string{"spec.configure.auth[0].roles[0].audience: required"},
		},
		{
			name: "bad HCL",
			edit: func(s string) string {
				return strings.Replace(s, `path "secret/data/testapp" {`, `path "secret/data/testapp" {{`, 1)
			},
			wantErr: []string{"spec.configure.policies[0]", "testapp-kv-crud is not valid HCL"},
		},
		{
			name: "undeclared policy",
			edit: func(s string) string {
				return strings.Replace(s, "policies: [testapp-kv-crud]", "policies: [testapp-kv-crd]", 1)
			},
			wantErr: []string{"spec.configure.auth[0].roles[0].policies", `"testapp-kv-crd" is not declared`},
		},
		{
			name:    "inline secret value",
			edit:    func(s string) string { return strings.Replace(s, "env: TESTAPP_USERNAME", "value: admin", 1) },
			wantErr: []string{"spec.configure.secrets[0].data.username.value", "allowInline"},
		},
		{
			name:    "secret from unset variable",
			edit:    func(s string) string { return s },
			env:     func(string) string { return "" },
			wantErr: []string{"spec.configure.secrets[0].data.password.env: $TESTAPP_PASSWORD is not set"},
		},
		{
			name: "even etcd cluster",
			edit: func(s string) string {
				return strings.Replace(s, "          size: 3\n          imageRegistry", "          size: 2\n          imageRegistry", 1)
			},
			wantErr: []string{"spec.deploy.vault.storage.etcd.size", "odd"},
		},
		{
			name: "etcd client TLS",
			edit: func(s string) string {
				return strings.Replace(s, "          version: v3.6.16\n", "          version: v3.6.16\n          clientTLSSecret: vault-etcd-client-tls\n", 1)
			},
			wantErr: []string{"spec.deploy.vault.storage.etcd.clientTLSSecret", "plain HTTP only", "raft"},
		},
		{
			name: "unpinned Vault image",
			edit: func(s string) string {
				return strings.Replace(s, "image: docker.io/hashicorp/vault:1.21.4", "image: hashicorp/vault", 1)
			},
			wantErr: []string{"spec.deploy.vault.image", "pinned"},
		},
		{
			name: "etcd tag in the registry",
			edit: func(s string) string {
				return strings.Replace(s, "imageRegistry: gcr.io/etcd-development/etcd", "imageRegistry: gcr.io/etcd-development/etcd:v3.6.16", 1)
			},
			wantErr: []string{"spec.deploy.vault.storage.etcd.imageRegistry", "the tag is version"},
		},
		{
			name: "bad CA namespace",
			edit: func(s string) string {
				return strings.Replace(s, "caNamespaces: [vault-csi-provider]", "caNamespaces: [vault-csi-provider, \"*\"]", 1)
			},
			wantErr: []string{"spec.deploy.vault.tls.caNamespaces[1]", "alone"},
		},
		{
			name:    "wrong kind",
			edit:    func(s string) string { return strings.Replace(s, "kind: VaultSetup", "kind: Vault", 1) },
			wantErr: []string{"apiVersion/kind"},
		},
		{
			name: "two errors at once",
			edit: func(s string) string {
				return strings.Replace(strings.Replace(s, "            audience: vault\n", "", 1), "version: 2", "version: 3", 1)
			},
			wantErr: []string{"roles[0].audience: required", "secretsEngines[0].version"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := tt.env
			if env == nil {
				env = seedEnv
			}
			f, err := Parse([]byte(tt.edit(string(seed))))
			if err == nil {
				_, err = Prepare(f, Overrides{VaultAddr: "http://127.0.0.1:8200"}, env)
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "s3cr3t-value") {
				t.Errorf("error shows a secret value: %v", err)
			}
		})
	}
}

// TestBadOCIKMS: the auto-unseal settings are checked before anything runs.
func TestBadOCIKMS(t *testing.T) {
	f, err := Load(filepath.Join("..", "examples", "setup", "oke-raft-kms.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	k := f.Spec.Deploy.Vault.Unseal.OCIKMS
	k.KeyID = "arn:aws:kms:example"
	k.CryptoEndpoint = "http://insecure.example"
	_, err = Prepare(f, Overrides{VaultAddr: "https://127.0.0.1:8200"}, seedEnv)
	for _, want := range []string{"spec.deploy.vault.unseal.ocikms.keyID", "spec.deploy.vault.unseal.ocikms.cryptoEndpoint"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
}

// TestDeployOnly: a file (or a deploy run) with no configure stage needs
// nothing of configure's: no Vault address, no secret variables.
func TestDeployOnly(t *testing.T) {
	f := seedFile(t)
	f.Spec.Configure = nil
	f.Spec.Deploy.Vault.TLS.CANamespaces = nil
	p, err := Prepare(f, Overrides{}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	v := p.Deploy.Vault
	if got := strings.Join(v.CANamespaces, ","); got != "vault-csi-provider" {
		t.Errorf("default CA namespaces %q, want the provider chart's namespace", got)
	}
	if v.Image != "docker.io/hashicorp/vault:1.21.4" || v.BankVaultsImage != "ghcr.io/bank-vaults/bank-vaults:v1.33.1" ||
		v.Etcd.ImageRegistry+":"+v.Etcd.Version != "gcr.io/etcd-development/etcd:v3.6.16" {
		t.Errorf("images %s, %s, %s:%s", v.Image, v.BankVaultsImage, v.Etcd.ImageRegistry, v.Etcd.Version)
	}

	// An explicit empty list copies the CA nowhere.
	g, err := Parse([]byte(strings.Replace(mustRead(t, filepath.Join("..", "examples", "setup", "seed.yaml")),
		"caNamespaces: [vault-csi-provider]", "caNamespaces: []", 1)))
	if err != nil {
		t.Fatal(err)
	}
	g.Spec.Configure = nil
	p, err = Prepare(g, Overrides{}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if n := p.Deploy.Vault.CANamespaces; len(n) > 0 {
		t.Errorf("caNamespaces: [] gave %v", n)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
