package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"
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

// TestRunSurgeRoll plays a DaemonSet rolling update with surge on one node:
// the next provider replaces the socket while the old one still runs; when
// the old one stops, the successor's socket stays and answers.
func TestRunSurgeRoll(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "vault.sock")
	start := func() (context.CancelFunc, chan error, string) {
		health := freeAddr(t)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- run(ctx, []string{"-provider-dir=" + dir, "-health-addr=" + health, "-kubeconfig=/nonexistent"}, env(nil), io.Discard, io.Discard)
		}()
		waitReady(t, health)
		return cancel, done, health
	}
	stopOld, oldDone, _ := start()
	stopNew, newDone, _ := start() // the surge pod, while the old one runs
	defer func() { stopNew(); <-newDone }()

	stopOld()
	if err := <-oldDone; err != nil {
		t.Fatalf("old provider: %v", err)
	}
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := v1alpha1.NewCSIDriverProviderClient(conn).Version(t.Context(), &v1alpha1.VersionRequest{}); err != nil {
		t.Fatalf("the successor's socket after the old provider stopped: %v", err)
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

// peerFlags is every flag of hashicorp/vault-csi-provider v1.7.x (its
// main.go) with its default and whether it is a boolean switch: a manifest or
// vault-helm's csi.extraArgs written for the peer must start this provider
// with the same meaning.
var peerFlags = []struct {
	name, def string
	isBool    bool
}{
	{"endpoint", "/tmp/vault.sock", false},
	{"debug", "false", true},
	{"log-level", "info", false},
	{"version", "false", true},
	{"output", "json", false},
	{"health-addr", ":8080", false},
	{"hmac-secret-name", "vault-csi-provider-hmac-key", false},
	{"cache-size", "1000", false},
	{"vault-addr", "", false},
	{"vault-mount", "kubernetes", false},
	{"vault-namespace", "", false},
	{"vault-tls-ca-cert", "", false},
	{"vault-tls-ca-directory", "", false},
	{"vault-tls-server-name", "", false},
	{"vault-tls-client-cert", "", false},
	{"vault-tls-client-key", "", false},
	{"vault-tls-skip-verify", "false", true},
}

func TestFlagsPeerList(t *testing.T) {
	fs := newFlagSet(&flags{}, io.Discard)
	for _, p := range peerFlags {
		fl := fs.Lookup(p.name)
		if fl == nil {
			t.Errorf("-%s: the peer's flag is missing", p.name)
			continue
		}
		if fl.DefValue != p.def {
			t.Errorf("-%s: default %q, the peer's is %q", p.name, fl.DefValue, p.def)
		}
		b, ok := fl.Value.(interface{ IsBoolFlag() bool })
		if isBool := ok && b.IsBoolFlag(); isBool != p.isBool {
			t.Errorf("-%s: boolean switch = %v, the peer's = %v", p.name, isBool, p.isBool)
		}
	}
}

// TestFlagsPeerCommandLine starts from a command line written for the peer,
// in the --double-dash form vault-helm renders, every value flag set.
func TestFlagsPeerCommandLine(t *testing.T) {
	f, err := parseFlags([]string{
		"--endpoint=/provider/vault.sock", "--log-level=warn", "--health-addr=:8081",
		"--hmac-secret-name=vault-csi-provider-hmac-key", "--cache-size=50",
		"--vault-addr=https://vault:8200", "--vault-mount=k8s-a", "--vault-namespace=team",
		"--vault-tls-ca-cert=/ca.pem", "--vault-tls-ca-directory=/cas", "--vault-tls-server-name=vault.svc",
		"--vault-tls-client-cert=/c.pem", "--vault-tls-client-key=/k.pem", "--vault-tls-skip-verify",
	}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if f.endpoint != "/provider/vault.sock" || f.logLevel != "warn" || f.healthAddr != ":8081" || f.cacheSize != 50 {
		t.Errorf("endpoint, log level, health, cache size = %q %q %q %d", f.endpoint, f.logLevel, f.healthAddr, f.cacheSize)
	}
	want := config.Defaults{
		VaultAddress: "https://vault:8200", AuthMountPath: "k8s-a", VaultNamespace: "team",
		TLS: config.TLS{CACert: "/ca.pem", CADirectory: "/cas", ServerName: "vault.svc", ClientCert: "/c.pem", ClientKey: "/k.pem", SkipVerify: true},
	}
	if d := cmp.Diff(want, f.defaults, cmp.AllowUnexported(config.Addresses{})); d != "" {
		t.Errorf("defaults (-want +got):\n%s", d)
	}
}

// TestFlagsVaultMountUnset: the peer's default is shown, but an unset
// -vault-mount leaves the mount to vaultAuthType (jwt logs in at jwt).
func TestFlagsVaultMountUnset(t *testing.T) {
	f, err := parseFlags(nil, env(nil), io.Discard)
	if err != nil || f.defaults.AuthMountPath != "" {
		t.Errorf("unset -vault-mount = %q, %v; want empty (kubernetes, or jwt for vaultAuthType jwt)", f.defaults.AuthMountPath, err)
	}
}

func TestFlagsDebug(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-debug"}, "debug"},
		{[]string{"-debug", "-log-level=warn"}, "warn"}, // as the peer: -log-level wins
		{[]string{"-log-level=off"}, "off"},
	} {
		f, err := parseFlags(tc.args, env(nil), io.Discard)
		if err != nil || f.logLevel != tc.want {
			t.Errorf("%v: log level %q, %v; want %q", tc.args, f.logLevel, err, tc.want)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	var logs lockedBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-debug", "-endpoint=" + filepath.Join(t.TempDir(), "s.sock"), "-health-addr=", "-kubeconfig=/nonexistent"}, env(nil), io.Discard, &logs)
	}()
	waitFor(t, func() error {
		if !strings.Contains(logs.String(), `"msg":"serving"`) {
			return errors.New("not serving yet")
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), `"msg":"-debug is deprecated: use -log-level=debug","logLevel":"debug"`) {
		t.Errorf("-debug: no deprecation warning naming the debug level:\n%s", logs.String())
	}
}

func TestVersionFlag(t *testing.T) {
	want := currentVersion()
	for _, tc := range []struct {
		output string
		decode func([]byte, any) error
	}{
		{"json", json.Unmarshal},
		{"json-pretty", json.Unmarshal},
		{"yaml", yaml.Unmarshal},
	} {
		var out bytes.Buffer
		if err := run(t.Context(), []string{"-version", "-output=" + tc.output}, env(nil), &out, io.Discard); err != nil {
			t.Fatalf("-output=%s: %v", tc.output, err)
		}
		var got versionInfo
		if err := tc.decode(out.Bytes(), &got); err != nil {
			t.Fatalf("-output=%s printed %q: %v", tc.output, out.String(), err)
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("-output=%s (-want +got):\n%s", tc.output, d)
		}
		if lines := strings.Count(out.String(), "\n"); (tc.output == "json") != (lines == 1) {
			t.Errorf("-output=%s printed %d lines: %q", tc.output, lines, out.String())
		}
	}
	var out bytes.Buffer
	if err := run(t.Context(), []string{"-version"}, env(nil), &out, io.Discard); err != nil || !strings.HasPrefix(out.String(), `{"major":`) {
		t.Errorf("-version prints %q, %v; want one JSON line by default, as the peer", out.String(), err)
	}
	if err := run(t.Context(), []string{"-version", "-output=xml"}, env(nil), io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "-output") {
		t.Errorf("-output=xml: %v, want an error naming -output", err)
	}
	if want.GitVersion != version || want.Platform != runtime.GOOS+"/"+runtime.GOARCH || want.GoVersion != runtime.Version() {
		t.Errorf("version info %+v", want)
	}
}

func TestVersionSemver(t *testing.T) {
	old := version
	t.Cleanup(func() { version = old })
	version = "v1.4.0-rc.1"
	if v := currentVersion(); v.Major != "1" || v.Minor != "4" || v.Patch != "0-rc.1" {
		t.Errorf("v1.4.0-rc.1 → %q %q %q", v.Major, v.Minor, v.Patch)
	}
	version = "dev"
	if v := currentVersion(); v.Major != "" || v.GitVersion != "dev" {
		t.Errorf("dev → %+v", v)
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

// TestFlagsDocumented holds docs/reference.md's flag tables to the flags:
// each flag the provider has is in a table row, and each row names a flag.
func TestFlagsDocumented(t *testing.T) {
	b, err := os.ReadFile("../../docs/reference.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	row := regexp.MustCompile(`(?m)^\| ([^|]+)\|`)
	name := regexp.MustCompile("`-([a-z-]+)`")
	for _, r := range row.FindAllStringSubmatch(string(b), -1) {
		for _, n := range name.FindAllStringSubmatch(r[1], -1) {
			documented[n[1]] = true
		}
	}
	fs := newFlagSet(&flags{}, io.Discard)
	fs.VisitAll(func(f *flag.Flag) {
		if !documented[f.Name] {
			t.Errorf("-%s is in no flag table of docs/reference.md", f.Name)
		}
		delete(documented, f.Name)
	})
	for n := range documented { // what no flag took
		t.Errorf("docs/reference.md has a row for -%s, which is no flag", n)
	}
}
