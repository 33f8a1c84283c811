package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"
)

// lockedBuffer collects the daemon's log while it runs.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestRunHostile runs the daemon as main does, with a root token in its
// environment, and sends it requests a hostile or broken caller could: it
// warns about the token without printing it, refuses oversized requests
// with a code, and keeps serving.
func TestRunHostile(t *testing.T) {
	const rootToken = "hvs.root-token-in-the-environment"
	dir := t.TempDir()
	health := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	logs := &lockedBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-provider-dir=" + dir, "-health-addr=" + health, "-kubeconfig=/nonexistent", "-log-level=trace"},
			env(map[string]string{"VAULT_TOKEN": rootToken, "VAULT_AGENT_ADDR": "http://127.0.0.1:1"}), &lockedBuffer{}, logs)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Error("run did not stop")
		}
	})
	waitReady(t, health)
	conn, err := grpc.NewClient("unix://"+filepath.Join(dir, "vault.sock"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := v1alpha1.NewCSIDriverProviderClient(conn)

	attrs := func(objects string) string {
		b, _ := json.Marshal(map[string]string{
			"roleName": "r", "objects": objects, "vaultAddress": "http://127.0.0.1:1",
			"csi.storage.k8s.io/pod.name": "p", "csi.storage.k8s.io/pod.namespace": "ns",
			"csi.storage.k8s.io/pod.uid": "u", "csi.storage.k8s.io/serviceAccount.name": "s",
		})
		return string(b)
	}
	for _, tc := range []struct {
		name       string
		attributes string
		code       codes.Code
		words      string
	}{
		{"100 MB secretArgs", attrs("- {objectName: a, secretPath: transit/encrypt/k, method: PUT, secretArgs: {plaintext: " + strings.Repeat("A", 100<<20) + "}}"), codes.ResourceExhausted, "larger than max"},
		{"1,001 objects", attrs(strings.Repeat("- {objectName: a, secretPath: kv/a}\n", 1_001)), codes.InvalidArgument, "more than the 1000"},
		// Parsing 370 KB of YAML could hold 100 times as much: over the
		// mount's budget before it is parsed.
		{"10,000 objects", attrs(strings.Repeat("- {objectName: a, secretPath: kv/a}\n", 10_000)), codes.ResourceExhausted, "-max-mount-bytes"},
		{"NUL in objectName", attrs(`- {objectName: "a\0b", secretPath: kv/a}`), codes.InvalidArgument, "objects[0].objectName"},
		{"objectName climbs out", attrs(`- {objectName: ../../etc/cron.d/x, secretPath: kv/a}`), codes.InvalidArgument, "objects[0].objectName"},
		{"absolute objectName", attrs(`- {objectName: /etc/passwd, secretPath: kv/a}`), codes.InvalidArgument, "is absolute"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := client.Mount(t.Context(), &v1alpha1.MountRequest{Attributes: tc.attributes, TargetPath: dir, Permission: "420"})
			if status.Code(err) != tc.code || !strings.Contains(err.Error(), tc.words) {
				t.Errorf("Mount: %v; want %s mentioning %q", err, tc.code, tc.words)
			}
			if len(err.Error()) > 1000 {
				t.Errorf("the error is %d bytes: it echoes the request", len(err.Error()))
			}
		})
	}
	if _, err := client.Version(t.Context(), &v1alpha1.VersionRequest{}); err != nil {
		t.Errorf("the daemon stopped serving: %v", err)
	}
	out := logs.String()
	for _, k := range []string{"VAULT_TOKEN", "VAULT_AGENT_ADDR"} {
		if !strings.Contains(out, "ignoring "+k) {
			t.Errorf("no warning that %s is ignored:\n%s", k, out)
		}
	}
	if strings.Contains(out, rootToken) || strings.Contains(out, "root-token") {
		t.Errorf("the log prints the token:\n%s", out)
	}
}

func TestFlagsAllowedPodAttributes(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{nil, nil}, // unset: pods may set any key, as with the driver alone
		{[]string{"-allowed-pod-attributes="}, []string{}},
		{[]string{"-allowed-pod-attributes= objects, vaultNamespace ,"}, []string{"objects", "vaultNamespace"}},
	} {
		f, err := parseFlags(tc.args, env(nil), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if (f.podAttributes == nil) != (tc.want == nil) || !slices.Equal(f.podAttributes, tc.want) {
			t.Errorf("%q: podAttributes = %#v, want %#v", tc.args, f.podAttributes, tc.want)
		}
	}
}

func TestFlagsAllowedVaultAddresses(t *testing.T) {
	f, err := parseFlags([]string{"-allowed-vault-addresses=https://vault-a:8200, https://vault-b:8200", "-vault-addr=https://vault-a:8200"}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.defaults.AllowedAddresses.String(); got != "https://vault-a:8200,https://vault-b:8200" {
		t.Errorf("allowed = %q", got)
	}
	for _, args := range [][]string{
		{"-allowed-vault-addresses=vault-a:8200"},
		{"-allowed-vault-addresses=https://vault-a:8200", "-vault-addr=https://vault-c:8200"},
		{"-max-total-bytes=1", "-max-mount-bytes=2"},
	} {
		if _, err := parseFlags(args, env(nil), io.Discard); err == nil {
			t.Errorf("%q was accepted", args)
		}
	}
	if f, err := parseFlags(nil, env(nil), io.Discard); err != nil || !f.defaults.AllowedAddresses.Empty() || f.shareJWTLogins {
		t.Errorf("defaults: any address, JWT logins per pod: %+v, %v", f, err)
	}
}
