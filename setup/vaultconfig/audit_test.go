package vaultconfig_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/okevault/vault-csi-provider/setup/vaultconfig"
	"github.com/okevault/vault-csi-provider/test/testbed"
)

// watched is Vault's logical client that, after each write or delete on
// sys/audit/, records whether Vault had no audit device at that moment, and
// fails the writes failWrite says to.
type watched struct {
	*vaultapi.Logical
	t         *testing.T
	unaudited []string
	failWrite func(path string, data map[string]any) bool
}

func (w *watched) WriteWithContext(ctx context.Context, path string, data map[string]any) (*vaultapi.Secret, error) {
	if w.failWrite != nil && w.failWrite(path, data) {
		return nil, errors.New("injected failure")
	}
	s, err := w.Logical.WriteWithContext(ctx, path, data)
	w.check(ctx, "write "+path)
	return s, err
}

func (w *watched) DeleteWithContext(ctx context.Context, path string) (*vaultapi.Secret, error) {
	s, err := w.Logical.DeleteWithContext(ctx, path)
	w.check(ctx, "delete "+path)
	return s, err
}

func (w *watched) check(ctx context.Context, after string) {
	if !strings.HasPrefix(after, "write sys/audit/") && !strings.HasPrefix(after, "delete sys/audit/") {
		return
	}
	s, err := w.ReadWithContext(ctx, "sys/audit")
	if err != nil {
		w.t.Fatal(err)
	}
	if len(s.Data) == 0 {
		w.unaudited = append(w.unaudited, after)
	}
}

// auditDevices returns Vault's audit devices: path → options.
func auditDevices(t *testing.T, c *vaultapi.Client) map[string]map[string]any {
	t.Helper()
	s, err := c.Logical().ReadWithContext(t.Context(), "sys/audit")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]any{}
	for path, v := range s.Data {
		opts, _ := v.(map[string]any)["options"].(map[string]any)
		out[path] = opts
	}
	return out
}

// TestAuditChangeWithoutGap against a real Vault: changing a device's
// options enables the new device before the old is gone, so Vault has an
// audit device after every step; when the new device cannot be enabled,
// the old one is on at the end, with its options.
func TestAuditChangeWithoutGap(t *testing.T) {
	v := testbed.StartVault(t)
	ctx := t.Context()
	dir := t.TempDir()
	apply := func(w *watched, opts map[string]string) error {
		t.Helper()
		d := &vaultconfig.Desired{Audit: []vaultconfig.AuditDevice{{Path: "file", Type: "file", Options: opts}}}
		p, err := vaultconfig.Compute(ctx, w, d)
		if err != nil {
			t.Fatal(err)
		}
		return p.Apply(ctx, w, nil)
	}
	first := map[string]string{"file_path": filepath.Join(dir, "audit.log")}
	if err := apply(&watched{Logical: v.Client.Logical(), t: t}, first); err != nil {
		t.Fatal(err)
	}

	for _, tt := range []struct {
		name string
		opts map[string]string
	}{
		{"another option", map[string]string{"file_path": first["file_path"], "hmac_accessor": "false"}},
		{"another file", map[string]string{"file_path": filepath.Join(dir, "audit-2.log"), "hmac_accessor": "false"}},
		{"stdout", map[string]string{"file_path": "stdout"}},
		{"stdout, another option", map[string]string{"file_path": "stdout", "log_raw": "false", "hmac_accessor": "false"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := &watched{Logical: v.Client.Logical(), t: t}
			if err := apply(w, tt.opts); err != nil {
				t.Fatal(err)
			}
			if len(w.unaudited) > 0 {
				t.Errorf("Vault had no audit device after: %s", strings.Join(w.unaudited, ", "))
			}
			got := auditDevices(t, v.Client)
			want := map[string]any{}
			for k, o := range tt.opts {
				want[k] = o
			}
			if len(got) != 1 || !reflect.DeepEqual(pick(got["file/"], want), want) {
				t.Errorf("devices after the change: %v; want file/ alone with %v", got, tt.opts)
			}
		})
	}

	// The new device cannot be enabled: the old one stays on.
	before := auditDevices(t, v.Client)
	w := &watched{Logical: v.Client.Logical(), t: t, failWrite: func(path string, data map[string]any) bool {
		opts, _ := data["options"].(map[string]string)
		return path == "sys/audit/file" && opts["file_path"] == filepath.Join(dir, "unwritable.log")
	}}
	if err := apply(w, map[string]string{"file_path": filepath.Join(dir, "unwritable.log")}); err == nil {
		t.Fatal("apply with the new device failing: no error")
	}
	if len(w.unaudited) > 0 {
		t.Errorf("Vault had no audit device after: %s", strings.Join(w.unaudited, ", "))
	}
	if after := auditDevices(t, v.Client); !reflect.DeepEqual(after, before) {
		t.Errorf("devices after a failed change: %v; want the old one as it was, %v", after, before)
	}
}

// pick returns the keys of want found in got, as strings.
func pick(got map[string]any, want map[string]any) map[string]any {
	out := map[string]any{}
	for k := range want {
		if v, ok := got[k]; ok {
			out[k] = fmt.Sprint(v)
		}
	}
	return out
}
