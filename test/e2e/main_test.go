// Package e2e drives the whole chain as a cluster does: the real Secrets
// Store CSI Driver (called by a kubelet stand-in) → this provider, run as its
// own process → a real Vault whose Kubernetes auth checks each pod's token
// with TokenReview on a real kube-apiserver.
package e2e

import (
	"context"
	"errors"
	"flag"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/okevault/vault-csi-provider/test/testbed"
)

// bed holds the parts shared by the package's tests.
var bed struct {
	once     sync.Once
	err      error
	dir      string
	kube     *testbed.Kube
	vault    *testbed.Vault
	driver   *testbed.Driver
	provider *testbed.Provider
	// metricsAddr serves the provider's /metrics.
	metricsAddr string
}

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(testbed.RunThen(m, "e2e", closeBed))
}

// closeBed checks, after every test, the whole suite's logs against
// everything it used, then stops the bed.
func closeBed() error {
	var errs []error
	if bed.provider != nil {
		errs = append(errs, checkLeaks(), bed.provider.Close())
	}
	if bed.driver != nil {
		errs = append(errs, bed.driver.Close())
	}
	if bed.vault != nil {
		errs = append(errs, bed.vault.Close())
	}
	if bed.kube != nil {
		errs = append(errs, bed.kube.Close())
	}
	if bed.dir != "" {
		errs = append(errs, os.RemoveAll(bed.dir))
	}
	return errors.Join(errs...)
}

// shared starts, once, kube + Vault (seeded with the user's scenario) + the
// driver (tokenRequests audience vault, rotation every 2s, sync on) + the
// provider on the driver's providers directory.
func shared(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end: needs the real parts; skipped under -short")
	}
	bed.once.Do(func() { bed.err = startBed() })
	if bed.err != nil {
		t.Fatal(bed.err)
	}
	testbed.LogOnFailure(t, bed.kube, bed.vault, bed.driver, bed.provider)
}

func startBed() (err error) {
	// The provider is built here: with a cold Go build cache (a fresh
	// machine) that compiles for minutes on 2 cores.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	if bed.dir, err = os.MkdirTemp("", "e2e-"); err != nil {
		return err
	}
	if bed.kube, err = testbed.NewKube(ctx, testbed.KubeOptions{}); err != nil {
		return err
	}
	if bed.vault, err = testbed.NewVault(ctx, testbed.VaultOptions{}); err != nil {
		return err
	}
	if err = bed.vault.SeedScenario(ctx, bed.kube); err != nil {
		return err
	}
	providers := filepath.Join(bed.dir, "providers")
	if err = os.MkdirAll(providers, 0o700); err != nil {
		return err
	}
	if bed.driver, err = testbed.NewDriver(ctx, bed.kube, testbed.DriverOptions{
		ProvidersDir:         providers,
		RotationPollInterval: rotationPoll,
		SyncSecrets:          true,
		TokenAudiences:       []string{"vault", "custom"},
	}); err != nil {
		return err
	}
	if err = configureVault(ctx); err != nil {
		return err
	}
	if bed.metricsAddr, err = freeAddr(); err != nil {
		return err
	}
	bed.provider, err = testbed.NewProvider(ctx, testbed.ProviderOptions{
		ProvidersDir: providers,
		Kube:         bed.kube,
		// trace: the leak check reads everything the provider can say.
		Args: []string{"-vault-addr=" + bed.vault.Addr, "-metrics-addr=" + bed.metricsAddr, "-log-level=trace",
			"-revoke-on-pod-delete", "-node-name=" + testbed.NodeName},
	})
	return err
}

// The e2e identity: service account e2e/e2e, with a role at the Kubernetes
// auth mount (audience vault), one with audience custom, and one at a JWT
// auth mount; its policy reads secret/data/e2e/* and issues certificates.
const (
	e2eNS, e2eSA = "e2e", "e2e"
	e2ePolicy    = `
path "secret/data/e2e/*" { capabilities = ["read"] }
path "pki/issue/web" { capabilities = ["update"] }
path "kv1/e2e/*" { capabilities = ["read"] }
`
)

func configureVault(ctx context.Context) error {
	v := bed.vault.Client
	write := func(path string, body map[string]any) func() error {
		return func() error { _, err := v.Logical().WriteWithContext(ctx, path, body); return err }
	}
	k8sRole := func(audience string) map[string]any {
		return map[string]any{
			"bound_service_account_names": []string{e2eSA}, "bound_service_account_namespaces": []string{e2eNS},
			"audience": audience, "token_policies": []string{"e2e"}, "token_ttl": "1h",
		}
	}
	for _, step := range []func() error{
		func() error { return bed.vault.EnableAudit(ctx) },
		func() error { return bed.vault.EnableRawAudit(ctx, rawAuditPath()) },
		func() error { return bed.kube.CreateServiceAccount(ctx, e2eNS, e2eSA) },
		func() error { return v.Sys().PutPolicyWithContext(ctx, "e2e", e2ePolicy) },
		write("auth/kubernetes/role/e2e", k8sRole("vault")),
		write("auth/kubernetes/role/e2e-custom", k8sRole("custom")),
		func() error { return bed.vault.ConfigureJWTAuth(ctx, bed.kube, "jwt") },
		write("auth/jwt/role/e2e", map[string]any{
			"role_type": "jwt", "bound_audiences": []string{"vault"}, "user_claim": "sub",
			"bound_subject": "system:serviceaccount:" + e2eNS + ":" + e2eSA, "token_policies": []string{"e2e"}, "token_ttl": "1h",
		}),
		func() error { return v.Sys().MountWithContext(ctx, "pki", &vaultapi.MountInput{Type: "pki"}) },
		func() error {
			return v.Sys().MountWithContext(ctx, "kv1", &vaultapi.MountInput{Type: "kv", Options: map[string]string{"version": "1"}})
		},
		write("kv1/e2e/legacy", map[string]any{"user": "v1-user", "port": 5432}),
		write("pki/root/generate/internal", map[string]any{"common_name": "e2e-ca", "ttl": "24h"}),
		write("pki/roles/web", map[string]any{"allowed_domains": "example.com", "allow_subdomains": true, "max_ttl": "1h"}),
		func() error {
			_, err := v.KVv2("secret").Put(ctx, "e2e/app", map[string]any{"username": "e2e-user", "password": "e2e-pass"})
			return err
		},
	} {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// rotationPoll is the driver's --rotation-poll-interval in these tests.
const rotationPoll = 2 * time.Second
