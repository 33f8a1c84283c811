package testbed_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	vaultapi "github.com/hashicorp/vault/api"
	"google.golang.org/grpc"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	"github.com/okevault/vault-csi-provider/test/testbed"
)

// The apiserver and Vault are shared by the package's tests (each ~1-4 s to
// start); drivers are started per test.
var shared struct {
	mu       sync.Mutex
	kube     *testbed.Kube
	kubeErr  error
	vault    *testbed.Vault
	vaultErr error
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	shared.mu.Lock()
	err := errors.Join(shared.vault.Close(), shared.kube.Close())
	shared.mu.Unlock()
	if err != nil {
		fmt.Fprintln(os.Stderr, "testbed: close shared parts:", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts real parts; skipped under -short")
	}
}

func sharedKube(t *testing.T) *testbed.Kube {
	t.Helper()
	skipShort(t)
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.kube == nil && shared.kubeErr == nil {
		shared.kube, shared.kubeErr = testbed.NewKube(context.Background(), testbed.KubeOptions{})
	}
	if shared.kubeErr != nil {
		t.Fatal(shared.kubeErr)
	}
	testbed.LogOnFailure(t, shared.kube)
	return shared.kube
}

func sharedVault(t *testing.T) *testbed.Vault {
	t.Helper()
	skipShort(t)
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.vault == nil && shared.vaultErr == nil {
		shared.vault, shared.vaultErr = testbed.NewVault(context.Background(), testbed.VaultOptions{})
	}
	if shared.vaultErr != nil {
		t.Fatal(shared.vaultErr)
	}
	testbed.LogOnFailure(t, shared.vault)
	return shared.vault
}

// jwtClaims decodes a JWT's payload without verifying it.
func jwtClaims(t *testing.T, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts, want 3", len(parts))
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatalf("decode token payload: %v", err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatalf("decode token claims: %v", err)
	}
	return claims
}

func TestKube(t *testing.T) {
	kube := sharedKube(t)
	ctx := t.Context()

	v, err := kube.Client.Discovery().ServerVersion()
	if err != nil {
		t.Fatalf("server version: %v", err)
	}
	if v.GitVersion != "v1.37.2" {
		t.Errorf("apiserver version %s, want v1.37.2", v.GitVersion)
	}

	const ns = "smoke-kube"
	for range 2 { // idempotent
		if err := kube.CreateServiceAccount(ctx, ns, "app"); err != nil {
			t.Fatal(err)
		}
	}
	pod, err := kube.CreatePod(ctx, ns, "app-0", "app")
	if err != nil {
		t.Fatal(err)
	}
	if pod.UID == "" || pod.Spec.NodeName != testbed.NodeName {
		t.Fatalf("pod uid %q node %q", pod.UID, pod.Spec.NodeName)
	}

	token, err := kube.Token(ctx, ns, "app", "vault", pod, 0)
	if err != nil {
		t.Fatal(err)
	}
	claims := jwtClaims(t, token)
	if claims["iss"] != testbed.ServiceAccountIssuer || claims["sub"] != "system:serviceaccount:"+ns+":app" {
		t.Errorf("iss %v sub %v", claims["iss"], claims["sub"])
	}
	if aud, _ := claims["aud"].([]any); len(aud) != 1 || aud[0] != "vault" {
		t.Errorf("aud %v, want [vault]", claims["aud"])
	}
	k8s, _ := claims["kubernetes.io"].(map[string]any)
	if p, _ := k8s["pod"].(map[string]any); p["name"] != pod.Name || p["uid"] != string(pod.UID) {
		t.Errorf("token not bound to the pod: kubernetes.io.pod = %v", k8s["pod"])
	}

	// The apiserver itself accepts the token for its audience.
	review, err := kube.Client.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: []string{"vault"}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !review.Status.Authenticated || review.Status.User.Username != "system:serviceaccount:"+ns+":app" {
		t.Errorf("token review: authenticated=%t user=%q error=%q", review.Status.Authenticated, review.Status.User.Username, review.Status.Error)
	}

	// Apply: multi-document, server-side, repeatable.
	docs := []byte(`apiVersion: v1
kind: ConfigMap
metadata: {name: one, namespace: smoke-kube}
data: {k: "1"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: two, namespace: smoke-kube}
data: {k: "2"}
`)
	for range 2 {
		if err := kube.Apply(ctx, docs); err != nil {
			t.Fatal(err)
		}
	}
	cm, err := kube.Client.CoreV1().ConfigMaps(ns).Get(ctx, "two", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cm.Data["k"] != "2" {
		t.Errorf("configmap two: %v", cm.Data)
	}
	if _, err := os.Stat(kube.KubeconfigPath); err != nil {
		t.Errorf("kubeconfig: %v", err)
	}
}

// login logs in at auth/<mount>/login with a fresh client (no root token).
func login(ctx context.Context, t *testing.T, v *testbed.Vault, mount, role, jwt string) (*vaultapi.Client, error) {
	t.Helper()
	c, err := v.Client.Clone()
	if err != nil {
		t.Fatal(err)
	}
	c.ClearToken()
	s, err := c.Logical().WriteWithContext(ctx, "auth/"+mount+"/login", map[string]any{"role": role, "jwt": jwt})
	if err != nil {
		return nil, err
	}
	if s == nil || s.Auth == nil || s.Auth.ClientToken == "" {
		t.Fatalf("login at %s: no auth in response", mount)
	}
	c.SetToken(s.Auth.ClientToken)
	return c, nil
}

func wantStatus(t *testing.T, err error, code int) {
	t.Helper()
	var re *vaultapi.ResponseError
	if !errors.As(err, &re) {
		t.Fatalf("login error %v, want a Vault response error %d", err, code)
	}
	if re.StatusCode != code {
		t.Errorf("login status %d (%v), want %d", re.StatusCode, re.Errors, code)
	}
}

func TestVaultKubernetesAuth(t *testing.T) {
	kube, vault := sharedKube(t), sharedVault(t)
	ctx := t.Context()
	if err := vault.SeedScenario(ctx, kube); err != nil {
		t.Fatal(err)
	}
	s := vault.Scenario()
	if s.SecretData["password"] == "" {
		t.Fatalf("scenario secret data: %v", s.SecretData)
	}
	mount, err := vault.Client.Sys().GetMountWithContext(ctx, s.KVMount)
	if err != nil {
		t.Fatal(err)
	}
	if mount.Type != "kv" || mount.Options["version"] != "2" {
		t.Errorf("%s/ is %s version %q, want kv version 2", s.KVMount, mount.Type, mount.Options["version"])
	}
	if err := kube.CreateServiceAccount(ctx, s.Namespace, "intruder"); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name           string
		serviceAccount string
		audience       string
		wantStatus     int // 0: login succeeds
	}{
		{"testapp", s.ServiceAccount, s.Audience, 0},
		{"other service account", "intruder", s.Audience, http.StatusForbidden},
		{"wrong audience", s.ServiceAccount, "not-vault", http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod, err := kube.CreatePod(ctx, s.Namespace, "k8sauth-"+strings.ReplaceAll(tt.name, " ", "-"), tt.serviceAccount)
			if err != nil {
				t.Fatal(err)
			}
			jwt, err := kube.Token(ctx, s.Namespace, tt.serviceAccount, tt.audience, pod, 0)
			if err != nil {
				t.Fatal(err)
			}
			c, err := login(ctx, t, vault, s.AuthMount, s.Role, jwt)
			if tt.wantStatus != 0 {
				wantStatus(t, err, tt.wantStatus)
				return
			}
			if err != nil {
				t.Fatalf("login: %v", err)
			}
			got, err := c.KVv2(s.KVMount).Get(ctx, s.SecretPath)
			if err != nil {
				t.Fatalf("read %s/data/%s as %s: %v", s.KVMount, s.SecretPath, tt.serviceAccount, err)
			}
			if diff := cmp.Diff(toAny(s.SecretData), got.Data); diff != "" {
				t.Errorf("secret (-seeded +read):\n%s", diff)
			}
		})
	}
}

