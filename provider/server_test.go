package provider_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	"github.com/okevault/vault-csi-provider/internal/cache"
	"github.com/okevault/vault-csi-provider/internal/config"
	"github.com/okevault/vault-csi-provider/internal/logging"
	"github.com/okevault/vault-csi-provider/internal/vault"
	"github.com/okevault/vault-csi-provider/provider"
)

// syncBuffer collects log output from concurrent mounts.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// served is a provider on a real unix socket and a driver-side client.
type served struct {
	client v1alpha1.CSIDriverProviderClient
	logins *cache.Logins
	logs   *syncBuffer
}

// serve starts a provider with opts (Clients, Logins and Logger filled in
// when empty) on a unix socket in a temp dir, logging at trace level.
func serve(t *testing.T, opts provider.Options) *served {
	t.Helper()
	logs := &syncBuffer{}
	if opts.Logger == nil {
		l, err := logging.New(logs, "json", "trace")
		if err != nil {
			t.Fatal(err)
		}
		opts.Logger = l
	}
	if opts.Clients == nil {
		c, err := vault.NewClients(8, config.Addresses{})
		if err != nil {
			t.Fatal(err)
		}
		opts.Clients = c
	}
	if opts.Logins == nil {
		l, err := cache.New(100)
		if err != nil {
			t.Fatal(err)
		}
		opts.Logins = l
	}
	opts.Version = "test"
	sock := filepath.Join(t.TempDir(), "vault.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	v1alpha1.RegisterCSIDriverProviderServer(srv, provider.New(opts))
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)

	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &served{client: v1alpha1.NewCSIDriverProviderClient(conn), logins: opts.Logins, logs: logs}
}

// pod is what the driver tells the provider about the pod.
type pod struct{ namespace, name, uid, serviceAccount string }

// request builds a MountRequest as the driver does: the class parameters,
// the pod's fields and, when token is set, the tokens entry for audience.
func request(t *testing.T, p pod, params map[string]string, audience, token string) *v1alpha1.MountRequest {
	t.Helper()
	attrs := map[string]string{
		"secretProviderClass":                    "spc",
		"csi.storage.k8s.io/pod.name":            p.name,
		"csi.storage.k8s.io/pod.namespace":       p.namespace,
		"csi.storage.k8s.io/pod.uid":             p.uid,
		"csi.storage.k8s.io/serviceAccount.name": p.serviceAccount,
		"csi.storage.k8s.io/ephemeral":           "true",
	}
	for k, v := range params {
		attrs[k] = v
	}
	if token != "" {
		tokens, err := json.Marshal(map[string]any{audience: map[string]string{"token": token, "expirationTimestamp": time.Now().Add(time.Hour).Format(time.RFC3339)}})
		if err != nil {
			t.Fatal(err)
		}
		attrs["csi.storage.k8s.io/serviceAccount.tokens"] = string(tokens)
	}
	b, err := json.Marshal(attrs)
	if err != nil {
		t.Fatal(err)
	}
	return &v1alpha1.MountRequest{Attributes: string(b), TargetPath: "/var/lib/kubelet/pods/x/volumes/kubernetes.io~csi/v/mount", Permission: "420", Secrets: "{}"}
}

// wantCode asserts a failed mount: the gRPC code, words of the message, and
// no response at all (so no partial files).
func wantCode(t *testing.T, resp *v1alpha1.MountResponse, err error, want codes.Code, words ...string) {
	t.Helper()
	if resp != nil {
		t.Errorf("a failed mount returned a response with %d files", len(resp.GetFiles()))
	}
	st, _ := status.FromError(err)
	if st.Code() != want {
		t.Fatalf("code = %v (%v), want %v", st.Code(), err, want)
	}
	for _, w := range words {
		if !strings.Contains(st.Message(), w) {
			t.Errorf("message %q does not mention %q", st.Message(), w)
		}
	}
}

