package setup

import (
	"strings"
	"testing"
)

// TestStageScopedValidation: each command asks only for what its stages
// need, and each error says which stage needs it.
func TestStageScopedValidation(t *testing.T) {
	noEnv := func(string) string { return "" }
	tests := []struct {
		name    string
		st      Stages
		edit    func(f *File)
		env     Env
		wantErr []string // empty: no error
		notErr  []string
	}{
		{
			name: "deploy on a fresh cluster needs nothing but the file",
			st:   Stages{Deploy: true},
			env:  noEnv,
		},
		{
			name: "configure needs the initial secrets' values",
			st:   Stages{Configure: true},
			env:  noEnv,
			wantErr: []string{
				"configure: spec.configure.secrets[0].data.username.env: $TESTAPP_USERNAME is not set",
				"configure: spec.configure.secrets[0].data.password.env: $TESTAPP_PASSWORD is not set",
			},
			// With spec.deploy, setup reaches the deployed Vault itself.
			notErr: []string{"vaultAddress"},
		},
		{
			name: "verify needs no secret values",
			st:   Stages{Verify: true},
			env:  noEnv,
		},
		{
			name:    "configure without deploy needs an address",
			st:      Stages{Configure: true},
			edit:    func(f *File) { f.Spec.Deploy = nil },
			wantErr: []string{"configure: spec.configure.vaultAddress: no Vault address"},
		},
		{
			name:    "verify without deploy needs an address",
			st:      Stages{Verify: true},
			edit:    func(f *File) { f.Spec.Deploy = nil },
			env:     noEnv,
			wantErr: []string{"verify: spec.configure.vaultAddress: no Vault address"},
			notErr:  []string{"TESTAPP"},
		},
		{
			name:    "a deploy error is deploy's",
			st:      Stages{Deploy: true, Configure: true},
			edit:    func(f *File) { f.Spec.Deploy.Namespace = "Vault_NS" },
			wantErr: []string{`deploy: spec.deploy.namespace: "Vault_NS" is not a DNS label`},
		},
		{
			name: "configure does not check the deploy side",
			st:   Stages{Configure: true},
			edit: func(f *File) { f.Spec.Deploy.Namespace = "Vault_NS" },
		},
		{
			name:    "a configure error does not stop deploy",
			st:      Stages{Deploy: true},
			edit:    func(f *File) { f.Spec.Configure.Policies[0].HCL += "path {" },
			env:     noEnv,
			wantErr: nil,
		},
		{
			name: "audit device checked",
			st:   Stages{Configure: true},
			edit: func(f *File) {
				f.Spec.Configure.Audit = []AuditDevice{{Type: "file"}, {Type: "kafka"}}
			},
			wantErr: []string{
				"configure: spec.configure.audit[0].options.file_path: required",
				`configure: spec.configure.audit[1].type: "kafka"`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := seedFile(t)
			if tt.edit != nil {
				tt.edit(f)
			}
			env := tt.env
			if env == nil {
				env = seedEnv
			}
			p, err := PrepareFor(tt.st, f, Overrides{OperatorChart: t.TempDir()}, env)
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("PrepareFor(%+v): %v", tt.st, err)
				}
				if f.Spec.Deploy != nil && p.Deploy == nil {
					t.Error("no deploy spec: configure could not find the deployed Vault")
				}
				return
			}
			if err == nil {
				t.Fatalf("PrepareFor(%+v): no error, want %q", tt.st, tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			for _, w := range tt.notErr {
				if strings.Contains(err.Error(), w) {
					t.Errorf("error %q mentions %q", err, w)
				}
			}
		})
	}
}

// TestRevokeRootTokenDefault: revoking is the default; the file can opt out.
func TestRevokeRootTokenDefault(t *testing.T) {
	f := seedFile(t)
	p, err := PrepareFor(Stages{Configure: true}, f, Overrides{}, seedEnv)
	if err != nil || !p.RevokeRootToken {
		t.Fatalf("default: %v, revoke=%v; want revoke", err, p != nil && p.RevokeRootToken)
	}
	no := false
	f.Spec.Configure.RevokeRootToken = &no
	if p, err = PrepareFor(Stages{Configure: true}, f, Overrides{}, seedEnv); err != nil || p.RevokeRootToken {
		t.Fatalf("revokeRootToken: false: %v; want kept", err)
	}
}
