package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	"github.com/okevault/vault-csi-provider/test/testbed"
)

// The scenario: service accounts chaos/app-<i>, each with a Vault role
// app-<i> (audience vault) whose policy reads secret/data/chaos/*.
const (
	namespace = "chaos"
	policy    = "chaos"
	readAll   = `path "secret/data/chaos/*" { capabilities = ["read"] }`
	denyAll   = `path "secret/data/chaos/*" { capabilities = ["deny"] }`
	// identities is how many service accounts (and roles) the scenario has.
	identities = 20
)

// secret is what the mounts read: secret/data/chaos/db.
var secret = map[string]string{"username": "chaos-user", "password": "chaos-pass"}

// objects is the SecretProviderClass's objects parameter: both keys.
const objects = `
- objectName: username
  secretPath: secret/data/chaos/db
  secretKey: username
- objectName: password
  secretPath: secret/data/chaos/db
  secretKey: password
`

// configure sets Vault up for the scenario; run again after a restart, as
// the dev server forgets everything.
func configure(ctx context.Context) error {
	v := bed.vault.Client
	steps := []func() error{
		func() error { return bed.vault.EnableAudit(ctx) },
		func() error { return bed.vault.ConfigureKubernetesAuth(ctx, bed.kube, "kubernetes") },
		func() error { return v.Sys().PutPolicyWithContext(ctx, policy, readAll) },
		func() error {
			m := make(map[string]any, len(secret))
			for k, s := range secret {
				m[k] = s
			}
			_, err := v.KVv2("secret").Put(ctx, "chaos/db", m)
			return err
		},
	}
	for i := range identities {
		steps = append(steps,
			func() error { return bed.kube.CreateServiceAccount(ctx, namespace, sa(i)) },
			func() error { return putRole(ctx, sa(i), "1h") })
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

func sa(i int) string { return fmt.Sprintf("app-%d", i) }

// putRole binds role name to the service account of the same name.
func putRole(ctx context.Context, name, ttl string) error {
	_, err := bed.vault.Client.Logical().WriteWithContext(ctx, "auth/kubernetes/role/"+name, map[string]any{
		"bound_service_account_names": []string{name}, "bound_service_account_namespaces": []string{namespace},
		"audience": "vault", "token_policies": []string{policy}, "token_ttl": ttl, "token_max_ttl": ttl,
	})
	return err
}

// provider is one provider process and a driver-like client on its socket.
type provider struct {
	*testbed.Provider
	client    v1alpha1.CSIDriverProviderClient
	pprofAddr string
}

// startProvider starts a provider with the bed's Vault (or vaultAddr, when
// given through args), a short mount deadline and pprof, in providersDir
// (a new one when empty).
func startProvider(t *testing.T, providersDir string, args ...string) *provider {
	t.Helper()
	if providersDir == "" {
		providersDir = t.TempDir()
	}
	pprofAddr := freeAddr(t)
	base := []string{
		"-vault-addr=" + bed.vault.Addr,
		"-mount-timeout=" + mountTimeout.String(),
		"-pprof-addr=" + pprofAddr,
		"-log-level=debug",
	}
	p, err := testbed.NewProvider(t.Context(), testbed.ProviderOptions{
		Binary: bed.bin, ProvidersDir: providersDir, Kube: bed.kube, Args: append(base, args...),
	})
	if err != nil {
		t.Fatal(err)
	}
	testbed.LogOnFailure(t, p)
	t.Cleanup(func() {
		// Faults make the provider log its most varied errors: none may
		// carry a pod's token or a secret value.
		if leaks := testbed.FindLeaks(map[string]string{"provider log": p.Logs()}, secretsUsed()); len(leaks) > 0 {
			t.Errorf("the provider's log leaks: %v", leaks)
		}
		if err := p.Close(); err != nil {
			t.Errorf("provider: %v", err)
		}
	})
	conn, err := grpc.NewClient("unix://"+p.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &provider{Provider: p, client: v1alpha1.NewCSIDriverProviderClient(conn), pprofAddr: pprofAddr}
}

// pod is a pod of one of the scenario's service accounts and the token
// kubelet would hand the driver for it.
type pod struct {
	name, uid, sa string
	token         string
	expires       time.Time
}

var podSeq struct {
	sync.Mutex
	n      int
	tokens []string // every pod token handed out, for the leak check
}

// secretsUsed is what no provider log may show: the pods' tokens and the
// secret's values.
func secretsUsed() []string {
	podSeq.Lock()
	defer podSeq.Unlock()
	out := append([]string(nil), podSeq.tokens...)
	for _, v := range secret {
		out = append(out, v)
	}
	return out
}

// newPods creates n pods of service account sa with pod-bound tokens.
func newPods(t *testing.T, sa string, n int) []*pod {
	t.Helper()
	out := make([]*pod, n)
	for i := range out {
		podSeq.Lock()
		podSeq.n++
		name := fmt.Sprintf("%s-%d", sa, podSeq.n)
		podSeq.Unlock()
		p, err := bed.kube.CreatePod(t.Context(), namespace, name, sa)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := bed.kube.Token(t.Context(), namespace, sa, "vault", p, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		podSeq.Lock()
		podSeq.tokens = append(podSeq.tokens, tok)
		podSeq.Unlock()
		out[i] = &pod{name: name, uid: string(p.UID), sa: sa, token: tok, expires: time.Now().Add(time.Hour)}
	}
	return out
}

// request is the MountRequest the driver sends for pd, reading the scenario
// secret with role (the pod's service account's role unless given).
func (pd *pod) request(t testing.TB, role string) *v1alpha1.MountRequest {
	t.Helper()
	if role == "" {
		role = pd.sa
	}
	tokens, err := json.Marshal(map[string]any{"vault": map[string]string{
		"token": pd.token, "expirationTimestamp": pd.expires.UTC().Format(time.RFC3339),
	}})
	if err != nil {
		t.Fatal(err)
	}
	attrs, err := json.Marshal(map[string]string{
		"roleName":                                 role,
		"objects":                                  objects,
		"secretProviderClass":                      "chaos",
		"csi.storage.k8s.io/pod.name":              pd.name,
		"csi.storage.k8s.io/pod.namespace":         namespace,
		"csi.storage.k8s.io/pod.uid":               pd.uid,
		"csi.storage.k8s.io/serviceAccount.name":   pd.sa,
		"csi.storage.k8s.io/ephemeral":             "true",
		"csi.storage.k8s.io/serviceAccount.tokens": string(tokens),
	})
	if err != nil {
		t.Fatal(err)
	}
	return &v1alpha1.MountRequest{Attributes: string(attrs), TargetPath: "/var/lib/kubelet/pods/" + pd.uid + "/volumes/chaos", Permission: "420", Secrets: "null"}
}

// result is one Mount as the driver saw it.
type result struct {
	err  error
	took time.Duration
}

// mount calls Mount as the driver does, with a deadline well past the
// provider's own, so that a provider that hangs shows as a hang. A success
// must carry exactly the scenario's files: a partial set is an error here.
func (p *provider) mount(ctx context.Context, t testing.TB, pd *pod) result {
	ctx, cancel := context.WithTimeout(ctx, 3*mountTimeout)
	defer cancel()
	start := time.Now()
	resp, err := p.client.Mount(ctx, pd.request(t, ""))
	r := result{err: err, took: time.Since(start)}
	if err == nil {
		r.err = checkFiles(resp)
	}
	return r
}

// checkFiles is nil when resp holds exactly the scenario's two files.
func checkFiles(resp *v1alpha1.MountResponse) error {
	got := map[string]string{}
	for _, f := range resp.GetFiles() {
		got[f.GetPath()] = string(f.GetContents())
	}
	if len(got) != len(secret) {
		return fmt.Errorf("partial mount: %d files, want %d", len(got), len(secret))
	}
	for k, v := range secret {
		if got[k] != v {
			return fmt.Errorf("file %s: wrong contents", k)
		}
	}
	return nil
}

// storm mounts every pod at once and returns the results in pod order.
func (p *provider) storm(ctx context.Context, t testing.TB, pods []*pod) []result {
	out := make([]result, len(pods))
	var wg sync.WaitGroup
	for i, pd := range pods {
		wg.Go(func() { out[i] = p.mount(ctx, t, pd) })
	}
	wg.Wait()
	return out
}

// recover mounts pd every 100ms until one succeeds, and returns how long
// that took from the call; it fails the test after limit.
func (p *provider) recover(t *testing.T, pd *pod, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	var last result
	for time.Since(start) < limit {
		if last = p.mount(t.Context(), t, pd); last.err == nil {
			return time.Since(start)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no successful mount within %s of the fault's end; last: %v", limit, last.err)
	return 0
}

// report logs a measured recovery bound in a form SECURITY.md's table is
// filled from: go test ./test/chaos -v | grep BOUND.
func report(t *testing.T, what string, d time.Duration) {
	t.Helper()
	t.Logf("BOUND %s: %s", what, d.Round(time.Millisecond))
}

// goroutines is the provider process's goroutine count, from pprof.
func (p *provider) goroutines(t *testing.T) int {
	t.Helper()
	resp, err := http.Get("http://" + p.pprofAddr + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`goroutine profile: total (\d+)`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("pprof: no goroutine total in %.100q", b)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// noLeak waits up to 15 s for the provider's goroutines to come back to at
// most baseline plus a few for pooled connections, and fails otherwise.
func (p *provider) noLeak(t *testing.T, baseline int) {
	t.Helper()
	const slack = 12 // idle keep-alive connections to Vault and the apiserver, 2 goroutines each
	var n int
	for range 150 {
		if n = p.goroutines(t); n <= baseline+slack {
			t.Logf("provider goroutines: %d (baseline %d)", n, baseline)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("provider goroutines: %d, baseline %d: a leak", n, baseline)
}

// codeOf is err's gRPC code name and message.
func codeOf(err error) (string, string) {
	s, _ := status.FromError(err)
	return s.Code().String(), s.Message()
}

// tokenAccessors lists the accessors of every token Vault holds that carries
// the scenario's policy: the provider's cached logins.
func tokenAccessors(ctx context.Context, c *vaultapi.Client) ([]string, error) {
	list, err := c.Logical().ListWithContext(ctx, "auth/token/accessors")
	if err != nil || list == nil {
		return nil, err
	}
	keys, _ := list.Data["keys"].([]any)
	var out []string
	for _, k := range keys {
		acc, _ := k.(string)
		s, err := c.Logical().WriteWithContext(ctx, "auth/token/lookup-accessor", map[string]any{"accessor": acc})
		if err != nil || s == nil {
			continue
		}
		pols, _ := s.Data["policies"].([]any)
		for _, p := range pols {
			if p == policy {
				out = append(out, acc)
			}
		}
	}
	return out, nil
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
