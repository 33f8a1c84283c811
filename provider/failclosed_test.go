package provider_test

import (
	"net/http/httptest"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/okevault/vault-csi-provider/provider"
)

// TestIdentityRefusedBeforeLogin: a mount whose token is another pod's (its
// pod claim names another UID), or whose pod comes without a service
// account, is refused before the provider logs in: the server counts no
// login. It stands in for Vault because the point is that nothing reaches
// it.
func TestIdentityRefusedBeforeLogin(t *testing.T) {
	vault := &standIn{body: []byte(`{"data":{"k":"v"}}`)}
	srv := httptest.NewServer(vault)
	defer srv.Close()
	p := serve(t, provider.Options{})
	params := map[string]string{"roleName": "r", "vaultAddress": srv.URL, "objects": "- {objectName: k, secretPath: kv/a, secretKey: k}"}

	resp, err := p.client.Mount(t.Context(), request(t, podOf("web-0"), params, "vault", saToken("shop", "web", "web-1")))
	wantCode(t, resp, err, codes.PermissionDenied, "web-0-uid")
	noAccount := podOf("web-0")
	noAccount.serviceAccount = ""
	resp, err = p.client.Mount(t.Context(), request(t, noAccount, params, "vault", saToken("shop", "web", "web-0")))
	wantCode(t, resp, err, codes.InvalidArgument, "serviceAccount.name")
	if logins, _ := vault.counts(); logins != 0 {
		t.Errorf("%d logins for mounts that had to be refused", logins)
	}
}
