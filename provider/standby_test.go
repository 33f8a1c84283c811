package provider_test

import (
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/okevault/vault-csi-provider/internal/config"
	"github.com/okevault/vault-csi-provider/internal/vault"
	"github.com/okevault/vault-csi-provider/provider"
	"github.com/okevault/vault-csi-provider/test/testbed"
)

// TestRealStandbyRedirect runs against a real HA Vault of two servers whose
// standby cannot forward requests (clustering off), so it answers 307 with
// the active node's address. A class naming the standby mounts when the
// operator allows the active node too: the login and the read both follow
// the redirect. With only the standby allowed, the redirect is refused.
func TestRealStandbyRedirect(t *testing.T) {
	kube, _ := realBed(t)
	ctx := t.Context()
	nodes := testbed.StartVaultHA(t, kube.EtcdURL, 2)
	active, standby := nodes[0], nodes[1]
	if err := active.SeedScenario(ctx, kube); err != nil {
		t.Fatal(err)
	}
	sc := active.Scenario()

	// The case under test: the standby redirects rather than answers.
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, standby.Addr+"/v1/secret/data/testapp", http.NoBody)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Vault-Token", standby.RootToken)
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusTemporaryRedirect || !strings.HasPrefix(resp.Header.Get("Location"), active.Addr+"/") {
		t.Fatalf("standby answered %d to %q; want 307 to the active node %s", resp.StatusCode, resp.Header.Get("Location"), active.Addr)
	}

	p, tok := podToken(t, kube, sc.Namespace, sc.ServiceAccount, "standby-redirect")
	params := map[string]string{
		"roleName":     sc.Role,
		"vaultAddress": standby.Addr,
		"objects":      "- {objectName: username, secretPath: secret/data/testapp, secretKey: username}",
	}
	mount := func(allowList string) (map[string]string, error) {
		allowed, err := config.ParseAddresses(allowList)
		if err != nil {
			t.Fatal(err)
		}
		clients, err := vault.NewClients(8, allowed)
		if err != nil {
			t.Fatal(err)
		}
		s := serve(t, provider.Options{Defaults: config.Defaults{AllowedAddresses: allowed}, Clients: clients})
		resp, err := s.client.Mount(ctx, request(t, p, params, "vault", tok))
		if err != nil {
			return nil, err
		}
		return files(resp), nil
	}

	got, err := mount(standby.Addr + "," + active.Addr)
	if err != nil {
		t.Fatalf("mount through the standby with the active node allowed: %v", err)
	}
	if got["username"] != sc.SecretData["username"] {
		t.Errorf("files = %v, want the scenario's username", got)
	}

	_, err = mount(standby.Addr)
	wantCode(t, nil, err, codes.PermissionDenied, "redirected", "-allowed-vault-addresses")
}
