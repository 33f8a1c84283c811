package peer

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/okevault/vault-csi-provider/test/testbed"
)

// classFiles are the SecretProviderClasses setup() applies to namespace
// test, in its order.
var classFiles = []string{
	"configs/vault-all-secretproviderclass.yaml",
	"configs/vault-db-secretproviderclass.yaml",
	"configs/vault-kv-custom-audience-secretproviderclass.yaml",
	"configs/vault-kv-namespace-secretproviderclass.yaml",
	"configs/vault-kv-secretproviderclass.yaml",
	"configs/vault-kv-secretproviderclass-jwt-auth.yaml",
	"configs/vault-kv-sync-secretproviderclass.yaml",
	"configs/vault-kv-sync-multiple-secretproviderclass.yaml",
	"configs/vault-pki-secretproviderclass.yaml",
}

// role is one `vault write auth/<mount>/role/<name> k=v...` of setup().
type role struct {
	path string
	data map[string]any
}

// roles are setup()'s roles without a license (kv-namespace-role lives in
// the Enterprise namespace acceptance).
var roles = []role{
	{"auth/kubernetes/role/db-role", map[string]any{
		"bound_service_account_names": "nginx-db", "bound_service_account_namespaces": "test",
		"audience": "vault", "policies": "db-policy", "ttl": "20m",
	}},
	{"auth/kubernetes/role/kv-role", map[string]any{
		"bound_service_account_names": "nginx-kv", "bound_service_account_namespaces": "test",
		"audience": "vault", "policies": "kv-policy", "ttl": "20m",
	}},
	{"auth/kubernetes/role/kv-custom-audience-role", map[string]any{
		"audience":                    "custom-audience",
		"bound_service_account_names": "nginx-kv-custom-audience", "bound_service_account_namespaces": "test",
		"policies": "kv-custom-audience-policy", "ttl": "20m",
	}},
	{"auth/kubernetes/role/pki-role", map[string]any{
		"bound_service_account_names": "nginx-pki", "bound_service_account_namespaces": "test",
		"audience": "vault", "policies": "pki-policy", "ttl": "20m",
	}},
	{"auth/kubernetes/role/all-role", map[string]any{
		"bound_service_account_names": "nginx-all", "bound_service_account_namespaces": "test",
		"audience": "vault", "policies": "db-policy,kv-policy,pki-policy", "ttl": "20m",
	}},
}

// setup is the suite's setup(): Vault's policies, auth methods, roles, PKI
// and KV secrets, then namespace test with the classes. teardown (its
// teardown()) runs at the case's cleanup.
func setup(t *testing.T, c *testbed.Cluster) {
	t.Helper()
	ctx := t.Context()
	v := bed.vault
	t.Cleanup(func() { teardown(t, c) })

	// 1. a) Vault policies, from the suite's .hcl files.
	for name, file := range map[string]string{
		"db-policy": "vault-policy-db.hcl", "kv-policy": "vault-policy-kv.hcl", "pki-policy": "vault-policy-pki.hcl",
		"kv-custom-audience-policy": "vault-policy-kv-custom-audience.hcl",
	} {
		must(t, v.Sys().PutPolicyWithContext(ctx, name, string(suiteFile("configs/"+file))))
	}

	// 1. b) i) Kubernetes auth: the apiserver through the kubernetes
	// Service's IP, as $KUBERNETES_PORT_443_TCP_ADDR is in vault-0.
	must(t, v.Sys().EnableAuthWithOptionsWithContext(ctx, "kubernetes", &vaultapi.EnableAuthOptions{Type: "kubernetes"}))
	svc, err := c.Client.CoreV1().Services(metav1.NamespaceDefault).Get(ctx, "kubernetes", metav1.GetOptions{})
	must(t, err)
	write(t, "auth/kubernetes/config", map[string]any{"kubernetes_host": "https://" + svc.Spec.ClusterIP + ":443"})
	for _, r := range roles {
		write(t, r.path, r.data)
	}

	// 1. b) ii) JWT auth: the issuer from the apiserver's discovery
	// document, and the CA that vault-0 sees in its service-account folder.
	must(t, v.Sys().EnableAuthWithOptionsWithContext(ctx, "jwt", &vaultapi.EnableAuthOptions{Type: "jwt"}))
	raw, err := c.Client.CoreV1().RESTClient().Get().AbsPath("/.well-known/openid-configuration").DoRaw(ctx)
	must(t, err)
	var discovery struct {
		Issuer string `json:"issuer"`
	}
	must(t, json.Unmarshal(raw, &discovery))
	rootCA, err := c.Client.CoreV1().ConfigMaps(csiNamespace).Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
	must(t, err)
	write(t, "auth/jwt/config", map[string]any{
		"oidc_discovery_url": discovery.Issuer, "oidc_discovery_ca_pem": rootCA.Data["ca.crt"],
	})
	write(t, "auth/jwt/role/jwt-kv-role", map[string]any{
		"role_type": "jwt", "bound_audiences": "vault", "user_claim": "sub",
		"bound_subject": "system:serviceaccount:test:nginx-kv", "policies": "kv-policy", "ttl": "1h",
	})

	// 1. c) PKI.
	must(t, v.Sys().MountWithContext(ctx, "pki", &vaultapi.MountInput{Type: "pki"}))
	write(t, "pki/root/generate/internal", map[string]any{"common_name": "example.com"})
	write(t, "pki/config/urls", map[string]any{"issuing_certificates": "http://127.0.0.1:8200/v1/pki/ca"})
	write(t, "pki/roles/example-dot-com", map[string]any{"allowed_domains": "example.com", "allow_subdomains": true})

	// 1. d) KV v2 secrets.
	must(t, v.Sys().MountWithContext(ctx, "secret", &vaultapi.MountInput{Type: "kv", Options: map[string]string{"version": "2"}}))
	for _, kv := range []struct{ path, key, value string }{
		{"kv1", "bar1", "hello1"}, {"kv2", "bar2", "hello2"},
		{"kv-sync1", "bar1", "hello-sync1"}, {"kv-sync2", "bar2", "hello-sync2"}, {"kv-sync3", "bar3", "aGVsbG8tc3luYzM="},
		{"kv-custom-audience", "bar", "hello-custom-audience"},
	} {
		// A new KV v2 mount takes a moment to upgrade before it takes writes,
		// which the CLI's kv put retries through.
		testbed.Eventually(t, 30*time.Second, 200*time.Millisecond, "kv put secret/"+kv.path, func() (bool, string) {
			_, err := v.KVv2("secret").Put(ctx, kv.path, map[string]any{kv.key: kv.value})
			return err == nil, fmt.Sprint(err)
		})
	}

	// 2. Shared Kubernetes resources.
	must(t, c.CreateNamespace(ctx, testNamespace))
	for _, f := range classFiles {
		kubectlIn(t, c, adapted(f), "--namespace=test", "apply", "-f", "-")
	}
}

