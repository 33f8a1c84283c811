package config

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// operator is a provider started with TLS flags of its own and the chart's
// TLS mount allowed.
var operator = Defaults{
	VaultAddress:          "https://vault.vault.svc:8200",
	AllowedTLSDirectories: []string{"/etc/vault-csi-provider/tls"},
	TLS: TLS{
		CACert: "/flags/ca.crt", CADirectory: "/flags/ca.d",
		ClientCert: "/flags/client.crt", ClientKey: "/flags/client.key",
	},
}

// TestTLSPathsOnlyWhereTheOperatorAllows: a class may name TLS files only
// under -allowed-tls-directories or the provider's own -vault-tls-* paths;
// anything else (a device, a process's stdout, a path that climbs out) is
// refused naming the parameter, before any file is opened.
func TestTLSPathsOnlyWhereTheOperatorAllows(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  map[string]string
		d     Defaults
		param string // "" when allowed
	}{
		{"a file in an allowed directory", map[string]string{"vaultCACertPath": "/etc/vault-csi-provider/tls/ca.crt"}, operator, ""},
		{"kubelet's layout in an allowed directory", map[string]string{"vaultCACertPath": "/etc/vault-csi-provider/tls/..data/ca.crt"}, operator, ""},
		{"an allowed directory itself", map[string]string{"vaultCADirectory": "/etc/vault-csi-provider/tls"}, operator, ""},
		{"the provider's own CA file", map[string]string{"vaultCACertPath": "/flags/ca.crt"}, operator, ""},
		{"a file in the provider's own CA directory", map[string]string{"vaultCACertPath": "/flags/ca.d/extra.pem"}, operator, ""},
		{"a device", map[string]string{"vaultCACertPath": "/dev/zero"}, operator, "vaultCACertPath"},
		{"a process's stdout", map[string]string{"vaultCACertPath": "/proc/self/fd/1"}, operator, "vaultCACertPath"},
		{"climbing out of an allowed directory", map[string]string{"vaultCACertPath": "/etc/vault-csi-provider/tls/../../passwd"}, operator, "vaultCACertPath"},
		{"a sibling sharing the prefix", map[string]string{"vaultCACertPath": "/etc/vault-csi-provider/tls-other/ca.crt"}, operator, "vaultCACertPath"},
		{"a relative path", map[string]string{"vaultCACertPath": "tls/ca.crt"}, operator, "vaultCACertPath"},
		{"a directory outside", map[string]string{"vaultCADirectory": "/etc"}, operator, "vaultCADirectory"},
		{"the parent of the provider's file", map[string]string{"vaultCADirectory": "/flags"}, operator, "vaultCADirectory"},
		{"a client certificate outside", map[string]string{"vaultTLSClientCertPath": "/root/c.crt", "vaultTLSClientKeyPath": "/etc/vault-csi-provider/tls/c.key"}, operator, "vaultTLSClientCertPath"},
		{"a client key outside", map[string]string{"vaultTLSClientCertPath": "/etc/vault-csi-provider/tls/c.crt", "vaultTLSClientKeyPath": "/proc/1/environ"}, operator, "vaultTLSClientKeyPath"},
		{"no list and no flags: nothing", map[string]string{"vaultCACertPath": "/etc/ssl/certs/ca.pem"}, Defaults{}, "vaultCACertPath"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseEdited(t, tc.edit, tc.d)
			if tc.param == "" {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				return
			}
			wantError(t, err, tc.param, "-allowed-tls-directories")
		})
	}
}

// TestProviderClientCertOnlyForItsVault: the provider's own client
// certificate (-vault-tls-client-cert/-key) goes only to -vault-addr; a
// class naming another address gets none, and may not name those files.
func TestProviderClientCertOnlyForItsVault(t *testing.T) {
	pair := func(m *Mount) []string { return []string{m.TLS.ClientCert, m.TLS.ClientKey} }
	own := []string{"/flags/client.crt", "/flags/client.key"}
	for _, tc := range []struct {
		name string
		edit map[string]string
		want []string
	}{
		{"no address: the provider's Vault", nil, own},
		{"the provider's Vault, spelled with its default port", map[string]string{"vaultAddress": "https://VAULT.vault.svc:8200/"}, own},
		{"another Vault", map[string]string{"vaultAddress": "https://vault.attacker.example:8200"}, []string{"", ""}},
		{"another Vault with a certificate of its class", map[string]string{
			"vaultAddress":           "https://vault.attacker.example:8200",
			"vaultTLSClientCertPath": "/etc/vault-csi-provider/tls/team.crt", "vaultTLSClientKeyPath": "/etc/vault-csi-provider/tls/team.key",
		}, []string{"/etc/vault-csi-provider/tls/team.crt", "/etc/vault-csi-provider/tls/team.key"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, pair(mustParse(t, tc.edit, operator))); diff != "" {
				t.Errorf("client pair (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("another Vault naming the provider's files", func(t *testing.T) {
		_, err := parseEdited(t, map[string]string{
			"vaultAddress":           "https://vault.attacker.example:8200",
			"vaultTLSClientCertPath": "/flags/client.crt", "vaultTLSClientKeyPath": "/flags/client.key",
		}, operator)
		wantError(t, err, "vaultTLSClientCertPath", "-vault-addr")
	})
	t.Run("no -vault-addr: the built-in default is the provider's Vault", func(t *testing.T) {
		d := operator
		d.VaultAddress = ""
		if diff := cmp.Diff(own, pair(mustParse(t, map[string]string{"vaultAddress": "https://127.0.0.1:8200"}, d))); diff != "" {
			t.Errorf("client pair (-want +got):\n%s", diff)
		}
	})
}
