package testbed

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	vaultapi "github.com/hashicorp/vault/api"
)

// EnableAudit turns on Vault's file audit device, so tests can count the
// requests Vault really served (logins, reads, issues) with AuditCount.
func (v *Vault) EnableAudit(ctx context.Context) error {
	path := filepath.Join(v.Dir, "audit.log")
	err := v.Client.Sys().EnableAuditWithOptionsWithContext(ctx, "file", &vaultapi.EnableAuditOptions{
		Type: "file", Options: map[string]string{"file_path": path},
	})
	if err != nil {
		return fmt.Errorf("enable audit: %w", err)
	}
	v.auditPath = path
	return nil
}

// AuditCount is the number of requests to path (e.g. "auth/kubernetes/login")
// in the audit log since EnableAudit.
func (v *Vault) AuditCount(path string) (int, error) {
	return v.countAudit(func(e auditEntry) bool { return e.Type == "request" && e.Request.Path == path })
}

// AuditErrors is the number of responses to requests for path that Vault
// answered with an error (such as "permission denied") since EnableAudit.
func (v *Vault) AuditErrors(path string) (int, error) {
	return v.countAudit(func(e auditEntry) bool { return e.Type == "response" && e.Request.Path == path && e.Error != "" })
}

// LiveLeases is the number of leases Vault holds under prefix (a mount and
// role path such as "pki/issue/app"), as sys/leases/lookup lists them.
func (v *Vault) LiveLeases(ctx context.Context, prefix string) (int, error) {
	s, err := v.Client.Logical().ListWithContext(ctx, "sys/leases/lookup/"+prefix+"/")
	if err != nil {
		return 0, fmt.Errorf("list leases under %s: %w", prefix, err)
	}
	if s == nil {
		return 0, nil
	}
	keys, _ := s.Data["keys"].([]any)
	return len(keys), nil
}

type auditEntry struct {
	Type    string `json:"type"`
	Error   string `json:"error"`
	Request struct {
		Path string `json:"path"`
	} `json:"request"`
}

func (v *Vault) countAudit(match func(auditEntry) bool) (int, error) {
	if v.auditPath == "" {
		return 0, fmt.Errorf("audit: EnableAudit was not called")
	}
	f, err := os.Open(v.auditPath)
	if err != nil {
		return 0, err
	}
	defer func() { _ = f.Close() }()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var e auditEntry
		if json.Unmarshal(sc.Bytes(), &e) == nil && match(e) {
			n++
		}
	}
	return n, sc.Err()
}
