package main

import (
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestFlagsAllowedTLSDirectories: the list is cleaned, and a relative entry
// (which would depend on the provider's working directory) is refused.
func TestFlagsAllowedTLSDirectories(t *testing.T) {
	f, err := parseFlags([]string{"-allowed-tls-directories=/etc/vault-csi-provider/tls/, /vault/tls"}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"/etc/vault-csi-provider/tls", "/vault/tls"}, f.defaults.AllowedTLSDirectories); d != "" {
		t.Errorf("-allowed-tls-directories (-want +got):\n%s", d)
	}
	if _, err := parseFlags([]string{"-allowed-tls-directories=tls"}, env(nil), io.Discard); err == nil || !strings.Contains(err.Error(), "-allowed-tls-directories") {
		t.Errorf("a relative directory: %v, want an error naming the flag", err)
	}
}
