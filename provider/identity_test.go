package provider_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	vaultapi "github.com/hashicorp/vault/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	"github.com/okevault/vault-csi-provider/provider"
	"github.com/okevault/vault-csi-provider/test/testbed"
)

// identity is a service account with its own role, policy and secret.
type identity struct {
	ns, sa, role, path, value string
}

// isolatedIdentities sets up identities whose policies each read only their
// own path: two namespaces with a service account of the same name, and a
// second role for one of those accounts.
func isolatedIdentities(t *testing.T, kube *testbed.Kube, v *testbed.Vault) []identity {
	t.Helper()
	ids := []identity{
		{ns: "race-a", sa: "app", role: "race-a"},
		{ns: "race-b", sa: "app", role: "race-b"},
		{ns: "race-a", sa: "app", role: "race-c"},
	}
	ctx := t.Context()
	for i := range ids {
		id := &ids[i]
		id.path = "kv1/race/" + id.role
		id.value = fmt.Sprintf("value-of-%s-%d", id.role, i)
		if err := kube.CreateServiceAccount(ctx, id.ns, id.sa); err != nil {
			t.Fatal(err)
		}
		if err := v.Client.Sys().PutPolicyWithContext(ctx, id.role, fmt.Sprintf("path %q { capabilities = [\"read\"] }", id.path)); err != nil {
			t.Fatal(err)
		}
		if _, err := v.Client.Logical().WriteWithContext(ctx, "auth/kubernetes/role/"+id.role, map[string]any{
			"bound_service_account_names": []string{id.sa}, "bound_service_account_namespaces": []string{id.ns},
			"audience": "vault", "token_policies": []string{id.role}, "token_ttl": "1h",
		}); err != nil {
			t.Fatal(err)
		}
		if _, err := v.Client.Logical().WriteWithContext(ctx, id.path, map[string]any{"v": id.value}); err != nil {
			t.Fatal(err)
		}
	}
	return ids
}

