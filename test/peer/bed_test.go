package peer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/okevault/vault-csi-provider/test/testbed"
)

const (
	// csiNamespace is where the suite installs the driver, Vault and the
	// provider, and where the provider keeps its HMAC key Secret.
	csiNamespace = "csi"
	// testNamespace is the suite's workload namespace.
	testNamespace = "test"
	// testappImage stands in for nginx-unprivileged: the bed's busybox
	// image, whose entrypoint sleeps.
	testappImage = "docker.io/library/busybox:1.35"
	// postgresImage stands in for postgres:13-alpine: Debian's PostgreSQL 15
	// under a tag of the bed's own (test/tools/build.sh).
	postgresImage = "okevault.test/postgres:15"
)

// imageAdaptations are the only edits made to the suite's files: its
// images, which the bed cannot pull, by the bed's own.
var imageAdaptations = strings.NewReplacer(
	"docker.mirror.hashicorp.services/nginxinc/nginx-unprivileged", testappImage,
	"docker.mirror.hashicorp.services/postgres:13-alpine", postgresImage,
)

// adapted is a suite file with its images replaced; it panics if an image
// of the suite's registry is left (a new image in another version of the
// suite), since the bed would then try to pull it.
func adapted(path string) []byte {
	b := []byte(imageAdaptations.Replace(string(suiteFile(path))))
	if strings.Contains(string(b), "docker.mirror.hashicorp.services") {
		panic("peer suite: " + path + " names an image the bed does not have")
	}
	return b
}

// writeCharts writes the suite's two charts, configs/nginx (images
// adapted) and configs/vault (as is), below dir for helm, and returns the
// folder holding them.
func writeCharts(dir string) (string, error) {
	out := filepath.Join(dir, "peer-charts")
	for path := range bed.suite {
		rel, ok := strings.CutPrefix(path, "configs/")
		if !ok || (!strings.HasPrefix(rel, "nginx/") && !strings.HasPrefix(rel, "vault/")) {
			continue
		}
		dst := filepath.Join(out, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(dst), 0o750); err != nil {
			return "", fmt.Errorf("suite charts: %w", err)
		}
		b := suiteFile(path)
		if strings.HasPrefix(rel, "nginx/") {
			b = adapted(path)
		}
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			return "", fmt.Errorf("suite charts: %w", err)
		}
	}
	return out, nil
}

// installDriver installs the driver's chart as the Makefile's
// e2e-setup-driver does (namespace csi, syncSecret on, audience vault) with
// the bed's values, rotation off as in the suite, and the audience
// custom-audience added as the migration guide says.
func installDriver(ctx context.Context, c *testbed.Cluster) error {
	chart, err := testbed.Bin("csidriver-chart")
	if err != nil {
		return err
	}
	args := append([]string{"install", "secrets-store-csi-driver", chart, "--namespace=" + csiNamespace, "--wait", "--timeout=5m"},
		c.DriverValues(time.Minute)...)
	args = append(args, "--set", "enableSecretRotation=false", "--set", "tokenRequests[1].audience=custom-audience")
	_, err = c.Helm(ctx, args...)
	return err
}

// vaultManifest runs the bed's Vault build as the suite's Vault: in csi,
// Service vault, the suite's server certificate and client CA (Secret
// vault-server-tls from configs/vault) on a TLS listener on 8200. It is a
// dev server (in memory, unsealed, root token "root", no KV mount: the
// suite enables its own); its plain dev listener stays on the pod's
// loopback. Its service account reviews the pods' tokens, as vault-helm's.
const vaultManifest = `
apiVersion: v1
kind: ServiceAccount
metadata: {name: vault, namespace: csi}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: peer-vault-tokenreview}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:auth-delegator"}
subjects: [{kind: ServiceAccount, name: vault, namespace: csi}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: vault-listener, namespace: csi}
data:
  listener.hcl: |
    disable_mlock = true
    listener "tcp" {
      address            = "0.0.0.0:8200"
      tls_cert_file      = "/mnt/tls/server.crt"
      tls_key_file       = "/mnt/tls/server.key"
      tls_client_ca_file = "/mnt/tls/ca.crt"
    }
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: vault, namespace: csi, labels: {app.kubernetes.io/name: vault}}
spec:
  replicas: 1
  selector: {matchLabels: {app.kubernetes.io/name: vault}}
  template:
    metadata: {labels: {app.kubernetes.io/name: vault}}
    spec:
      serviceAccountName: vault
      containers:
      - name: vault
        image: docker.io/hashicorp/vault:%s
        imagePullPolicy: Never
        args: [server, -dev, -dev-no-kv, -dev-root-token-id=root, -dev-listen-address=127.0.0.1:8300, -dev-no-store-token]
        env:
        - {name: VAULT_LOG_FORMAT, value: standard}
        - {name: VAULT_CONFIG_DIR, value: /vault/config}
        ports:
        - {name: https, containerPort: 8200}
        readinessProbe:
          httpGet: {path: /v1/sys/health, port: 8200, scheme: HTTPS}
          periodSeconds: 2
        securityContext:
          runAsNonRoot: true
          runAsUser: 65532
          allowPrivilegeEscalation: false
          capabilities: {drop: [ALL]}
        volumeMounts:
        - {name: tls, mountPath: /mnt/tls, readOnly: true}
        - {name: config, mountPath: /vault/config, readOnly: true}
      volumes:
      - name: tls
        secret: {secretName: vault-server-tls}
      - name: config
        configMap: {name: vault-listener}
---
apiVersion: v1
kind: Service
metadata: {name: vault, namespace: csi}
spec:
  selector: {app.kubernetes.io/name: vault}
  ports:
  - {name: https, port: 8200, targetPort: 8200}
`

