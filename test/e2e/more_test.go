package e2e

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const appObjects = `
- objectName: username
  secretPath: secret/data/e2e/app
  secretKey: username
`

// Sync to Kubernetes Secrets with the driver's secretObjects, including a
// kubernetes.io/tls Secret from a PKI issue call (PUT with secretArgs).
// Certificate and key come from one request: they form a key pair.
func TestSyncSecretsAndPKI(t *testing.T) {
	shared(t)
	applyClass(t, e2eNS, "synced", map[string]string{"roleName": "e2e", "objects": appObjects + `
- objectName: tls.crt
  secretPath: pki/issue/web
  method: PUT
  secretArgs: {common_name: app.example.com, ttl: 10m}
  secretKey: certificate
- objectName: tls.key
  secretPath: pki/issue/web
  method: PUT
  secretArgs: {common_name: app.example.com, ttl: 10m}
  secretKey: private_key
`},
		map[string]any{"secretName": "e2e-creds", "type": "Opaque", "data": []map[string]string{{"objectName": "username", "key": "user"}}},
		map[string]any{"secretName": "e2e-tls", "type": "kubernetes.io/tls", "data": []map[string]string{{"objectName": "tls.crt", "key": "tls.crt"}, {"objectName": "tls.key", "key": "tls.key"}}},
	)
	pod := podFor(t, e2eNS, e2eSA, "synced")
	before := auditCount(t, "pki/issue/web")
	got := files(t, mustPublish(t, pod, "synced"))
	if n := auditCount(t, "pki/issue/web") - before; n < 1 {
		t.Errorf("%d pki/issue requests seen in the audit log", n)
	}
	if _, err := tls.X509KeyPair([]byte(got["tls.crt"]), []byte(got["tls.key"])); err != nil {
		t.Errorf("tls.crt and tls.key are not one key pair (two requests?): %v", err)
	}

	secret := func(name string) *corev1.Secret {
		var s *corev1.Secret
		eventually(t, 30*time.Second, "Secret "+name+" synced by the driver", func() (bool, string) {
			var err error
			s, err = bed.kube.Client.CoreV1().Secrets(e2eNS).Get(t.Context(), name, metav1.GetOptions{})
			return err == nil, fmt.Sprint(err)
		})
		return s
	}
	if s := secret("e2e-creds"); s.Type != corev1.SecretTypeOpaque || string(s.Data["user"]) != "e2e-user" {
		t.Errorf("e2e-creds: type %s data %v", s.Type, s.Data)
	}
	s := secret("e2e-tls")
	if s.Type != corev1.SecretTypeTLS {
		t.Errorf("e2e-tls type %s, want kubernetes.io/tls", s.Type)
	}
	if _, err := tls.X509KeyPair(s.Data["tls.crt"], s.Data["tls.key"]); err != nil {
		t.Errorf("synced tls Secret is not a key pair: %v", err)
	}
}

// A KV v1 mount through the driver: no data.data envelope to unwrap; a
// non-string value is written as JSON.
func TestKVv1(t *testing.T) {
	shared(t)
	applyClass(t, e2eNS, "kv1", map[string]string{"roleName": "e2e", "objects": `
- {objectName: user, secretPath: kv1/e2e/legacy, secretKey: user}
- {objectName: port, secretPath: kv1/e2e/legacy, secretKey: port}
`})
	got := files(t, mustPublish(t, podFor(t, e2eNS, e2eSA, "kv1"), "kv1"))
	if got["user"] != "v1-user" || got["port"] != "5432" {
		t.Errorf("files = %v", got)
	}
}

