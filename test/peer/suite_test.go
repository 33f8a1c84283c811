package peer

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/okevault/vault-csi-provider/test/testbed"
)

// cases are provider.bats's @test cases, by name, in its order.
var cases = []struct {
	name string
	run  func(t *testing.T, c *testbed.Cluster)
}{
	{"1 Inline secrets-store-csi volume", inlineVolume},
	{"2 Sync with kubernetes secrets", syncSecrets},
	{"3 SecretProviderClass in different namespace not usable", otherNamespace},
	{"4 Pod with multiple SecretProviderClasses", multipleClasses},
	{"5 SecretProviderClass with query parameters and PUT method", pkiPut},
	{"6 Dynamic secrets engine, endpoint is called only once per SecretProviderClass", dynamicSecrets},
	{"7 SecretProviderClass with multiple secret types", allTypes},
	{"8 Wrong service account does not have access to Vault", wrongServiceAccount},
	{"9 Vault Enterprise namespace", enterpriseNamespace},
	{"10 Custom audience", customAudience},
	{"11 Consistent version hashes", versionHashes},
	{"12 JWT auth", jwtAuth},
}

// TestSuiteCases checks, without a cluster, that the archive's
// provider.bats has exactly the cases ported here, in order, and every
// file the port reads: a suite of another version fails here first.
func TestSuiteCases(t *testing.T) {
	files, err := testbed.ReadArchive(archive, "test/bats/")
	if err != nil {
		t.Fatal(err)
	}
	var got, want []string
	for _, m := range regexp.MustCompile(`(?m)^@test "([^"]+)"`).FindAllStringSubmatch(string(files["provider.bats"]), -1) {
		got = append(got, m[1])
	}
	for _, c := range cases {
		want = append(want, c.name)
	}
	if !slices.Equal(got, want) {
		t.Errorf("provider.bats cases:\n%q\nported:\n%q", got, want)
	}
	needed := append([]string{
		"configs/cluster-resources.yaml", "configs/postgres.yaml", "configs/postgres-creation-statements.sql",
		"configs/nginx-kv-env-var.yaml", "configs/nginx-kv-multiple-volumes.yaml",
		"configs/nginx/Chart.yaml", "configs/nginx/templates/nginx.yaml", "configs/vault/templates/tls-secrets.yaml",
		"configs/vault-policy-db.hcl", "configs/vault-policy-kv.hcl", "configs/vault-policy-pki.hcl",
		"configs/vault-policy-kv-custom-audience.hcl",
	}, classFiles...)
	for _, f := range needed {
		if _, ok := files[f]; !ok {
			t.Errorf("%s: no %s", archive, f)
		}
	}
}

// TestSuite runs provider.bats's cases against this provider, each between
// the suite's setup() and teardown().
func TestSuite(t *testing.T) {
	c := shared(t)
	begin := time.Now()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			setup(t, c)
			tc.run(t, c)
		})
	}
	t.Logf("the suite's cases ran in %s", time.Since(begin).Round(time.Second))
}

// cat is `kubectl --namespace=NS exec POD -- cat FILE`.
func cat(t *testing.T, c *testbed.Cluster, ns, pod, file string) string {
	t.Helper()
	return kubectl(t, c, "--namespace="+ns, "exec", pod, "--", "cat", file)
}

func equal(t *testing.T, what, got, want string) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %q, want %q", what, got, want)
	}
}

func inlineVolume(t *testing.T, c *testbed.Cluster) {
	installNginx(t, c, testNamespace, "kv", "kv", true)
	equal(t, "secret-1", cat(t, c, testNamespace, "nginx-kv", "/mnt/secrets-store/secret-1"), "hello1")
	// Check file permission is non-default.
	equal(t, "mode of secret-1", kubectl(t, c, "--namespace=test", "exec", "nginx-kv", "--", "stat", "-c", "%a", "/mnt/secrets-store/..data/secret-1"), "624")
	equal(t, "secret-2", cat(t, c, testNamespace, "nginx-kv", "/mnt/secrets-store/secret-2"), "hello2")
	// Check file permission is default.
	equal(t, "mode of secret-2", kubectl(t, c, "--namespace=test", "exec", "nginx-kv", "--", "stat", "-c", "%a", "/mnt/secrets-store/..data/secret-2"), "644")
}