func TestVersion(t *testing.T) {
	s := serve(t, provider.Options{})
	v, err := s.client.Version(t.Context(), &v1alpha1.VersionRequest{Version: "v1alpha1"})
	if err != nil {
		t.Fatal(err)
	}
	if v.Version != "v1alpha1" || v.RuntimeName != "vault-csi-provider" || v.RuntimeVersion != "test" {
		t.Errorf("Version = %+v", v)
	}
}

var aPod = pod{namespace: "default", name: "app-0", uid: "uid-0", serviceAccount: "testapp"}

func TestMountRejectsBadInput(t *testing.T) {
	s := serve(t, provider.Options{})
	const objects = "- objectName: a\n  secretPath: secret/data/a\n  secretKey: k\n"
	for _, tc := range []struct {
		name   string
		params map[string]string
		words  []string
	}{
		{"no role", map[string]string{"objects": objects}, []string{"roleName"}},
		{"both mount paths", map[string]string{"roleName": "r", "objects": objects, "vaultKubernetesMountPath": "a", "vaultAuthMountPath": "b"}, []string{"vaultKubernetesMountPath", "vaultAuthMountPath"}},
		{"skip verify not a bool", map[string]string{"roleName": "r", "objects": objects, "vaultSkipTLSVerify": "maybe"}, []string{"vaultSkipTLSVerify"}},
		{"traversal", map[string]string{"roleName": "r", "objects": "- objectName: ../etc/passwd\n  secretPath: secret/data/a\n"}, []string{"objects[0].objectName"}},
		{"absolute", map[string]string{"roleName": "r", "objects": "- objectName: /etc/passwd\n  secretPath: secret/data/a\n"}, []string{"objects[0].objectName"}},
		{"duplicate names", map[string]string{"roleName": "r", "objects": objects + objects}, []string{"objects[1].objectName"}},
		{"bad mode", map[string]string{"roleName": "r", "objects": objects + "  filePermission: \"999\"\n"}, []string{"objects[0].filePermission"}},
		{"bad encoding", map[string]string{"roleName": "r", "objects": objects + "  encoding: rot13\n"}, []string{"objects[0].encoding"}},
		{"bad method", map[string]string{"roleName": "r", "objects": objects + "  method: DELETE\n"}, []string{"objects[0].method"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := s.client.Mount(t.Context(), request(t, aPod, tc.params, "vault", "a.b.c"))
			wantCode(t, resp, err, codes.InvalidArgument, tc.words...)
		})
	}
	t.Run("attributes not JSON", func(t *testing.T) {
		resp, err := s.client.Mount(t.Context(), &v1alpha1.MountRequest{Attributes: "{", TargetPath: "/t", Permission: "420"})
		wantCode(t, resp, err, codes.InvalidArgument, "attributes")
	})
}

func TestMountWithoutTokenSaysWhatToDo(t *testing.T) {
	s := serve(t, provider.Options{})
	params := map[string]string{"roleName": "r", "objects": "- objectName: a\n  secretPath: secret/data/a\n"}
	resp, err := s.client.Mount(t.Context(), request(t, aPod, params, "vault", ""))
	wantCode(t, resp, err, codes.FailedPrecondition, "tokenRequests", `"vault"`)
}

func TestMountLogsOneLinePerMount(t *testing.T) {
	s := serve(t, provider.Options{})
	params := map[string]string{"roleName": "r", "objects": "- objectName: a\n  secretPath: secret/data/a\n", "unknownKey": "x"}
	_, _ = s.client.Mount(context.Background(), request(t, aPod, params, "vault", ""))
	var mountLines int
	for _, line := range strings.Split(strings.TrimSpace(s.logs.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line is not JSON: %s", line)
		}
		if rec["msg"] == "mount failed" {
			mountLines++
			if rec["namespace"] != "default" || rec["pod"] != "app-0" || rec["code"] != "FailedPrecondition" {
				t.Errorf("mount line lacks pod or code: %v", rec)
			}
		}
		if rec["level"] == "DEBUG" && !strings.Contains(line, "unknownKey") {
			t.Errorf("unexpected debug line %s", line)
		}
	}
	if mountLines != 1 {
		t.Errorf("%d mount lines, want 1:\n%s", mountLines, s.logs.String())
	}
}
