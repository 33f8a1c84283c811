package config

import (
	"net/url"
	"strings"
	"testing"
)

func TestAllowedAddresses(t *testing.T) {
	allowed, err := ParseAddresses(" https://vault.example.com:8200, http://Vault-0.internal ,unix:///run/vault.sock,")
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]bool{
		"https://vault.example.com:8200":         true,
		"https://VAULT.example.com:8200/":        true, // host case and a path do not matter
		"https://vault.example.com:8200/v1/x?y=": true,
		"http://vault-0.internal:80":             true, // the scheme's port, written out
		"http://vault-0.internal":                true,
		"unix:///run/vault.sock":                 true,
		"https://vault.example.com":              false, // 443, not 8200
		"http://vault.example.com:8200":          false, // another scheme
		"https://vault.example.com.evil:8200":    false,
		"https://sub.vault.example.com:8200":     false,
		"https://vault-0.internal":               false,
		"unix:///run/other.sock":                 false,
	} {
		u, err := url.Parse(addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := allowed.Allows(u); got != want {
			t.Errorf("Allows(%s) = %t, want %t", addr, got, want)
		}
	}
	if _, err := ParseAddresses("vault:8200"); err == nil {
		t.Error("an address without a scheme was accepted")
	}
	if _, err := ParseAddresses("https://user:pw@vault:8200"); err == nil || strings.Contains(err.Error(), "pw@") {
		t.Error("an address with credentials was accepted, or its password shown in the error")
	}
	if empty, _ := ParseAddresses(" , "); !empty.Empty() {
		t.Error("a list of nothing is not empty")
	}
}

// TestVaultAddressAllowlist: a class or pod attribute naming an address
// the operator does not allow is refused, naming vaultAddress; an empty list
// allows any, as before the flag existed.
func TestVaultAddressAllowlist(t *testing.T) {
	allowed, err := ParseAddresses("https://vault.vault.svc:8200")
	if err != nil {
		t.Fatal(err)
	}
	d := Defaults{AllowedAddresses: allowed}
	mustParse(t, map[string]string{"vaultAddress": "https://vault.vault.svc:8200"}, d)
	_, err = parseEdited(t, map[string]string{"vaultAddress": "http://169.254.169.254"}, d)
	wantError(t, err, "vaultAddress", "not an address this provider may reach", "https://vault.vault.svc:8200", "-allowed-vault-addresses")
	// The default address is held to the list too.
	_, err = parseEdited(t, nil, d)
	wantError(t, err, "vaultAddress", "https://127.0.0.1:8200")
	mustParse(t, map[string]string{"vaultAddress": "http://169.254.169.254"}, Defaults{})
}