// A class asking for another audience gets the driver's token for it.
func TestCustomAudience(t *testing.T) {
	shared(t)
	applyClass(t, e2eNS, "custom-aud", map[string]string{"roleName": "e2e-custom", "audience": "custom", "objects": appObjects})
	got := files(t, mustPublish(t, podFor(t, e2eNS, e2eSA, "custom-aud"), "custom-aud"))
	if got["username"] != "e2e-user" {
		t.Errorf("files = %v", got)
	}
	// The role wants audience custom: the vault-audience token is refused.
	applyClass(t, e2eNS, "custom-role-vault-aud", map[string]string{"roleName": "e2e-custom", "objects": appObjects})
	v, err := publish(t, podFor(t, e2eNS, e2eSA, "custom-role-vault-aud"), "custom-role-vault-aud", "")
	wantMountError(t, v, err, "PermissionDenied")
}

// The JWT auth method with the same pod token.
func TestJWTAuth(t *testing.T) {
	shared(t)
	applyClass(t, e2eNS, "jwt", map[string]string{"roleName": "e2e", "vaultAuthType": "jwt", "objects": appObjects})
	before := auditCount(t, "auth/jwt/login")
	got := files(t, mustPublish(t, podFor(t, e2eNS, e2eSA, "jwt"), "jwt"))
	if got["username"] != "e2e-user" {
		t.Errorf("files = %v", got)
	}
	if auditCount(t, "auth/jwt/login") == before {
		t.Error("no login at auth/jwt")
	}
}

// A SecretProviderClass written as users of hashicorp/vault-csi-provider
// write theirs (quoted strings, vaultAddress and the deprecated
// vaultKubernetesMountPath) mounts unchanged.
func TestPeerStyleClass(t *testing.T) {
	shared(t)
	applyClass(t, e2eNS, "peer-style", map[string]string{
		"vaultAddress":             bed.vault.Addr,
		"roleName":                 "e2e",
		"vaultKubernetesMountPath": "kubernetes",
		"objects": `
- objectName: "db-username"
  secretPath: "secret/data/e2e/app"
  secretKey: "username"
- objectName: "db-password"
  secretPath: "secret/data/e2e/app"
  secretKey: "password"
`,
	})
	got := files(t, mustPublish(t, podFor(t, e2eNS, e2eSA, "peer-style"), "peer-style"))
	if got["db-username"] != "e2e-user" || got["db-password"] != "e2e-pass" {
		t.Errorf("files = %v", got)
	}
}

// The provider's /metrics counts the mounts the driver made.
func TestMetricsCountMounts(t *testing.T) {
	shared(t)
	applyClass(t, e2eNS, "metered", map[string]string{"roleName": "e2e", "objects": appObjects})
	applyClass(t, e2eNS, "metered-denied", map[string]string{"roleName": "testapp", "objects": appObjects})
	okBefore, deniedBefore := metric(t, `vault_csi_provider_mounts_total{code="OK"}`), metric(t, `vault_csi_provider_mounts_total{code="PermissionDenied"}`)
	mustPublish(t, podFor(t, e2eNS, e2eSA, "metered"), "metered")
	if _, err := publish(t, podFor(t, e2eNS, e2eSA, "metered-denied"), "metered-denied", ""); err == nil {
		t.Fatal("role testapp let e2e/e2e in")
	}
	if d := metric(t, `vault_csi_provider_mounts_total{code="OK"}`) - okBefore; d < 1 {
		t.Errorf("OK mounts grew by %v, want at least 1", d)
	}
	if d := metric(t, `vault_csi_provider_mounts_total{code="PermissionDenied"}`) - deniedBefore; d < 1 {
		t.Errorf("PermissionDenied mounts grew by %v, want at least 1", d)
	}
	if metric(t, `vault_csi_provider_vault_requests_total{operation="login",status="2xx"}`) < 1 {
		t.Error("no successful login counted")
	}
}

// metric scrapes the provider and returns the sample named by series, 0 when absent.
func metric(t *testing.T, series string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + bed.metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindSubmatch(body)
	if m == nil {
		return 0
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// auditCount counts requests to path in Vault's audit log.
func auditCount(t *testing.T, path string) int {
	t.Helper()
	n, err := bed.vault.AuditCount(path)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
