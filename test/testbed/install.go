package testbed

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/okevault/vault-csi-provider/internal/release"
)

// What the cluster bed installs, the way users install it: the Secrets Store
// CSI Driver with its own Helm chart, this project's chart, Vault as a pod,
// CoreDNS as the cluster DNS. Every image is the bed's, pulled never.

const (
	// DriverRelease is the driver chart's release, in DriverNamespace.
	DriverRelease = "csi-secrets-store"
	// DriverNamespace is where the driver chart is installed.
	DriverNamespace = "kube-system"
	// ProviderRelease is this project's chart's release, in ProviderNamespace.
	ProviderRelease = "vault-csi-provider"
	// ProviderImage is the provider image the bed builds from this repository.
	ProviderImage = "ghcr.io/okevault/vault-csi-provider:testbed"
	// VaultNamespace holds the dev Vault pod and its Service "vault".
	VaultNamespace = "vault"
	// VaultClusterAddr is Vault's address inside the cluster.
	VaultClusterAddr = "http://vault.vault.svc:8200"
)

// coreDNSManifest runs CoreDNS for cluster.local only: it answers from the
// Kubernetes API and forwards nothing (the bed may reach nothing outside).
// It listens on 1053 so it needs no capability; the Service maps 53.
const coreDNSManifest = `
apiVersion: v1
kind: ServiceAccount
metadata: {name: coredns, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:coredns"}
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}
subjects: [{kind: ServiceAccount, name: coredns, namespace: kube-system}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: coredns, namespace: kube-system}
data:
  Corefile: |
    cluster.local:1053 in-addr.arpa:1053 ip6.arpa:1053 {
        errors
        health :8080
        ready :8181
        kubernetes cluster.local in-addr.arpa ip6.arpa {
            pods insecure
            fallthrough in-addr.arpa ip6.arpa
        }
        cache 30
        loadbalance
    }
    .:1053 {
        errors
    }
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: coredns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  replicas: 1
  selector: {matchLabels: {k8s-app: kube-dns}}
  template:
    metadata: {labels: {k8s-app: kube-dns}}
    spec:
      serviceAccountName: coredns
      dnsPolicy: Default
      priorityClassName: system-cluster-critical
      containers:
      - name: coredns
        image: registry.k8s.io/coredns/coredns:%s
        imagePullPolicy: Never
        args: [-conf, /etc/coredns/Corefile]
        ports:
        - {name: dns, containerPort: 1053, protocol: UDP}
        - {name: dns-tcp, containerPort: 1053, protocol: TCP}
        readinessProbe:
          httpGet: {path: /ready, port: 8181}
          periodSeconds: 2
        livenessProbe:
          httpGet: {path: /health, port: 8080}
        securityContext:
          runAsNonRoot: true
          runAsUser: 65532
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities: {drop: [ALL]}
        volumeMounts:
        - {name: config, mountPath: /etc/coredns, readOnly: true}
      volumes:
      - name: config
        configMap: {name: coredns}
---
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  clusterIP: %s
  selector: {k8s-app: kube-dns}
  ports:
  - {name: dns, port: 53, targetPort: 1053, protocol: UDP}
  - {name: dns-tcp, port: 53, targetPort: 1053, protocol: TCP}
`

// installDNS runs CoreDNS and waits until it is ready.
func (c *Cluster) installDNS(ctx context.Context) error {
	version, err := pinnedVersion("COREDNS_VERSION")
	if err != nil {
		return err
	}
	if err := c.Apply(ctx, fmt.Appendf(nil, coreDNSManifest, version, ClusterDNSIP)); err != nil {
		return fmt.Errorf("install CoreDNS: %w", err)
	}
	return c.WaitDeployment(ctx, "kube-system", "coredns")
}

// vaultManifest runs a Vault dev server (in memory, unsealed, root token
// "root") as a pod, with the service account its Kubernetes auth method
// reviews tokens as.
const vaultManifest = `
apiVersion: v1
kind: Namespace
metadata: {name: vault}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: vault, namespace: vault}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: vault-tokenreview}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:auth-delegator"}
subjects: [{kind: ServiceAccount, name: vault, namespace: vault}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: vault, namespace: vault, labels: {app: vault}}
spec:
  replicas: 1
  selector: {matchLabels: {app: vault}}
  template:
    metadata: {labels: {app: vault}}
    spec:
      serviceAccountName: vault
      containers:
      - name: vault
        image: docker.io/hashicorp/vault:%s
        imagePullPolicy: Never
        args: [server, -dev, -dev-root-token-id=root, -dev-listen-address=0.0.0.0:8200, -dev-no-store-token]
        env:
        - {name: VAULT_LOG_FORMAT, value: standard}
        ports:
        - {name: http, containerPort: 8200}
        readinessProbe:
          httpGet: {path: /v1/sys/health, port: 8200}
          periodSeconds: 2
        securityContext:
          runAsNonRoot: true
          runAsUser: 65532
          allowPrivilegeEscalation: false
          capabilities: {drop: [ALL]}
---
apiVersion: v1
kind: Service
metadata: {name: vault, namespace: vault}
spec:
  selector: {app: vault}
  ports:
  - {name: http, port: 8200, targetPort: 8200}
`

