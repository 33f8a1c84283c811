package vaultconfig

import (
	"strings"

	"github.com/okevault/vault-csi-provider/internal/redact"
)

// ManagedMarker tags what this package creates, so that prune removes only
// what it made: the first line of a policy, the description of a mount or an
// auth method.
const ManagedMarker = "managed-by: vault-oke-setup"

// Desired is the Vault configuration to converge to. Names and paths are
// without leading or trailing slashes.
type Desired struct {
	Policies []Policy
	Mounts   []Mount
	Auth     []AuthMethod
	Secrets  []Secret
	Audit    []AuditDevice
	// Prune removes policies, roles, auth methods, mounts and audit devices that carry
	// ManagedMarker (roles: under a managed auth method) and are no longer declared.
	Prune bool
}

// Policy is an ACL policy. HCL is the policy text as the user wrote it; the
// marker line is added when it is written.
type Policy struct {
	Name string
	HCL  string
}

// Mount is a secrets engine at Path.
type Mount struct {
	Path    string
	Type    string            // "kv", "transit", "pki", ...
	Options map[string]string // e.g. {"version": "2"} for KV v2
}

// AuthMethod is an auth method at Path with its config (written to
// auth/<path>/config) and roles (auth/<path>/role/<name>).
type AuthMethod struct {
	Path   string
	Type   string // "kubernetes" or "jwt"
	Config map[string]any
	// WriteOnly holds config fields Vault never reads back (a reviewer JWT).
	// They are compared by whether Vault reports them set (<key>_set), and
	// sent whenever the config is written.
	WriteOnly map[string]redact.Secret
	Roles     []Role
}

// Role is one role of an auth method; Data is what is written to
// auth/<path>/role/<name>, with durations in seconds.
type Role struct {
	Name string
	Data map[string]any
}

// AuditDevice is an audit device at Path (sys/audit/<path>). Vault cannot
// change a device's options in place: a changed one is disabled and enabled again.
type AuditDevice struct {
	Path    string
	Type    string            // "file", "socket", "syslog"
	Options map[string]string // e.g. {"file_path": "stdout"}
}

// Secret is an initial secret: written once when absent, never overwritten,
// so that later rotations in Vault are kept.
type Secret struct {
	Mount     string // the KV mount, e.g. "secret"
	Path      string // the path within the mount, e.g. "testapp"
	KVVersion int    // 1 or 2
	Data      map[string]redact.Secret
}

// apiPath returns the API path of a secret for reads and writes.
func (s Secret) apiPath() string {
	if s.KVVersion == 2 {
		return s.Mount + "/data/" + s.Path
	}
	return s.Mount + "/" + s.Path
}

// managedPolicyText prepends the marker line to the user's policy text.
func managedPolicyText(hcl string) string {
	return "# " + ManagedMarker + "\n" + strings.TrimSpace(hcl) + "\n"
}
