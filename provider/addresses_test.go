package provider_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/okevault/vault-csi-provider/internal/config"
	"github.com/okevault/vault-csi-provider/internal/vault"
	"github.com/okevault/vault-csi-provider/provider"
)

// TestAllowedVaultAddresses: with -allowed-vault-addresses, a class (or a
// pod's volume attribute: they arrive merged) naming another address is
// refused with InvalidArgument naming vaultAddress; a listed server that
// redirects elsewhere is refused with PermissionDenied. The redirecting
// server is a test server: a hostile one, which Vault is not.
func TestAllowedVaultAddresses(t *testing.T) {
	elsewhere := httptest.NewServer(&standIn{body: []byte(`{"data":{"k":"v"}}`)})
	defer elsewhere.Close()
	bouncer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://localhost:1"+r.URL.RequestURI(), http.StatusTemporaryRedirect)
	}))
	defer bouncer.Close()
	allowed, err := config.ParseAddresses(bouncer.URL)
	if err != nil {
		t.Fatal(err)
	}
	clients, err := vault.NewClients(8, allowed)
	if err != nil {
		t.Fatal(err)
	}
	p := serve(t, provider.Options{Defaults: config.Defaults{AllowedAddresses: allowed}, Clients: clients})
	params := map[string]string{"roleName": "r", "objects": "- {objectName: k, secretPath: kv/a, secretKey: k}"}

	params["vaultAddress"] = elsewhere.URL
	resp, err := p.client.Mount(t.Context(), request(t, podOf("web-0"), params, "vault", saToken("shop", "web", "web-0")))
	wantCode(t, resp, err, codes.InvalidArgument, "vaultAddress", "-allowed-vault-addresses")
	if logins, _ := elsewhere.Config.Handler.(*standIn).counts(); logins != 0 {
		t.Error("the provider reached an address not allowed")
	}

	params["vaultAddress"] = bouncer.URL
	resp, err = p.client.Mount(t.Context(), request(t, podOf("web-0"), params, "vault", saToken("shop", "web", "web-0")))
	wantCode(t, resp, err, codes.PermissionDenied, "redirected", "-allowed-vault-addresses")
}
