package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	"github.com/okevault/vault-csi-provider/internal/config"
	"github.com/okevault/vault-csi-provider/internal/leases"
)

func env(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }

func TestFlagsPeerDefaults(t *testing.T) {
	f, err := parseFlags(nil, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if f.endpoint != "/tmp/vault.sock" || f.healthAddr != ":8080" || f.hmacSecretName != "vault-csi-provider-hmac-key" ||
		f.cacheSize != 1000 || f.logLevel != "info" || f.providerName != "vault" || f.tokenRequestFallback {
		t.Errorf("defaults differ from the peer's: %+v", f)
	}
	if f.dynamicScope != leases.ScopePod {
		t.Errorf("-dynamic-secrets-scope defaults to %q, want pod: pods share no credentials unless told to", f.dynamicScope)
	}
}

func TestFlagsEnvironmentThenFlags(t *testing.T) {
	e := env(map[string]string{"VAULT_ADDR": "https://env:8200", "VAULT_NAMESPACE": "env-ns", "VAULT_CACERT": "/env/ca.pem", "VAULT_SKIP_VERIFY": "true", "POD_NAMESPACE": "csi"})
	f, err := parseFlags([]string{"-vault-addr=https://flag:8200", "-vault-tls-server-name=vault.svc"}, e, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := config.Defaults{VaultAddress: "https://flag:8200", VaultNamespace: "env-ns", TLS: config.TLS{CACert: "/env/ca.pem", ServerName: "vault.svc", SkipVerify: true}}
	if d := cmp.Diff(want, f.defaults, cmp.AllowUnexported(config.Addresses{})); d != "" {
		t.Errorf("defaults (-want +got):\n%s", d)
	}
	if f.hmacSecretNamespace != "csi" {
		t.Errorf("HMAC namespace = %q, want $POD_NAMESPACE", f.hmacSecretNamespace)
	}
	f, err = parseFlags([]string{"-vault-tls-skip-verify=false"}, e, io.Discard)
	if err != nil || f.defaults.TLS.SkipVerify {
		t.Errorf("an explicit -vault-tls-skip-verify=false must beat the environment: %+v, %v", f.defaults.TLS, err)
	}
}

func TestFlagsEndpoint(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		want    string
		wantErr string
	}{
		{[]string{"-endpoint=unix:///run/p/vault.sock"}, "/run/p/vault.sock", ""},
		{[]string{"-provider-dir=/etc/kubernetes/secrets-store-csi-providers"}, "/etc/kubernetes/secrets-store-csi-providers/vault.sock", ""},
		{[]string{"-provider-dir=/p/", "-provider-name=vault-2"}, "/p/vault-2.sock", ""},
		{[]string{"-provider-dir=/p", "-endpoint=/x.sock"}, "", "alternatives"},
		{[]string{"-provider-name=../evil"}, "", "-provider-name"},
		{[]string{"-provider-name=a-name-that-is-far-too-long-for-the-driver"}, "", "-provider-name"},
		{[]string{"-cache-size=0"}, "", "-cache-size"},
		{[]string{"-dynamic-secrets-scope=cluster"}, "", "-dynamic-secrets-scope"},
		{[]string{"-dynamic-secrets-cache-size=0"}, "", "-dynamic-secrets-cache-size"},
		{[]string{"-revoke-on-pod-delete"}, "", "-node-name"},
		{[]string{"-revoke-on-pod-delete", "-node-name=n", "-dynamic-secrets-scope=identity"}, "", "-dynamic-secrets-scope=pod"},
		{[]string{"-bogus"}, "", "bogus"},
	} {
		f, err := parseFlags(tc.args, env(nil), io.Discard)
		switch {
		case tc.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%v: err = %v, want one about %s", tc.args, err, tc.wantErr)
			}
		case err != nil:
			t.Errorf("%v: %v", tc.args, err)
		case f.endpoint != tc.want:
			t.Errorf("%v: endpoint %q, want %q", tc.args, f.endpoint, tc.want)
		}
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestRun starts the daemon as main does: a stale socket is replaced, the
// new one is 0600, health answers, Version works over the socket, and
// SIGTERM (a cancelled context) stops it cleanly and removes the socket.
func TestRun(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "vault.sock")
	stale, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close() // leaves the socket file behind, as a crashed provider would

	health := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	var logs bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-provider-dir=" + dir, "-health-addr=" + health, "-kubeconfig=/nonexistent"}, env(nil), io.Discard, &logs)
	}()

	waitReady(t, health)
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %o, want 0600", fi.Mode().Perm())
	}
	resp, err := http.Get("http://" + health + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz: %v %v", resp, err)
	}
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	v, err := v1alpha1.NewCSIDriverProviderClient(conn).Version(t.Context(), &v1alpha1.VersionRequest{})
	if err != nil || v.RuntimeName != "vault-csi-provider" {
		t.Fatalf("Version over the socket: %v, %v", v, err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v\n%s", err, logs.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not stop after SIGTERM")
	}
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left behind: %v", err)
	}
	if !strings.Contains(logs.String(), "object versions will be empty") {
		t.Errorf("no warning about the missing Kubernetes client:\n%s", logs.String())
	}
}

func TestRunRefusesToReplaceAFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vault.sock")
	if err := os.WriteFile(path, []byte("not a socket"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := run(t.Context(), []string{"-endpoint=" + path, "-health-addr=", "-kubeconfig=/nonexistent"}, env(nil), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("run = %v, want a refusal to delete a regular file", err)
	}
}

func TestVersionFlag(t *testing.T) {
	var out bytes.Buffer
	if err := run(t.Context(), []string{"-version"}, env(nil), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != "vault-csi-provider dev\n" {
		t.Errorf("-version printed %q", got)
	}
}

func waitFor(t *testing.T, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met in 10s: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitReady waits until the daemon's /health/ready at addr answers 200.
func waitReady(t *testing.T, addr string) {
	t.Helper()
	waitFor(t, func() error {
		resp, err := http.Get("http://" + addr + "/health/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("ready: %s", resp.Status)
		}
		return nil
	})
}