func toAny(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func TestVaultJWTAuth(t *testing.T) {
	kube, vault := sharedKube(t), sharedVault(t)
	ctx := t.Context()
	if err := vault.SeedScenario(ctx, kube); err != nil {
		t.Fatal(err)
	}
	s := vault.Scenario()
	const mount = "jwt"
	if err := vault.ConfigureJWTAuth(ctx, kube, mount); err != nil {
		t.Fatal(err)
	}
	_, err := vault.Client.Logical().WriteWithContext(ctx, "auth/"+mount+"/role/testapp", map[string]any{
		"role_type":       "jwt",
		"user_claim":      "sub",
		"bound_audiences": []string{s.Audience},
		"bound_subject":   "system:serviceaccount:" + s.Namespace + ":" + s.ServiceAccount,
		"bound_claims": map[string]any{
			"/kubernetes.io/namespace":           s.Namespace,
			"/kubernetes.io/serviceaccount/name": s.ServiceAccount,
		},
		"token_policies": []string{s.Policy},
		"token_ttl":      "1h",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := kube.CreateServiceAccount(ctx, s.Namespace, "intruder"); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name           string
		serviceAccount string
		audience       string
		wantErr        bool
	}{
		{"testapp", s.ServiceAccount, s.Audience, false},
		{"other service account", "intruder", s.Audience, true},
		{"wrong audience", s.ServiceAccount, "not-vault", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			jwt, err := kube.Token(ctx, s.Namespace, tt.serviceAccount, tt.audience, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			c, err := login(ctx, t, vault, mount, "testapp", jwt)
			if tt.wantErr {
				var re *vaultapi.ResponseError
				if !errors.As(err, &re) || re.StatusCode < 400 || re.StatusCode >= 500 {
					t.Fatalf("login error %v, want a 4xx Vault response", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("login: %v", err)
			}
			if _, err := c.KVv2(s.KVMount).Get(ctx, s.SecretPath); err != nil {
				t.Errorf("read with the jwt login: %v", err)
			}
		})
	}
}

// fakeProvider is a stand-in for this project's Vault provider (written in
// parallel elsewhere): just enough of a v1alpha1 provider to prove the real
// driver mounts, calls a provider over its socket and writes what it returns.
type fakeProvider struct {
	v1alpha1.UnimplementedCSIDriverProviderServer

	mu sync.Mutex
	// What the last Mount received. The tokens themselves are not kept, so
	// nothing can log them.
	attrs          map[string]string // attributes without the tokens
	tokenAudiences []string          // audiences with a non-empty token
}

func (p *fakeProvider) Version(context.Context, *v1alpha1.VersionRequest) (*v1alpha1.VersionResponse, error) {
	return &v1alpha1.VersionResponse{Version: "v1alpha1", RuntimeName: "fake", RuntimeVersion: "0.0.0"}, nil
}

func (p *fakeProvider) Mount(_ context.Context, req *v1alpha1.MountRequest) (*v1alpha1.MountResponse, error) {
	var attrs map[string]string
	if err := json.Unmarshal([]byte(req.GetAttributes()), &attrs); err != nil {
		return nil, fmt.Errorf("attributes: %w", err)
	}
	var tokens map[string]struct {
		Token string `json:"token"`
	}
	if raw := attrs[testbed.TokensAttribute]; raw != "" {
		if err := json.Unmarshal([]byte(raw), &tokens); err != nil {
			return nil, errors.New("tokens attribute is not JSON")
		}
	}
	delete(attrs, testbed.TokensAttribute)
	var auds []string
	for aud, tok := range tokens {
		if tok.Token != "" {
			auds = append(auds, aud)
		}
	}
	slices.Sort(auds)
	p.mu.Lock()
	p.attrs, p.tokenAudiences = attrs, auds
	p.mu.Unlock()

	return &v1alpha1.MountResponse{
		ObjectVersion: []*v1alpha1.ObjectVersion{{Id: "greeting", Version: "1"}},
		Files: []*v1alpha1.File{
			{Path: "greeting.txt", Mode: 0o640, Contents: []byte(attrs["greeting"] + " " + attrs["csi.storage.k8s.io/pod.name"])},
			// A nested path exercises Volume.Files through the driver's ..data symlinks.
			{Path: "nested/dir/note.txt", Mode: 0o600, Contents: []byte("nested")},
		},
	}, nil
}

// serveFake serves p on <dir>/fake.sock until the test ends.
func serveFake(t *testing.T, dir string, p *fakeProvider) {
	t.Helper()
	l, err := net.Listen("unix", filepath.Join(dir, "fake.sock"))
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	v1alpha1.RegisterCSIDriverProviderServer(srv, p)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-done; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			t.Errorf("fake provider: %v", err)
		}
	})
}

var spcpsResource = schema.GroupVersionResource{Group: "secrets-store.csi.x-k8s.io", Version: "v1", Resource: "secretproviderclasspodstatuses"}

func TestDriverMountsFakeProvider(t *testing.T) {
	kube := sharedKube(t)
	ctx := t.Context()
	driver := testbed.StartDriver(t, kube, testbed.DriverOptions{})
	fake := &fakeProvider{}
	serveFake(t, driver.ProvidersDir, fake)

	const ns = "smoke-driver"
	pod, err := kube.CreatePod(ctx, ns, "web-0", "web")
	if err != nil {
		t.Fatal(err)
	}
	spc := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "secrets-store.csi.x-k8s.io/v1",
		"kind":       "SecretProviderClass",
		"metadata":   map[string]any{"name": "fake", "namespace": ns},
		"spec": map[string]any{
			"provider":   "fake",
			"parameters": map[string]any{"greeting": "hello"},
		},
	}}
	spcResource := schema.GroupVersionResource{Group: "secrets-store.csi.x-k8s.io", Version: "v1", Resource: "secretproviderclasses"}
	if _, err := kube.Dynamic.Resource(spcResource).Namespace(ns).Create(ctx, spc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	vol, err := driver.Publish(ctx, testbed.PublishRequest{Pod: pod, SecretProviderClass: "fake"})
	if err != nil {
		t.Fatal(err)
	}
	fstype, err := testbed.MountType(vol.TargetPath)
	if err != nil {
		t.Fatal(err)
	}
	if fstype != "tmpfs" {
		t.Errorf("target path mount type %q, want tmpfs", fstype)
	}
	files, err := vol.Files()
	if err != nil {
		t.Fatal(err)
	}
	wantFiles := map[string][]byte{"greeting.txt": []byte("hello web-0"), "nested/dir/note.txt": []byte("nested")}
	if diff := cmp.Diff(wantFiles, files); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
	modes, err := vol.Modes()
	if err != nil {
		t.Fatal(err)
	}
	wantModes := map[string]fs.FileMode{"greeting.txt": 0o640, "nested/dir/note.txt": 0o600}
	if diff := cmp.Diff(wantModes, modes); diff != "" {
		t.Errorf("modes (-want +got):\n%s", diff)
	}

	fake.mu.Lock()
	attrs, auds := fake.attrs, fake.tokenAudiences
	fake.mu.Unlock()
	if diff := cmp.Diff([]string{"vault"}, auds); diff != "" {
		t.Errorf("audiences with a token (-want +got):\n%s", diff)
	}
	for k, want := range map[string]string{
		"secretProviderClass":                    "fake",
		"csi.storage.k8s.io/pod.name":            pod.Name,
		"csi.storage.k8s.io/pod.namespace":       ns,
		"csi.storage.k8s.io/pod.uid":             string(pod.UID),
		"csi.storage.k8s.io/serviceAccount.name": "web",
		"csi.storage.k8s.io/ephemeral":           "true",
	} {
		if attrs[k] != want {
			t.Errorf("provider got %s=%q, want %q", k, attrs[k], want)
		}
	}

	// The driver records the mount in a SecretProviderClassPodStatus.
	st, err := kube.Dynamic.Resource(spcpsResource).Namespace(ns).Get(ctx, "web-0-"+ns+"-fake", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("SecretProviderClassPodStatus: %v", err)
	}
	mounted, _, _ := unstructured.NestedBool(st.Object, "status", "mounted")
	target, _, _ := unstructured.NestedString(st.Object, "status", "targetPath")
	if !mounted || target != vol.TargetPath {
		t.Errorf("pod status mounted=%t targetPath=%q, want true %q", mounted, target, vol.TargetPath)
	}

	// A restarted driver (as after a driver pod restart) leaves the mount
	// alone and can still unpublish it.
	if err := driver.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if fstype, _ := testbed.MountType(vol.TargetPath); fstype != "tmpfs" {
		t.Errorf("after driver restart: mount type %q, want tmpfs", fstype)
	}
	if err := vol.Unpublish(ctx); err != nil {
		t.Fatal(err)
	}
	if fstype, err := testbed.MountType(vol.TargetPath); err != nil || fstype != "" {
		t.Errorf("after unpublish: mount type %q (%v), want no mount", fstype, err)
	}
	if _, err := os.Stat(vol.TargetPath); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after unpublish: target path: %v, want it gone", err)
	}
}