// InstallVault runs a Vault dev server in the cluster and returns a handle
// that reaches it at its pod's address on the bed's bridge. Its Kubernetes
// auth method (set up by ConfigureKubernetesAuth or SeedScenario) reviews
// tokens as its own pod, through the kubernetes Service, as on a cluster.
func (c *Cluster) InstallVault(ctx context.Context) (*Vault, error) {
	version, err := pinnedVersion("VAULT_VERSION")
	if err != nil {
		return nil, err
	}
	if err := c.Apply(ctx, fmt.Appendf(nil, vaultManifest, strings.TrimPrefix(version, "v"))); err != nil {
		return nil, fmt.Errorf("install Vault: %w", err)
	}
	if err := c.WaitDeployment(ctx, VaultNamespace, "vault"); err != nil {
		return nil, err
	}
	pods, err := c.Client.CoreV1().Pods(VaultNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app=vault"})
	if err != nil || len(pods.Items) == 0 {
		return nil, fmt.Errorf("find the Vault pod: %w", errors.Join(err, errors.New("none")))
	}
	v := &Vault{RootToken: VaultRootToken, Addr: "http://" + pods.Items[0].Status.PodIP + ":8200", inCluster: true}
	if v.Client, err = newVaultClient(v.Addr, VaultRootToken); err != nil {
		return nil, err
	}
	return v, nil
}

// Helm runs the real helm binary against the cluster, with its caches and
// configuration in the cluster's directory.
func (c *Cluster) Helm(ctx context.Context, args ...string) (string, error) {
	bin, err := Bin("helm")
	if err != nil {
		return "", err
	}
	home := filepath.Join(c.Dir, "helm")
	cmd := exec.CommandContext(ctx, bin, args...) //nolint:gosec // G204: the bed's own helm
	cmd.Env = childEnv("KUBECONFIG="+c.KubeconfigPath, "HELM_CACHE_HOME="+home+"/cache",
		"HELM_CONFIG_HOME="+home+"/config", "HELM_DATA_HOME="+home+"/data")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("helm %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// DriverValues are the driver chart's values the bed sets: its images (the
// bed's, never pulled), the kubelet root, secret sync and rotation on, and
// the pods' tokens requested for the audience "vault".
func (c *Cluster) DriverValues(rotationPoll time.Duration) []string {
	never := []string{"image", "registrarImage", "livenessProbeImage", "crds.image"}
	var v []string
	for _, img := range never {
		v = append(v, "--set", "linux."+img+".pullPolicy=Never")
	}
	return append(v,
		"--set", "linux.kubeletRootDir="+c.kubeletRoot(),
		"--set", "syncSecret.enabled=true",
		"--set", "enableSecretRotation=true",
		"--set", "rotationPollInterval="+rotationPoll.String(),
		"--set", "tokenRequests[0].audience=vault",
	)
}

// InstallDriver installs the Secrets Store CSI Driver with its own chart
// (bin/csidriver-chart) and waits for its DaemonSet.
func (c *Cluster) InstallDriver(ctx context.Context, rotationPoll time.Duration) error {
	chart, err := Bin("csidriver-chart")
	if err != nil {
		return err
	}
	args := append([]string{"upgrade", "--install", DriverRelease, chart, "--namespace", DriverNamespace, "--wait", "--timeout", "5m"},
		c.DriverValues(rotationPoll)...)
	if _, err := c.Helm(ctx, args...); err != nil {
		return err
	}
	return c.WaitDaemonSet(ctx, DriverNamespace, DriverRelease+"-secrets-store-csi-driver")
}

// BuildProviderImage builds the provider from this repository for this
// machine's architecture as make release does (static, trimmed, the
// version stamped in) and assembles its image with the release's own
// recipe (internal/release: the Dockerfile's layout, an OCI image index
// holding this platform's manifest), as an OCI archive in dir named
// ProviderImage: the bed runs what ships, but for the version.
func BuildProviderImage(ctx context.Context, dir string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "vault-csi-provider")
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w -X main.version=testbed", "-o", bin, "./cmd/vault-csi-provider") //nolint:gosec // G204: the test's own temp dir
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build the provider: %w: %s", err, out)
	}
	idx, err := release.Index("testbed", map[string]string{runtime.GOARCH: bin})
	if err != nil {
		return "", fmt.Errorf("assemble the provider image: %w", err)
	}
	out := filepath.Join(dir, "vault-csi-provider.oci.tar")
	if err := release.WriteArchive(out, idx, ProviderImage); err != nil {
		return "", fmt.Errorf("assemble the provider image: %w", err)
	}
	return out, nil
}

// InstallProvider builds and imports the provider image (once per cluster)
// and installs charts/vault-csi-provider with its defaults except the image,
// the Vault address and the given --set values, and waits for its
// DaemonSet. Called again, it upgrades the release.
func (c *Cluster) InstallProvider(ctx context.Context, sets ...string) error {
	args := []string{"--namespace", ProviderNamespace, "--create-namespace", "--set", "vault.address=" + VaultClusterAddr}
	for _, s := range sets {
		args = append(args, "--set", s)
	}
	return c.HelmProvider(ctx, ProviderNamespace, args...)
}

// HelmProvider builds and imports the provider image (once per cluster),
// runs `helm upgrade --install` of charts/vault-csi-provider with that image
// and the given arguments (which must name the namespace), and waits for its
// DaemonSet in namespace.
func (c *Cluster) HelmProvider(ctx context.Context, namespace string, args ...string) error {
	if !c.providerImported {
		tarball, err := BuildProviderImage(ctx, c.Dir)
		if err != nil {
			return err
		}
		if err := c.ImportImage(ctx, tarball); err != nil {
			return err
		}
		c.providerImported = true
	}
	root, err := ModuleRoot()
	if err != nil {
		return err
	}
	repo, tag, _ := strings.Cut(ProviderImage, ":")
	args = append([]string{"upgrade", "--install", ProviderRelease, filepath.Join(root, "charts", "vault-csi-provider"),
		"--wait", "--timeout", "3m",
		"--set", "image.repository=" + repo, "--set", "image.tag=" + tag, "--set", "image.pullPolicy=Never"}, args...)
	if _, err := c.Helm(ctx, args...); err != nil {
		return err
	}
	return c.WaitDaemonSet(ctx, namespace, ProviderRelease)
}

// WaitDeployment waits until every replica of the Deployment is updated and
// available.
func (c *Cluster) WaitDeployment(ctx context.Context, namespace, name string) error {
	return waitCond(ctx, 3*time.Minute, func() error {
		d, err := c.Client.AppsV1().Deployments(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		want := int32(1)
		if d.Spec.Replicas != nil {
			want = *d.Spec.Replicas
		}
		if d.Status.ObservedGeneration < d.Generation || d.Status.UpdatedReplicas != want || d.Status.AvailableReplicas != want {
			return fmt.Errorf("deployment %s/%s: %d/%d available, %d updated%s", namespace, name,
				d.Status.AvailableReplicas, want, d.Status.UpdatedReplicas, c.podProblems(ctx, namespace, d.Spec.Selector))
		}
		return nil
	})
}

// WaitDaemonSet waits until the DaemonSet's pods are updated and ready.
func (c *Cluster) WaitDaemonSet(ctx context.Context, namespace, name string) error {
	return waitCond(ctx, 3*time.Minute, func() error {
		d, err := c.Client.AppsV1().DaemonSets(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		s := d.Status
		if s.ObservedGeneration < d.Generation || s.DesiredNumberScheduled == 0 || s.UpdatedNumberScheduled != s.DesiredNumberScheduled || s.NumberReady != s.DesiredNumberScheduled {
			return fmt.Errorf("daemonset %s/%s: %d/%d ready, %d updated%s", namespace, name,
				s.NumberReady, s.DesiredNumberScheduled, s.UpdatedNumberScheduled, c.podProblems(ctx, namespace, d.Spec.Selector))
		}
		return nil
	})
}

// podProblems describes why the selected pods are not ready, for errors.
func (c *Cluster) podProblems(ctx context.Context, namespace string, sel *metav1.LabelSelector) string {
	selector, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return ""
	}
	pods, err := c.Client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector.String()})
	if err != nil {
		return ""
	}
	var b strings.Builder
	for _, p := range pods.Items {
		fmt.Fprintf(&b, "; pod %s: %s", p.Name, p.Status.Phase)
		for _, cs := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
			if w := cs.State.Waiting; w != nil {
				fmt.Fprintf(&b, " %s waiting: %s %s", cs.Name, w.Reason, w.Message)
			}
			if t := cs.LastTerminationState.Terminated; t != nil {
				fmt.Fprintf(&b, " %s last exit %d: %s", cs.Name, t.ExitCode, t.Reason)
			}
		}
	}
	return b.String()
}

// pinnedVersion reads a version from test/tools/versions.env, where build.sh
// takes it from too.
func pinnedVersion(key string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(filepath.Join(root, "test", "tools", "versions.env")) //nolint:gosec // G304: this module's file
	if err != nil {
		return "", fmt.Errorf("read pinned versions: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok && k == key {
			return v, nil
		}
	}
	return "", fmt.Errorf("%s not in test/tools/versions.env", key)
}
