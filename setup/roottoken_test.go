package setup

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/okevault/vault-csi-provider/setup/deploy"
	"github.com/okevault/vault-csi-provider/test/testbed"
)

// rootTokens lists the display names of the valid root-policy tokens of
// the Vault c reaches (c holds a root token).
func rootTokens(t *testing.T, c *vaultapi.Client) []string {
	t.Helper()
	ctx := t.Context()
	accessors, err := c.Logical().ListWithContext(ctx, "auth/token/accessors")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, a := range accessors.Data["keys"].([]any) {
		s, err := c.Auth().Token().LookupAccessorWithContext(ctx, a.(string))
		if err != nil {
			t.Fatal(err)
		}
		if pols, _ := s.Data["policies"].([]any); len(pols) == 1 && pols[0] == "root" {
			names = append(names, fmt.Sprint(s.Data["display_name"]))
		}
	}
	return names
}

// operatorSecret makes the Secret bank-vaults leaves after init: the root
// token and one unseal key.
func operatorSecret(t *testing.T, kube *testbed.Kube, root, key string) {
	t.Helper()
	ctx := t.Context()
	if err := kube.CreateNamespace(ctx, "vault"); err != nil {
		t.Fatal(err)
	}
	// The reviewer of seedForBed, which deploy would make.
	if err := kube.CreateServiceAccount(ctx, "kube-system", "vault-tokenreview"); err != nil {
		t.Fatal(err)
	}
	_, err := kube.Client.CoreV1().Secrets("vault").Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "vault-unseal-keys"},
		Data:       map[string][]byte{keyRootToken: []byte(root), "vault-unseal-0": []byte(key)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

// clusterRunner is a runner that takes its token from the operator's
// Secret, reaching Vault at addr.
func (b *bed) clusterRunner(t *testing.T, addr string) (*Runner, *bytes.Buffer) {
	t.Helper()
	r, out := b.runner(t, seedForBed(t))
	c, err := NewVaultClient(addr, "", "", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	r.Vault, r.TokenFromCluster = c, true
	return r, out
}

// failingRevokeSelf is a proxy to Vault that fails every revoke-self.
func failingRevokeSelf(t *testing.T, vaultAddr string) string {
	t.Helper()
	u, err := url.Parse(vaultAddr)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/auth/token/revoke-self" {
			http.Error(w, `{"errors":["injected failure"]}`, http.StatusInternalServerError)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	return s.URL
}

// TestNoRootTokenLeftBehind against a real Vault: a run that dies after
// generating its token, and one whose revoke-self of the generated root
// token fails, leave tokens the next run revokes before anything else; a
// generate-root attempt setup did not start is not cancelled.
func TestNoRootTokenLeftBehind(t *testing.T) {
	b := startBed(t)
	ctx := t.Context()
	v := b.vault
	// The stored token is already revoked: every run generates one.
	operatorSecret(t, b.kube, "hvs.revoked-long-ago", devUnsealKey(t, v))
	want := rootTokens(t, v.Client) // the dev server's own

	// A run that dies after taking its token: Close never runs.
	died, out := b.clusterRunner(t, v.Addr)
	if err := died.connect(ctx); err != nil {
		t.Fatalf("connect: %v\n%s", err, out)
	}
	// A run whose revoke-self of the generated root token fails.
	failing, out := b.clusterRunner(t, failingRevokeSelf(t, v.Addr))
	if err := failing.connect(ctx); err == nil {
		t.Fatalf("connect with revoke-self failing: no error\n%s", out)
	}
	if left := rootTokens(t, v.Client); len(left) < len(want)+2 {
		t.Fatalf("root-policy tokens after the two runs: %q, want the dev server's and at least two left behind", left)
	}

	next, out := b.clusterRunner(t, v.Addr)
	if _, err := next.Apply(ctx, Stages{Configure: true}); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	if err := next.Close(ctx); err != nil {
		t.Fatalf("close: %v\n%s", err, out)
	}
	if left := rootTokens(t, v.Client); len(left) != len(want) {
		t.Errorf("root-policy tokens after the next run: %q, want only %q\n%s", left, want, out)
	}
	// The dead run's token, and the failing run's root and run tokens.
	if !strings.Contains(out.String(), "vault: revoked 3 token(s) that earlier runs generated and left") {
		t.Errorf("the next run does not say it revoked the 3 left tokens:\n%s", out)
	}

	// Someone else's generate-root attempt is left alone.
	st, err := v.Client.Sys().GenerateRootInitWithContext(ctx, "", "")
	if err != nil {
		t.Fatal(err)
	}
	other, out := b.clusterRunner(t, v.Addr)
	err = other.connect(ctx)
	if err == nil || !strings.Contains(err.Error(), "generate-root attempt") {
		t.Errorf("connect with another's generate-root attempt in progress: %v, want a refusal\n%s", err, out)
	}
	_ = other.Close(ctx)
	now, err := v.Client.Sys().GenerateRootStatusWithContext(ctx)
	if err != nil || !now.Started || now.Nonce != st.Nonce {
		t.Errorf("the other attempt: %+v, %v; want it still in progress (nonce %s)", now, err, st.Nonce)
	}
	// Told to, it cancels that attempt.
	other, out = b.clusterRunner(t, v.Addr)
	other.CancelGenerateRoot = true
	if err := other.connect(ctx); err != nil || !strings.Contains(out.String(), "as --cancel-generate-root asks") {
		t.Errorf("connect with CancelGenerateRoot: %v\n%s", err, out)
	}
	if err := other.Close(ctx); err != nil {
		t.Fatal(err)
	}

	// An attempt an interrupted run of setup left (its nonce recorded) is
	// cancelled without being told.
	st, err = v.Client.Sys().GenerateRootInitWithContext(ctx, "", "")
	if err != nil {
		t.Fatal(err)
	}
	rec := &tokenRecord{kube: b.kube.Client, namespace: "vault", name: "vault-setup-tokens"}
	if err := rec.set(ctx, recordNonce, st.Nonce); err != nil {
		t.Fatal(err)
	}
	again, out := b.clusterRunner(t, v.Addr)
	if err := again.connect(ctx); err != nil || !strings.Contains(out.String(), "cancelling the generate-root attempt an interrupted run left") {
		t.Errorf("connect after an interrupted run's attempt: %v\n%s", err, out)
	}
	if err := again.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if left := rootTokens(t, v.Client); len(left) != len(want) {
		t.Errorf("root-policy tokens at the end: %q, want only %q", left, want)
	}
	if accs, err := rec.accessors(ctx); err != nil || len(accs) > 0 {
		t.Errorf("recorded accessors at the end: %q, %v; want none", accs, err)
	}
}

// raftVault is a real Vault server on Raft storage (not a dev server),
// initialised with one key share and unsealed.
type raftVault struct {
	addr, root, key string
	client          *vaultapi.Client
}

func startRaftVault(t *testing.T) *raftVault {
	t.Helper()
	bin, err := testbed.Bin("vault")
	if err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hostport := l.Addr().String()
	_ = l.Close()
	addr := "http://" + hostport
	config := fmt.Sprintf(`storage "raft" {
  path    = %q
  node_id = "raft-0"
}
listener "tcp" {
  address     = %q
  tls_disable = true
}
api_addr      = %q
cluster_addr  = "https://127.0.0.1:1"
disable_mlock = true
`, dir, hostport, addr)
	if err := os.WriteFile(filepath.Join(dir, "vault.hcl"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &bytes.Buffer{}
	cmd := exec.Command(bin, "server", "-config="+filepath.Join(dir, "vault.hcl"))
	cmd.Env = []string{"HOME=" + dir, "PATH=" + os.Getenv("PATH")}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("raft vault log:\n%s", logs)
		}
	})
	c, err := NewVaultClient(addr, "", "", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for deadline := time.Now().Add(30 * time.Second); ; {
		if _, err = c.Sys().SealStatusWithContext(ctx); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	init, err := c.Sys().InitWithContext(ctx, &vaultapi.InitRequest{SecretShares: 1, SecretThreshold: 1})
	if err != nil {
		t.Fatalf("init: %v\n%s", err, logs)
	}
	if _, err := c.Sys().UnsealWithContext(ctx, init.Keys[0]); err != nil {
		t.Fatal(err)
	}
	c.SetToken(init.RootToken)
	waitActive(ctx, t, c)
	return &raftVault{addr: addr, root: init.RootToken, key: init.Keys[0], client: c}
}

// waitActive waits until Vault answers active and unsealed.
func waitActive(ctx context.Context, t *testing.T, c *vaultapi.Client) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; {
		h, err := c.Sys().HealthWithContext(ctx)
		if err == nil && h.Initialized && !h.Sealed && !h.Standby {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("vault not active: %+v, %v", h, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestRestoreRevokesRestoredRoot against a real Vault on Raft: a snapshot
// taken while bank-vaults' stored root token was valid brings it back on
// restore, and restore revokes it again.
func TestRestoreRevokesRestoredRoot(t *testing.T) {
	b := startBed(t)
	ctx := t.Context()
	v := startRaftVault(t)
	operatorSecret(t, b.kube, v.root, v.key)

	snap := &bytes.Buffer{}
	if err := v.client.Sys().RaftSnapshotWithContext(ctx, snap); err != nil {
		t.Fatal(err)
	}
	raftRunner := func() (*Runner, *bytes.Buffer) {
		r, out := b.clusterRunner(t, v.addr)
		r.Prepared.Deploy.Vault.Raft, r.Prepared.Deploy.Vault.Etcd = &deploy.Raft{}, nil
		return r, out
	}
	first, out := raftRunner()
	if _, err := first.Apply(ctx, Stages{Configure: true}); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	if err := first.Close(ctx); err != nil {
		t.Fatalf("close: %v\n%s", err, out)
	}
	if _, err := v.client.Auth().Token().LookupSelfWithContext(ctx); err == nil {
		t.Fatal("apply left the stored root token valid")
	}

	r, out := raftRunner()
	if err := r.Restore(ctx, bytes.NewReader(snap.Bytes()), true); err != nil {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	if err := r.Close(ctx); err != nil {
		t.Fatalf("close: %v\n%s", err, out)
	}
	if _, err := v.client.Auth().Token().LookupSelfWithContext(ctx); err == nil {
		t.Errorf("the restored stored root token is valid after restore\n%s", out)
	}
}