// TestConcurrentFirstMountsNeverShareTokens: pods of different identities
// mounting at the same moment on a cold cache each get their own Vault
// token. A shared token would read another identity's path and be denied;
// the retry after a 403 could hide that from the pod, so Vault's audit log
// must show no denial at all. Run with -race.
func TestConcurrentFirstMountsNeverShareTokens(t *testing.T) {
	kube, v := realBed(t)
	ids := isolatedIdentities(t, kube, v)
	const rounds, podsPerIdentity = 10, 4
	type podOf struct {
		id  identity
		p   pod
		tok string
	}
	var pods []podOf
	for i, id := range ids {
		for j := range podsPerIdentity {
			p, tok := podToken(t, kube, id.ns, id.sa, fmt.Sprintf("race-%d-%d", i, j))
			pods = append(pods, podOf{id, p, tok})
		}
	}
	for round := range rounds {
		s := serve(t, provider.Options{}) // a cold login cache every round
		var wg sync.WaitGroup
		start := make(chan struct{})
		errs := make(chan error, len(pods))
		for _, po := range pods {
			wg.Go(func() {
				<-start
				params := map[string]string{"roleName": po.id.role, "vaultAddress": v.Addr, "objects": "- {objectName: v, secretPath: " + po.id.path + ", secretKey: v}"}
				resp, err := s.client.Mount(t.Context(), request(t, po.p, params, "vault", po.tok))
				switch {
				case err != nil:
					errs <- fmt.Errorf("round %d, %s/%s role %s: %w", round, po.id.ns, po.id.sa, po.id.role, err)
				case files(resp)["v"] != po.id.value:
					errs <- fmt.Errorf("round %d, %s/%s role %s read %q", round, po.id.ns, po.id.sa, po.id.role, files(resp)["v"])
				}
			})
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	}
	for _, id := range ids {
		if n, err := v.AuditErrors(id.path); err != nil || n != 0 {
			t.Errorf("Vault denied %d reads of %s (%v): a token crossed identities", n, id.path, err)
		}
		if n := auditCount(t, id.path); n < rounds {
			t.Errorf("%d reads of %s in %d rounds: the mounts did not reach Vault", n, id.path, rounds)
		}
	}
}

// TestVaultTokenInEnvironmentIsIgnored runs the provider binary with a root
// token in VAULT_TOKEN and in ~/.vault-token: a pod whose role lacks a path
// is still denied it, and the log warns without printing the token.
func TestVaultTokenInEnvironmentIsIgnored(t *testing.T) {
	kube, v := realBed(t)
	root, err := v.Client.Auth().Token().CreateWithContext(t.Context(), &vaultapi.TokenCreateRequest{Policies: []string{"root"}, TTL: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	rootToken := root.Auth.ClientToken
	home := t.TempDir()
	if err := os.WriteFile(filepath.Join(home, ".vault-token"), []byte(rootToken), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Client.Logical().WriteWithContext(t.Context(), "kv1/root-only", map[string]any{"v": "only-root-reads-this"}); err != nil {
		t.Fatal(err)
	}
	prov := testbed.StartProvider(t, testbed.ProviderOptions{
		ProvidersDir: t.TempDir(),
		Args:         []string{"-vault-addr=" + v.Addr, "-log-level=trace"},
		Env:          []string{"VAULT_TOKEN=" + rootToken, "HOME=" + home},
	})
	conn, err := grpc.NewClient("unix://"+prov.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	client := v1alpha1.NewCSIDriverProviderClient(conn)

	// The reader role may read kv1/*, but not sys/ nor secret/metadata/.
	p, tok := podToken(t, kube, readerNS, readerSA, "env-token")
	for _, path := range []string{"secret/metadata/testapp", "sys/policies/acl/root"} {
		resp, err := client.Mount(t.Context(), request(t, p, map[string]string{"roleName": readerRole, "objects": "- {objectName: a, secretPath: " + path + "}"}, "vault", tok))
		wantCode(t, resp, err, codes.PermissionDenied, path)
	}
	resp, err := client.Mount(t.Context(), request(t, p, map[string]string{"roleName": readerRole, "objects": "- {objectName: a, secretPath: kv1/root-only, secretKey: v}"}, "vault", tok))
	if err != nil || files(resp)["a"] != "only-root-reads-this" {
		t.Fatalf("a path in the role's policy: %v %v", files(resp), err)
	}
	// Without a token in the request, the pod's login is the only way in.
	_, err = client.Mount(t.Context(), request(t, p, map[string]string{"roleName": readerRole, "objects": "- {objectName: a, secretPath: kv1/root-only, secretKey: v}"}, "vault", ""))
	wantCode(t, nil, err, codes.FailedPrecondition)

	logs := prov.Logs()
	if !strings.Contains(logs, "ignoring VAULT_TOKEN") {
		t.Errorf("no warning about VAULT_TOKEN in the log:\n%s", logs)
	}
	if leaks := testbed.FindLeaks(map[string]string{"provider log": logs}, []string{rootToken, tok}); len(leaks) > 0 {
		t.Errorf("the log shows a token: %v", leaks)
	}
}

// TestMountResponseTooLarge: files that would not fit in the driver's 4 MiB
// message fail the mount with ResourceExhausted before anything is sent;
// the same secret in fewer files mounts.
func TestMountResponseTooLarge(t *testing.T) {
	kube, v := realBed(t)
	// Vault caps one JSON string at 1 MiB: two keys under that make a
	// response small enough to read, and files enough to overflow.
	value := strings.Repeat("x", 900<<10)
	if _, err := v.Client.Logical().WriteWithContext(t.Context(), "kv1/big", map[string]any{"a": value, "b": value}); err != nil {
		t.Fatal(err)
	}
	s := serve(t, provider.Options{})
	p, tok := podToken(t, kube, readerNS, readerSA, "big")
	mount := func(n int) (*v1alpha1.MountResponse, error) {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "- {objectName: f%d, secretPath: kv1/big, secretKey: %c}\n", i, 'a'+i%2)
		}
		return s.client.Mount(t.Context(), request(t, p, map[string]string{"roleName": readerRole, "vaultAddress": v.Addr, "objects": b.String()}, "vault", tok))
	}
	resp, err := mount(4)
	if err != nil || len(resp.GetFiles()) != 4 {
		t.Fatalf("3.6 MB in four files: %v", err)
	}
	resp, err = mount(5)
	wantCode(t, resp, err, codes.ResourceExhausted, "5 files", "4194304", "--max-call-recv-msg-size", "-max-response-size")
	if !strings.Contains(s.logs.String(), `"code":"ResourceExhausted"`) {
		t.Error("the refused mount was not logged with its code")
	}
}

// TestVaultResponseTooLarge: a single Vault response over 4 MiB is refused
// as ResourceExhausted, not Unavailable, which the driver would retry for
// ever.
func TestVaultResponseTooLarge(t *testing.T) {
	kube, v := realBed(t)
	value := strings.Repeat("y", 900<<10) // under Vault's 1 MiB JSON string cap
	data := map[string]any{}
	for _, k := range []string{"a", "b", "c", "d", "e"} {
		data[k] = value
	}
	if _, err := v.Client.Logical().WriteWithContext(t.Context(), "kv1/huge", data); err != nil {
		t.Fatal(err)
	}
	s := serve(t, provider.Options{})
	p, tok := podToken(t, kube, readerNS, readerSA, "huge")
	resp, err := s.client.Mount(t.Context(), request(t, p, map[string]string{
		"roleName": readerRole, "vaultAddress": v.Addr, "objects": "- {objectName: a, secretPath: kv1/huge, secretKey: a}",
	}, "vault", tok))
	wantCode(t, resp, err, codes.ResourceExhausted, "kv1/huge", "larger than 4194304 bytes")
}