func syncSecrets(t *testing.T, c *testbed.Cluster) {
	ctx := t.Context()
	manifest := adapted("configs/nginx-kv-env-var.yaml")
	kubectlIn(t, c, manifest, "--namespace=test", "apply", "-f", "-")
	waitReady(t, c, testNamespace, "app=nginx", 5*time.Minute)

	pod := kubectl(t, c, "--namespace=test", "get", "pod", "-l", "app=nginx", "-o", "jsonpath={.items[0].metadata.name}")
	equal(t, "secret-1", cat(t, c, testNamespace, pod, "/mnt/secrets-store/secret-1"), "hello-sync1")
	equal(t, "secret-2", cat(t, c, testNamespace, pod, "/mnt/secrets-store/secret-2"), "hello-sync2")

	secret, err := c.Client.CoreV1().Secrets(testNamespace).Get(ctx, "kvsecret", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("kubectl get secret kvsecret: %v", err)
	}
	equal(t, "kvsecret pwd", string(secret.Data["pwd"]), "hello-sync1")
	equal(t, "SECRET_USERNAME", envValue(kubectl(t, c, "--namespace=test", "exec", pod, "--", "printenv"), "SECRET_USERNAME"), "hello-sync2")
	equal(t, "kvsecret username_b64", string(secret.Data["username_b64"]), "hello-sync3")
	equal(t, "kvsecret label environment", secret.Labels["environment"], "test")
	equal(t, "kvsecret label secrets-store.csi.k8s.io/managed", secret.Labels["secrets-store.csi.k8s.io/managed"], "true")

	// The secret's owner is the ReplicaSet created by the deployment; no
	// event tells when it is set.
	testbed.Eventually(t, 61*time.Second, time.Second, "kvsecret has one ownerReference", func() (bool, string) {
		s, err := c.Client.CoreV1().Secrets(testNamespace).Get(ctx, "kvsecret", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return len(s.OwnerReferences) == 1, strings.Repeat("ref ", len(s.OwnerReferences))
	})

	// Deleting only the owners deletes the secret.
	kubectlIn(t, c, manifest, "--namespace=test", "delete", "-f", "-")
	testbed.Eventually(t, 60*time.Second, time.Second, "kvsecret deleted", func() (bool, string) {
		_, err := c.Client.CoreV1().Secrets(testNamespace).Get(ctx, "kvsecret", metav1.GetOptions{})
		return apierrors.IsNotFound(err), "still there"
	})
}

func otherNamespace(t *testing.T, c *testbed.Cluster) {
	must(t, c.CreateNamespace(t.Context(), "negative-test-ns"))
	installNginx(t, c, "negative-test-ns", "kv", "kv", false)
	waitPods(t, c, "negative-test-ns", "name=nginx-kv", "PodScheduled", 60*time.Second)
	waitForDescribe(t, c, "negative-test-ns", "nginx-kv", `FailedMount.*failed to get secretproviderclass negative-test-ns/vault-kv.*not found`)
}

func multipleClasses(t *testing.T, c *testbed.Cluster) {
	const pod = "nginx-multiple-volumes"
	kubectlIn(t, c, adapted("configs/nginx-kv-multiple-volumes.yaml"), "--namespace=test", "apply", "-f", "-")
	waitPods(t, c, testNamespace, "name="+pod, "Ready", 5*time.Minute)

	equal(t, "secret-1", cat(t, c, testNamespace, pod, "/mnt/secrets-store-1/secret-1"), "hello-sync1")
	equal(t, "secret-2", cat(t, c, testNamespace, pod, "/mnt/secrets-store-2/secret-2"), "hello-sync2")
	for _, s := range []struct{ secret, key, want string }{{"kvsecret-1", "username", "hello-sync1"}, {"kvsecret-2", "pwd", "hello-sync2"}} {
		got, err := c.Client.CoreV1().Secrets(testNamespace).Get(t.Context(), s.secret, metav1.GetOptions{})
		if err != nil {
			t.Errorf("secret %s: %v", s.secret, err)
			continue
		}
		equal(t, s.secret+" "+s.key, string(got.Data[s.key]), s.want)
	}
	env := kubectl(t, c, "--namespace=test", "exec", pod, "--", "printenv")
	equal(t, "SECRET_1_USERNAME", envValue(env, "SECRET_1_USERNAME"), "hello-sync1")
	equal(t, "SECRET_2_PWD", envValue(env, "SECRET_2_PWD"), "hello-sync2")
}

func pkiPut(t *testing.T, c *testbed.Cluster) {
	installNginx(t, c, testNamespace, "pki", "pki", true)
	checkCerts(t, cat(t, c, testNamespace, "nginx-pki", "/mnt/secrets-store/certs"))
}

// checkCerts is the suite's jq | openssl x509 checks of the whole PKI
// response: data.certificate and data.issuing_ca parse as certificates,
// and the certificate is for test.example.com.
func checkCerts(t *testing.T, result string) {
	t.Helper()
	if result == "" {
		t.Fatal("certs is empty")
	}
	var resp struct {
		Data struct {
			Certificate string `json:"certificate"`
			IssuingCA   string `json:"issuing_ca"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(result), &resp); err != nil {
		t.Fatalf("certs is not the JSON response: %v", err)
	}
	parse := func(field, p string) *x509.Certificate {
		block, _ := pem.Decode([]byte(p))
		if block == nil {
			t.Fatalf("data.%s is not PEM: %.80q", field, p)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatalf("data.%s: %v", field, err)
		}
		return cert
	}
	cert := parse("certificate", resp.Data.Certificate)
	parse("issuing_ca", resp.Data.IssuingCA)
	if cert.Subject.CommonName != "test.example.com" && !slices.Contains(cert.DNSNames, "test.example.com") {
		t.Errorf("certificate is for %q %v, want test.example.com", cert.Subject.CommonName, cert.DNSNames)
	}
}

// checkDBCreds reads dbUsername and dbPassword from pod and runs the
// suite's query with them in the postgres pod: the third CSV line (after
// the header and root) is the dynamic user.
func checkDBCreds(t *testing.T, c *testbed.Cluster, pod string) {
	t.Helper()
	user := cat(t, c, testNamespace, pod, "/mnt/secrets-store/dbUsername")
	password := cat(t, c, testNamespace, pod, "/mnt/secrets-store/dbPassword")
	out := kubectl(t, c, "--namespace=test", "exec", "postgres", "--", "psql",
		"postgres://"+user+":"+password+"@127.0.0.1:5432/db", "--command=SELECT usename FROM pg_catalog.pg_user", "--csv")
	lines := strings.Split(out, "\n")
	result := ""
	if len(lines) >= 3 {
		result = lines[2]
	}
	if result == "" || result != user {
		t.Errorf("third line of the query = %q, want the dynamic user %q (output %q)", result, user, out)
	}
}

func dynamicSecrets(t *testing.T, c *testbed.Cluster) {
	setupPostgres(t, c)
	installNginx(t, c, testNamespace, "db", "db", true)
	checkDBCreds(t, c, "nginx-db")
}

func allTypes(t *testing.T, c *testbed.Cluster) {
	setupPostgres(t, c)
	installNginx(t, c, testNamespace, "all", "all", true)
	checkDBCreds(t, c, "nginx-all")
	equal(t, "secret-1", cat(t, c, testNamespace, "nginx-all", "/mnt/secrets-store/secret-1"), "hello1")
	checkCerts(t, cat(t, c, testNamespace, "nginx-all", "/mnt/secrets-store/certs"))
}

func wrongServiceAccount(t *testing.T, c *testbed.Cluster) {
	installNginx(t, c, testNamespace, "kv", "pki", false)
	waitPods(t, c, testNamespace, "name=nginx-kv", "PodScheduled", 60*time.Second)
	waitForDescribe(t, c, testNamespace, "nginx-kv", `FailedMount.*failed to mount secrets store objects for pod test/nginx-kv`)
	waitForDescribe(t, c, testNamespace, "nginx-kv", `service account name not authorized`)
}

func enterpriseNamespace(t *testing.T, _ *testbed.Cluster) {
	t.Skip("No Vault license configured, skipping namespace test (the bed has no Vault Enterprise)")
}

func customAudience(t *testing.T, c *testbed.Cluster) {
	installNginx(t, c, testNamespace, "kv-custom-audience", "kv-custom-audience", true)
	equal(t, "secret", cat(t, c, testNamespace, "nginx-kv-custom-audience", "/mnt/secrets-store/secret"), "hello-custom-audience")
}

var podStatuses = schema.GroupVersionResource{Group: "secrets-store.csi.x-k8s.io", Version: "v1", Resource: "secretproviderclasspodstatuses"}

// podStatus is the UID and the objects' versions (space-separated, as
// jsonpath prints them) of SecretProviderClassPodStatus nginx-kv-test-vault-kv.
func podStatus(t *testing.T, c *testbed.Cluster) (uid, versions string) {
	t.Helper()
	return kubectl(t, c, "--namespace=test", "get", "secretproviderclasspodstatus", "nginx-kv-test-vault-kv", "-o", "jsonpath={.metadata.uid}"),
		kubectl(t, c, "--namespace=test", "get", "secretproviderclasspodstatus", "nginx-kv-test-vault-kv", "-o", "jsonpath={.status.objects[*].version}")
}

// reinstallNginx uninstalls release nginx, waits until its pod and status
// are gone, and installs it again.
func reinstallNginx(t *testing.T, c *testbed.Cluster) {
	t.Helper()
	helm(t, c, "--namespace=test", "uninstall", "nginx", "--wait")
	testbed.Eventually(t, 2*time.Minute, time.Second, "the old pod's status gone", func() (bool, string) {
		_, err := c.Dynamic.Resource(podStatuses).Namespace(testNamespace).Get(t.Context(), "nginx-kv-test-vault-kv", metav1.GetOptions{})
		return apierrors.IsNotFound(err), "still there"
	})
	installNginx(t, c, testNamespace, "kv", "kv", true)
}

func versionHashes(t *testing.T, c *testbed.Cluster) {
	installNginx(t, c, testNamespace, "kv", "kv", true)
	// HMAC secret should exist.
	kubectl(t, c, "--namespace=csi", "get", "secrets", "vault-csi-provider-hmac-key")
	uid1, versions1 := podStatus(t, c)

	// Recreating the pod remounts and recreates the status object: a new
	// UID, the same versions.
	reinstallNginx(t, c)
	uid2, versions2 := podStatus(t, c)
	if uid1 == uid2 {
		t.Errorf("status UID unchanged after the pod was recreated: %s", uid1)
	}
	equal(t, "versions after the pod was recreated", versions2, versions1)

	// A deleted HMAC secret is regenerated, and the versions then change.
	kubectl(t, c, "--namespace=csi", "delete", "secret", "vault-csi-provider-hmac-key")
	reinstallNginx(t, c)
	kubectl(t, c, "--namespace=csi", "get", "secrets", "vault-csi-provider-hmac-key")
	uid3, versions3 := podStatus(t, c)
	if uid3 == uid1 || uid3 == uid2 {
		t.Errorf("status UID %s not new after the second recreation (%s, %s)", uid3, uid1, uid2)
	}
	if versions3 == versions2 {
		t.Errorf("versions unchanged after the HMAC key Secret was deleted: %q", versions3)
	}
}

func jwtAuth(t *testing.T, c *testbed.Cluster) {
	installNginx(t, c, testNamespace, "kv-jwt-auth", "kv", true)
	equal(t, "secret-1", cat(t, c, testNamespace, "nginx-kv-jwt-auth", "/mnt/secrets-store/secret-1"), "hello1")
}