// teardown is the suite's teardown(): on failure the pods, provider logs
// and Vault logs; then Vault's mounts disabled (revoking the database
// leases while postgres still runs) and the namespaces deleted.
func teardown(t *testing.T, c *testbed.Cluster) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if t.Failed() {
		t.Log("DESCRIBE NGINX PODS\n" + kubectlQuiet(ctx, c, "describe", "pod", "-l", "app=nginx", "--all-namespaces=true"))
		t.Log("PROVIDER LOGS\n" + kubectlQuiet(ctx, c, "--namespace=csi", "logs", "-l", "app.kubernetes.io/instance="+testbed.ProviderRelease, "--tail=50"))
		t.Log("VAULT LOGS\n" + kubectlQuiet(ctx, c, "--namespace=csi", "logs", "deployment/vault", "--tail=50"))
	}
	v := bed.vault
	for _, auth := range []string{"kubernetes", "jwt"} {
		if err := v.Sys().DisableAuthWithContext(ctx, auth); err != nil {
			t.Errorf("teardown: disable auth %s: %v", auth, err)
		}
	}
	for _, mount := range []string{"secret", "pki", "database"} {
		if err := v.Sys().UnmountWithContext(ctx, mount); err != nil {
			t.Errorf("teardown: disable %s: %v", mount, err)
		}
	}
	for _, ns := range []string{testNamespace, "negative-test-ns"} {
		deleteNamespace(ctx, t, c, ns)
	}
}

// deleteNamespace deletes ns if it exists and waits until it is gone, as
// kubectl delete namespace does.
func deleteNamespace(ctx context.Context, t *testing.T, c *testbed.Cluster, ns string) {
	err := c.Client.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return
	}
	if err != nil {
		t.Errorf("teardown: delete namespace %s: %v", ns, err)
		return
	}
	for {
		_, err := c.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return
		}
		select {
		case <-ctx.Done():
			t.Errorf("teardown: namespace %s not gone: %v", ns, ctx.Err())
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// setupPostgres is the suite's setup_postgres: a root password in Secret
// postgres-root, postgres.yaml (image adapted), and Vault's database
// engine managing it with the suite's creation statements.
func setupPostgres(t *testing.T, c *testbed.Cluster) {
	t.Helper()
	ctx := t.Context()
	pw := make([]byte, 30)
	_, _ = rand.Read(pw)
	password := base64.StdEncoding.EncodeToString(pw)
	_, err := c.Client.CoreV1().Secrets(testNamespace).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "postgres-root"},
		StringData: map[string]string{"POSTGRES_USER": "root", "POSTGRES_PASSWORD": password},
	}, metav1.CreateOptions{})
	must(t, err)
	kubectlIn(t, c, adapted("configs/postgres.yaml"), "--namespace=test", "apply", "-f", "-")
	waitReady(t, c, testNamespace, "app=postgres", 10*time.Minute)

	v := bed.vault
	must(t, v.Sys().MountWithContext(ctx, "database", &vaultapi.MountInput{Type: "database"}))
	write(t, "database/config/postgres", map[string]any{
		"plugin_name":    "postgresql-database-plugin",
		"allowed_roles":  "*",
		"connection_url": "postgres://{{username}}:{{password}}@postgres.test.svc.cluster.local:5432/db?sslmode=disable",
		"username":       "root", "password": password,
		"verify_connection": false,
	})
	write(t, "database/roles/test-role", map[string]any{
		"db_name": "postgres", "default_ttl": "1h", "max_ttl": "24h",
		"creation_statements": string(suiteFile("configs/postgres-creation-statements.sql")),
	})
}

// write is `vault write path k=v...`.
func write(t *testing.T, path string, data map[string]any) {
	t.Helper()
	if _, err := bed.vault.Logical().WriteWithContext(t.Context(), path, data); err != nil {
		t.Fatalf("vault write %s: %v", path, err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
