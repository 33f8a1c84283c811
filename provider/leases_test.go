package provider_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	"github.com/okevault/vault-csi-provider/internal/config"
	"github.com/okevault/vault-csi-provider/internal/leases"
	"github.com/okevault/vault-csi-provider/internal/podwatch"
	"github.com/okevault/vault-csi-provider/internal/redact"
	"github.com/okevault/vault-csi-provider/internal/vault"
	"github.com/okevault/vault-csi-provider/provider"
	"github.com/okevault/vault-csi-provider/test/testbed"
)

// Dynamic secrets on the real Vault: PKI certificates issued by a role with
// generate_lease, so each issue is a lease Vault counts and can revoke.

const (
	leaserSA   = "leaser"
	leaserRole = "leaser"
	leasedPKI  = "pki/issue/leased"
	leasedDB   = "database-leases"
	// leaserPolicy issues certificates and database credentials, and lets
	// -revoke-on-pod-delete revoke them (the default policy does not).
	leaserPolicy = `
path "` + leasedPKI + `" { capabilities = ["update"] }
path "` + leasedDB + `/creds/*" { capabilities = ["read"] }
path "sys/leases/revoke" { capabilities = ["update"] }
`
)

var leaseBed sync.Once

// leasedBed adds a PKI role with generate_lease and a Kubernetes-auth role
// for the leaser service account to the shared bed. Its tokens carry the
// default policy, which allows sys/leases/lookup and renew-self.
func leasedBed(t *testing.T) (*testbed.Kube, *testbed.Vault) {
	t.Helper()
	kube, v := realBed(t)
	leaseBed.Do(func() {
		ctx := t.Context()
		must := func(err error) {
			if err != nil {
				t.Fatal(err)
			}
		}
		_, err := v.Client.Logical().WriteWithContext(ctx, "pki/roles/leased", map[string]any{
			"allowed_domains": "example.com", "allow_subdomains": true, "max_ttl": "1h", "generate_lease": true,
		})
		must(err)
		must(v.Client.Sys().PutPolicyWithContext(ctx, "leaser", leaserPolicy))
		must(kube.CreateServiceAccount(ctx, readerNS, leaserSA))
		_, err = v.Client.Logical().WriteWithContext(ctx, "auth/kubernetes/role/"+leaserRole, map[string]any{
			"bound_service_account_names":      []string{leaserSA},
			"bound_service_account_namespaces": []string{readerNS},
			"audience":                         "vault",
			"token_policies":                   []string{"leaser"},
			"token_ttl":                        "1h",
		})
		must(err)
	})
	return kube, v
}