// installVault runs Vault (vaultManifest) and returns a root client that
// reaches it on its pod's address, trusting the suite's CA as "vault".
func installVault(ctx context.Context, c *testbed.Cluster) (*vaultapi.Client, error) {
	version, err := vaultVersion()
	if err != nil {
		return nil, err
	}
	if err := c.Apply(ctx, fmt.Appendf(nil, vaultManifest, version)); err != nil {
		return nil, fmt.Errorf("install Vault: %w", err)
	}
	if err := c.WaitDeployment(ctx, csiNamespace, "vault"); err != nil {
		return nil, err
	}
	pods, err := c.Client.CoreV1().Pods(csiNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=vault"})
	if err != nil || len(pods.Items) == 0 {
		return nil, fmt.Errorf("find the Vault pod: %w", errors.Join(err, errors.New("none")))
	}
	tls, err := c.Client.CoreV1().Secrets(csiNamespace).Get(ctx, "vault-server-tls", metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("the suite's Vault CA: %w", err)
	}
	cfg := vaultapi.DefaultConfig()
	cfg.Address = "https://" + pods.Items[0].Status.PodIP + ":8200"
	if err := cfg.ConfigureTLS(&vaultapi.TLSConfig{CACertBytes: tls.Data["ca.crt"], TLSServerName: "vault"}); err != nil {
		return nil, fmt.Errorf("Vault client TLS: %w", err)
	}
	v, err := vaultapi.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("Vault client: %w", err)
	}
	v.SetToken(testbed.VaultRootToken)
	return v, nil
}

// vaultVersion is the Vault version the bed builds, from
// test/tools/versions.env (the image's tag, without the v).
func vaultVersion() (string, error) {
	root, err := testbed.ModuleRoot()
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(filepath.Join(root, "test", "tools", "versions.env"))
	if err != nil {
		return "", fmt.Errorf("pinned versions: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "VAULT_VERSION="); ok {
			return strings.TrimPrefix(v, "v"), nil
		}
	}
	return "", errors.New("VAULT_VERSION not in test/tools/versions.env")
}

// providerValues are the suite's provider settings (vault.values.yaml's
// csi: section) in this chart's value names.
const providerValues = `
logLevel: debug
extraArgs:
  - -vault-addr=https://vault:8200
  - -vault-tls-ca-cert=/mnt/tls/ca.crt
  - -vault-tls-client-cert=/mnt/tls/client.crt
  - -vault-tls-client-key=/mnt/tls/client.key
volumes:
  - name: vault-client-tls
    secret:
      secretName: vault-client-tls
volumeMounts:
  - name: vault-client-tls
    mountPath: /mnt/tls
    readOnly: true
`

// installProvider installs this project's chart into csi with the suite's
// provider settings.
func installProvider(ctx context.Context, c *testbed.Cluster) error {
	values := filepath.Join(c.Dir, "peer-provider-values.yaml")
	if err := os.WriteFile(values, []byte(providerValues), 0o600); err != nil {
		return fmt.Errorf("provider values: %w", err)
	}
	return c.HelmProvider(ctx, csiNamespace, "--namespace", csiNamespace, "--values", values)
}