// liveLeases counts the leases Vault holds for the leased PKI role.
func liveLeases(t *testing.T, v *testbed.Vault) int {
	t.Helper()
	n, err := v.LiveLeases(t.Context(), leasedPKI)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// leasedParams mount a certificate and its key from one issue.
func leasedParams(v *testbed.Vault, cn string) map[string]string {
	return map[string]string{"roleName": leaserRole, "vaultAddress": v.Addr, "objects": `
- {objectName: tls.crt, secretPath: ` + leasedPKI + `, method: PUT, secretArgs: {common_name: ` + cn + `, ttl: 30m}, secretKey: certificate}
- {objectName: tls.key, secretPath: ` + leasedPKI + `, method: PUT, secretArgs: {common_name: ` + cn + `, ttl: 30m}, secretKey: private_key}
`}
}

func newLeases(t *testing.T) *leases.Store {
	t.Helper()
	s, err := leases.New(100, 64<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestDynamicSecretsNotReissuedByRotation mounts one pod as the driver's
// rotation does, again and again: the first mount issues one lease, the
// polls none, and the files and object versions stay the same.
func TestDynamicSecretsNotReissuedByRotation(t *testing.T) {
	kube, v := leasedBed(t)
	s := serve(t, provider.Options{Leases: newLeases(t), LeaseScope: leases.ScopePod, Keys: staticKey("0123456789abcdef0123456789abcdef")})
	p, tok := podToken(t, kube, readerNS, leaserSA, "leased-rotation")
	params := leasedParams(v, "rotation.example.com")

	leasesBefore, issuesBefore := liveLeases(t, v), auditCount(t, leasedPKI)
	first, err := s.client.Mount(t.Context(), request(t, p, params, "vault", tok))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(files(first)["tls.crt"], "-----BEGIN CERTIFICATE-----") {
		t.Fatalf("tls.crt is not a certificate: %.40q", files(first)["tls.crt"])
	}
	afterFirst := liveLeases(t, v)
	if afterFirst-leasesBefore != 1 {
		t.Fatalf("%d leases from the first mount, want 1", afterFirst-leasesBefore)
	}
	const polls = 5
	for range polls {
		resp, err := s.client.Mount(t.Context(), rotationRequest(t, p, params, tok))
		if err != nil {
			t.Fatal(err)
		}
		if files(resp)["tls.crt"] != files(first)["tls.crt"] || files(resp)["tls.key"] != files(first)["tls.key"] {
			t.Fatal("a rotation poll got another certificate")
		}
		for i, ov := range resp.ObjectVersion {
			if ov.Version == "" || ov.Version != first.ObjectVersion[i].Version {
				t.Errorf("object %s: version %q after a poll, want the first mount's %q", ov.Id, ov.Version, first.ObjectVersion[i].Version)
			}
		}
	}
	created := liveLeases(t, v) - afterFirst
	t.Logf("leases created by %d rotation polls: %d (issues seen by Vault: %d for %d mounts)", polls, created, auditCount(t, leasedPKI)-issuesBefore, polls+1)
	if created != 0 {
		t.Errorf("%d leases created by %d rotation polls, want 0", created, polls)
	}
	if n := auditCount(t, leasedPKI) - issuesBefore; n != 1 {
		t.Errorf("%d issues for %d mounts of one pod, want 1", n, polls+1)
	}
}

// TestDynamicSecretsScope: per pod (the default) two pods of one service
// account get their own certificates; per identity they share one.
func TestDynamicSecretsScope(t *testing.T) {
	kube, v := leasedBed(t)
	for _, tt := range []struct {
		scope  leases.Scope
		issues int
	}{
		{leases.ScopePod, 2},
		{leases.ScopeIdentity, 1},
	} {
		t.Run(string(tt.scope), func(t *testing.T) {
			s := serve(t, provider.Options{Leases: newLeases(t), LeaseScope: tt.scope})
			params := leasedParams(v, "scope-"+string(tt.scope)+".example.com")
			before := auditCount(t, leasedPKI)
			certs := map[string]bool{}
			for _, name := range []string{"a", "b"} {
				p, tok := podToken(t, kube, readerNS, leaserSA, "scope-"+string(tt.scope)+"-"+name)
				for range 2 { // the first mount and one poll
					resp, err := s.client.Mount(t.Context(), request(t, p, params, "vault", tok))
					if err != nil {
						t.Fatal(err)
					}
					certs[files(resp)["tls.crt"]] = true
				}
			}
			if n := auditCount(t, leasedPKI) - before; n != tt.issues || len(certs) != tt.issues {
				t.Errorf("%d issues and %d distinct certificates for two pods mounting twice, want %d", n, len(certs), tt.issues)
			}
		})
	}
}

// TestRevokedLeaseReissued: a lease revoked behind the provider's back (by
// an operator, or with its token) is not served again.
func TestRevokedLeaseReissued(t *testing.T) {
	kube, v := leasedBed(t)
	s := serve(t, provider.Options{Leases: newLeases(t), LeaseScope: leases.ScopePod})
	p, tok := podToken(t, kube, readerNS, leaserSA, "leased-revoked")
	params := leasedParams(v, "revoked.example.com")
	mount := func() string {
		t.Helper()
		resp, err := s.client.Mount(t.Context(), request(t, p, params, "vault", tok))
		if err != nil {
			t.Fatal(err)
		}
		return files(resp)["tls.crt"]
	}
	first := mount()
	if err := v.Client.Sys().RevokePrefixWithContext(t.Context(), leasedPKI); err != nil {
		t.Fatal(err)
	}
	before := auditCount(t, leasedPKI)
	second := mount()
	if second == first {
		t.Error("the revoked certificate was served again")
	}
	if n := auditCount(t, leasedPKI) - before; n != 1 {
		t.Errorf("%d issues after the revocation, want 1", n)
	}
	if mount() != second {
		t.Error("the re-issued certificate was not remembered")
	}

	// Revoking the tokens of the login revokes their leases too.
	if err := v.Client.Sys().RevokePrefixWithContext(t.Context(), "auth/kubernetes/login"); err != nil {
		t.Fatal(err)
	}
	if third := mount(); third == second {
		t.Error("a certificate whose token was revoked was served again")
	}
}

// TestLeaseClientOnRealVault checks the calls the background renewal makes,
// with a real login's token and the default policy: the token renews, a
// lease is looked up, and a non-renewable PKI lease is refused (4xx), which
// the store takes as final.
func TestLeaseClientOnRealVault(t *testing.T) {
	kube, v := leasedBed(t)
	ctx := t.Context()
	_, tok := podToken(t, kube, readerNS, leaserSA, "lease-client")
	clients, err := vault.NewClients(1, config.Addresses{})
	if err != nil {
		t.Fatal(err)
	}
	base, err := clients.Client(ctx, v.Addr, "", config.TLS{})
	if err != nil {
		t.Fatal(err)
	}
	lg, err := vault.LoginJWT(ctx, base, "kubernetes", leaserRole, redact.New(tok), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !lg.Renewable || lg.Expires.IsZero() || time.Until(lg.Expires) > time.Hour {
		t.Fatalf("login: renewable %v, expires in %v; want a renewable token ending within its hour", lg.Renewable, time.Until(lg.Expires))
	}
	c := leases.Client{Base: base, Token: lg.Token}
	if ttl, err := c.RenewToken(ctx, time.Hour); err != nil || ttl <= 0 || ttl > time.Hour {
		t.Errorf("RenewToken = %v, %v; want up to an hour", ttl, err)
	}
	r, err := vault.Do(ctx, base, lg.Token, vault.Request{Method: http.MethodPut, Path: leasedPKI, Args: map[string]any{"common_name": "client.example.com", "ttl": "10m"}})
	if err != nil {
		t.Fatal(err)
	}
	issued, ok := vault.LeaseOf(r.Body)
	if !ok || issued.TTL < 9*time.Minute || issued.TTL > 10*time.Minute || issued.Renewable {
		t.Fatalf("issued lease %+v, %v; want a non-renewable lease of about 10m", issued, ok)
	}
	got, err := c.LookupLease(ctx, issued.ID)
	if err != nil || got.TTL <= 0 || got.TTL > 10*time.Minute {
		t.Errorf("LookupLease = %+v, %v", got, err)
	}
	_, err = c.RenewLease(ctx, issued.ID, 10*time.Minute)
	var ve *vault.Error
	if !errors.As(err, &ve) || ve.Status != http.StatusBadRequest {
		t.Errorf("RenewLease of a PKI lease = %v, want 400: not renewable", err)
	}
}

// rotationRequest is a MountRequest as the driver's rotation reconciler
// (v1.5.4) builds it: the class's parameters and the pod's fields, without
// the volume attributes secretProviderClass and ephemeral.
func rotationRequest(t *testing.T, p pod, params map[string]string, token string) *v1alpha1.MountRequest {
	t.Helper()
	req := request(t, p, params, "vault", token)
	var attrs map[string]string
	if err := json.Unmarshal([]byte(req.Attributes), &attrs); err != nil {
		t.Fatal(err)
	}
	delete(attrs, "secretProviderClass")
	delete(attrs, "csi.storage.k8s.io/ephemeral")
	b, err := json.Marshal(attrs)
	if err != nil {
		t.Fatal(err)
	}
	req.Attributes = string(b)
	return req
}

// TestDatabaseLeaseRenewed uses Vault's database engine against a real
// PostgreSQL: its credentials are renewable leases. The store renews them in
// the background (Run), so a mount after the first TTL has passed still gets
// the same user, and Vault issued it once. A role whose max TTL stops the
// renewal gets new credentials near the end.
func TestDatabaseLeaseRenewed(t *testing.T) {
	kube, v := leasedBed(t)
	ctx := t.Context()
	if os.Geteuid() != 0 {
		t.Skip("the test bed runs PostgreSQL as nobody, which needs root")
	}
	pg, err := testbed.NewPostgres(ctx)
	var missing *testbed.MissingBinaryError
	if errors.As(err, &missing) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := pg.Close(); err != nil {
			t.Error(err)
		}
	})
	testbed.LogOnFailure(t, pg)
	const mount = leasedDB
	create := `CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';`
	for _, step := range []func() error{
		func() error {
			return v.Client.Sys().MountWithContext(ctx, mount, &vaultapi.MountInput{Type: "database"})
		},
		func() error {
			_, err := v.Client.Logical().WriteWithContext(ctx, mount+"/config/pg", map[string]any{
				"plugin_name": "postgresql-database-plugin", "connection_url": pg.ConnectionURL(),
				"username": "postgres", "password": "unused-trust-auth", "allowed_roles": "renewed,capped",
			})
			return err
		},
		func() error {
			_, err := v.Client.Logical().WriteWithContext(ctx, mount+"/roles/renewed", map[string]any{
				"db_name": "pg", "creation_statements": create, "default_ttl": "10s", "max_ttl": "1h",
			})
			return err
		},
		func() error {
			_, err := v.Client.Logical().WriteWithContext(ctx, mount+"/roles/capped", map[string]any{
				"db_name": "pg", "creation_statements": create, "default_ttl": "10s", "max_ttl": "14s",
			})
			return err
		},
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	store := newLeases(t)
	runCtx, stop := context.WithCancel(context.Background())
	running := make(chan struct{})
	go func() { store.Run(runCtx); close(running) }()
	t.Cleanup(func() { stop(); <-running })
	s := serve(t, provider.Options{Leases: store, LeaseScope: leases.ScopePod})
	p, tok := podToken(t, kube, readerNS, leaserSA, "database")
	user := func(t *testing.T, role string) string {
		t.Helper()
		resp, err := s.client.Mount(t.Context(), rotationRequest(t, p, map[string]string{"roleName": leaserRole, "vaultAddress": v.Addr, "objects": `
- {objectName: username, secretPath: ` + mount + `/creds/` + role + `, secretKey: username}
- {objectName: password, secretPath: ` + mount + `/creds/` + role + `, secretKey: password}
`}, tok))
		if err != nil {
			t.Fatal(err)
		}
		return files(resp)["username"]
	}

	// Both wait on the clock, so they wait side by side.
	t.Run("renewed past its TTL", func(t *testing.T) {
		t.Parallel()
		issues := auditCount(t, mount+"/creds/renewed")
		first := user(t, "renewed")
		// Renewed at 6.7s and 13.3s; without renewal it would be re-issued
		// from 8s (a fifth of the TTL before its end).
		time.Sleep(15 * time.Second)
		if got := user(t, "renewed"); got != first {
			t.Errorf("after 15s of a 10s lease got user %q, want the renewed %q", got, first)
		}
		n := auditCount(t, mount+"/creds/renewed") - issues
		t.Logf("database credentials: %d issue(s) in 15s of a 10s lease", n)
		if n != 1 {
			t.Errorf("%d issues, want 1", n)
		}
	})
	t.Run("max TTL ends the memory", func(t *testing.T) {
		t.Parallel()
		first := user(t, "capped")
		// Renewed at 6.7s, granted only up to the 14s max: served until 12s.
		time.Sleep(10 * time.Second)
		if got := user(t, "capped"); got != first {
			t.Errorf("at 10s got user %q, want the renewed %q", got, first)
		}
		time.Sleep(2500 * time.Millisecond)
		if got := user(t, "capped"); got == first {
			t.Errorf("at 12.5s of a 14s max TTL got the old user %q, want new credentials", got)
		}
	})
}

// TestRevokeOnPodDelete: with the pod watcher on this node, deleting a pod
// revokes its remembered certificate in Vault; another pod's stays.
func TestRevokeOnPodDelete(t *testing.T) {
	kube, v := leasedBed(t)
	store := newLeases(t)
	s := serve(t, provider.Options{Leases: store, LeaseScope: leases.ScopePod})
	stop, err := podwatch.Start(t.Context(), kube.Client, testbed.NodeName, func(ctx context.Context, uid string) { store.RevokePod(ctx, uid) })
	if err != nil {
		t.Fatal(err)
	}
	defer stop() // no watch goroutine outlives the test
	before := liveLeases(t, v)
	params := leasedParams(v, "deleted.example.com")
	gone, goneTok := podToken(t, kube, readerNS, leaserSA, "revoked-on-delete")
	stays, staysTok := podToken(t, kube, readerNS, leaserSA, "kept-on-delete")
	for _, m := range []struct {
		p   pod
		tok string
	}{{gone, goneTok}, {stays, staysTok}} {
		if _, err := s.client.Mount(t.Context(), request(t, m.p, params, "vault", m.tok)); err != nil {
			t.Fatal(err)
		}
	}
	if n := liveLeases(t, v) - before; n != 2 {
		t.Fatalf("%d leases for two pods, want 2", n)
	}
	zero := int64(0)
	if err := kube.Client.CoreV1().Pods(readerNS).Delete(t.Context(), gone.name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for liveLeases(t, v)-before != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d leases 30s after the pod was deleted, want 1 (the other pod's)", liveLeases(t, v)-before)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if store.Len() != 1 {
		t.Errorf("%d remembered responses, want the remaining pod's 1", store.Len())
	}
}
