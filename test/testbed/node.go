package testbed

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The node's processes: containerd with the CRI, kubelet, kube-proxy, and the
// control plane's controller-manager and scheduler. Each runs with its own
// identity from the cluster CA, as kubeadm sets them up.

// containerdConfig is containerd 1.6's configuration: its own root, state and
// socket in the bed's directory, the local pause image as sandbox, no
// registry reachable (every image is imported), and restrict_oom_score_adj
// because this kind of machine refuses to lower a process's oom_score_adj.
const containerdConfig = `version = 2
root = %[1]q
state = %[2]q
[grpc]
  address = %[3]q
[ttrpc]
  address = "%[3]s.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.10"
  restrict_oom_score_adj = true
  disable_apparmor = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %[4]q
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "%[2]s/runc"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = %[5]q
`

// registryHosts lets containerd pull from the bed's registry (Cluster.Registry)
// over TLS with the registry's CA; every other registry stays "no pulls".
const registryHosts = `server = "https://%[1]s"
[host."https://%[1]s"]
  capabilities = ["pull", "resolve"]
  ca = %[2]q
`

// noPulls sends any pull containerd attempts to a closed local port: the bed
// imports its images, and nothing may leave the machine.
const noPulls = `server = "http://127.0.0.1:1"
[host."http://127.0.0.1:1"]
  capabilities = ["pull", "resolve"]
`

// cniConfig attaches pods to the bed's bridge with addresses from PodCIDR
// (state kept in the bed's directory), hairpin on for a pod that reaches
// itself through a Service, and no masquerade: nothing is routed off the host.
const cniConfig = `{
  "cniVersion": "1.0.0",
  "name": "okevault-testbed",
  "plugins": [
    {
      "type": "bridge",
      "bridge": %q,
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": %q,
        "ranges": [[{"subnet": %q, "gateway": %q}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`

// kubeletConfig: cgroupfs under the bed's cgroup (v1 allowed), webhook authn
// and authz for its API, the bed's DNS, logs and plugins inside the bed's
// directory, eviction and image GC that leave the imported images alone.
const kubeletConfig = `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %[1]s
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %[2]d
tlsCertFile: %[3]s/kubelet.crt
tlsPrivateKeyFile: %[3]s/kubelet.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %[3]s/ca.crt}
authorization: {mode: Webhook}
cgroupDriver: cgroupfs
cgroupRoot: %[4]s
failCgroupV1: false
failSwapOn: false
enforceNodeAllocatable: []
clusterDNS: [%[5]s]
clusterDomain: cluster.local
resolvConf: %[3]s/resolv.conf
podLogsDir: %[3]s/pod-logs
volumePluginDir: %[3]s/volume-plugins
containerRuntimeEndpoint: unix://%[6]s
imageServiceEndpoint: unix://%[6]s
serializeImagePulls: false
evictionHard: {memory.available: 100Mi, nodefs.available: "1%%", imagefs.available: "1%%", nodefs.inodesFree: "1%%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
kubeAPIQPS: 50
kubeAPIBurst: 100
# The driver chart turns rotation into the CSIDriver's requiresRepublish:
# kubelet republishes a running pod's volume at each pod sync, every minute
# by default; the bed syncs every 10 s so rotation shows in seconds.
syncFrequency: 10s
`

// kubeProxyConfig: iptables mode for the bed's pod range, NodePorts only on
// the node's address, no conntrack resizing (a VM may refuse it, as kind
// finds), no route_localnet.
const kubeProxyConfig = `apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: %[1]s/kube-proxy.kubeconfig}
hostnameOverride: %[2]s
mode: iptables
clusterCIDR: %[3]s
bindAddress: %[4]s
healthzBindAddress: 127.0.0.1:%[5]d
metricsBindAddress: 127.0.0.1:%[6]d
nodePortAddresses: [%[4]s/32]
conntrack: {maxPerCore: 0, min: 0}
iptables: {localhostNodePorts: false}
`

// startContainerd writes containerd's configuration and starts it on its
// own socket, waiting until the socket answers.
func (c *Cluster) startContainerd(ctx context.Context) error {
	d := filepath.Join(c.Dir, "containerd")
	c.ContainerdSocket = filepath.Join(d, "containerd.sock")
	cniDir := filepath.Join(c.Dir, "cni", "net.d")
	certsDir := filepath.Join(d, "certs.d", "_default")
	for _, dir := range []string{cniDir, certsDir} {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return fmt.Errorf("containerd: %w", err)
		}
	}
	files := map[string]string{
		filepath.Join(d, "config.toml"):               fmt.Sprintf(containerdConfig, filepath.Join(d, "root"), filepath.Join(d, "state"), c.ContainerdSocket, cniDir, filepath.Join(d, "certs.d")),
		filepath.Join(certsDir, "hosts.toml"):         noPulls,
		filepath.Join(cniDir, "10-okevault.conflist"): fmt.Sprintf(cniConfig, BridgeName, filepath.Join(c.Dir, "cni", "ipam"), PodCIDR, NodeIP),
	}
	if c.Registry != nil {
		regDir := filepath.Join(d, "certs.d", c.Registry.Host)
		if err := os.MkdirAll(regDir, 0o750); err != nil {
			return fmt.Errorf("containerd: %w", err)
		}
		files[filepath.Join(regDir, "hosts.toml")] = fmt.Sprintf(registryHosts, c.Registry.Host, c.Registry.CAFile)
	}
	for p, content := range files {
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			return fmt.Errorf("containerd: %w", err)
		}
	}
	p, err := startProcess(c.Dir, "containerd", childEnv(), "containerd", "--config", filepath.Join(d, "config.toml"))
	if err != nil {
		return err
	}
	c.containerd = p
	return waitReady(ctx, p, "its socket", func(ctx context.Context) error {
		return c.ctr(ctx, "version")
	})
}

// ctr runs containerd's own client against the bed's containerd, in the
// CRI's namespace.
func (c *Cluster) ctr(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, "ctr", append([]string{"--address", c.ContainerdSocket, "--namespace", "k8s.io"}, args...)...) //nolint:gosec // G204: the bed's own socket
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// ImportImage loads a docker-archive tarball into the node's containerd, so
// pods can run it with imagePullPolicy Never.
func (c *Cluster) ImportImage(ctx context.Context, tarball string) error {
	return c.ctr(ctx, "images", "import", tarball)
}

// identity issues a client certificate for a control-plane user and writes
// a kubeconfig for it.
func (c *Cluster) identity(name, commonName string, groups ...string) (string, error) {
	crt, key, err := c.pki.issue(certRequest{commonName: commonName, organizations: groups})
	if err != nil {
		return "", err
	}
	p := filepath.Join(c.Dir, name+".kubeconfig")
	return p, writeKubeconfig(p, c.Host, c.CAPEM, certUser(crt, key))
}

// startControlPlane starts kube-controller-manager and kube-scheduler, each
// as its own user, each controller with its own service account.
func (c *Cluster) startControlPlane() error {
	cmBin, err1 := Bin("kube-controller-manager")
	schedBin, err2 := Bin("kube-scheduler")
	if err := errors.Join(err1, err2); err != nil {
		return err
	}
	cmConfig, err1 := c.identity("controller-manager", "system:kube-controller-manager")
	schedConfig, err2 := c.identity("scheduler", "system:kube-scheduler")
	if err := errors.Join(err1, err2); err != nil {
		return err
	}
	f := func(name string) string { return filepath.Join(c.Kube.Dir, name) }
	var err error
	if c.cm, err = startProcess(c.Dir, "kube-controller-manager", childEnv(), cmBin,
		"--kubeconfig="+cmConfig,
		"--authentication-kubeconfig="+cmConfig,
		"--authorization-kubeconfig="+cmConfig,
		"--use-service-account-credentials=true",
		"--root-ca-file="+f("ca.crt"),
		"--service-account-private-key-file="+f("sa.key"),
		"--cluster-signing-cert-file="+f("ca.crt"),
		"--cluster-signing-key-file="+f("ca.key"),
		"--service-cluster-ip-range="+ServiceCIDR,
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		"--secure-port=0",
		"--v=1",
	); err != nil {
		return err
	}
	c.scheduler, err = startProcess(c.Dir, "kube-scheduler", childEnv(), schedBin,
		"--kubeconfig="+schedConfig,
		"--authentication-kubeconfig="+schedConfig,
		"--authorization-kubeconfig="+schedConfig,
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		"--secure-port=0",
		"--v=1",
	)
	return err
}

// kubeletRoot returns the kubelet's root directory, a shared mount (the
// driver mounts tmpfs volumes under it with Bidirectional propagation).
func (c *Cluster) kubeletRoot() string { return filepath.Join(c.Dir, "kubelet") }

func (c *Cluster) makeKubeletRoot() error {
	root := c.kubeletRoot()
	if err := os.MkdirAll(root, 0o750); err != nil {
		return fmt.Errorf("kubelet root: %w", err)
	}
	if err := unix.Mount(root, root, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind-mount kubelet root %s: %w", root, err)
	}
	if err := unix.Mount("", root, "", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make kubelet root %s shared: %w", root, err)
	}
	return nil
}

// startNode starts kubelet (as system:node:<name>, in system:nodes) and
// kube-proxy (as system:kube-proxy).
func (c *Cluster) startNode() error {
	kubeletBin, err1 := Bin("kubelet")
	proxyBin, err2 := Bin("kube-proxy")
	if err := errors.Join(err1, err2); err != nil {
		return err
	}
	nodeConfig, err := c.identity("kubelet", "system:node:"+c.NodeName, "system:nodes")
	if err != nil {
		return err
	}
	// kube-proxy.yaml names the kubeconfig this writes.
	if _, err := c.identity("kube-proxy", "system:kube-proxy"); err != nil {
		return err
	}
	crt, key, err := c.pki.issue(certRequest{commonName: c.NodeName, server: true, ips: []net.IP{net.ParseIP(NodeIP)}, dnsNames: []string{c.NodeName}})
	if err != nil {
		return err
	}
	healthz, err1 := freePort()
	proxyHealthz, err2 := freePort()
	proxyMetrics, err3 := freePort()
	if err := errors.Join(err1, err2, err3); err != nil {
		return err
	}
	files := map[string][]byte{
		"kubelet.crt":          crt,
		"kubelet.key":          key,
		"ca.crt":               c.CAPEM,
		"resolv.conf":          nil, // pods with dnsPolicy Default get no host resolvers
		"kubelet.yaml":         fmt.Appendf(nil, kubeletConfig, NodeIP, healthz, c.Dir, c.cgroup, ClusterDNSIP, c.ContainerdSocket),
		"kube-proxy.yaml":      fmt.Appendf(nil, kubeProxyConfig, c.Dir, c.NodeName, PodCIDR, NodeIP, proxyHealthz, proxyMetrics),
		"pod-logs/.keep":       nil,
		"volume-plugins/.keep": nil,
	}
	for name, b := range files {
		p := filepath.Join(c.Dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			return err
		}
		if err := os.WriteFile(p, b, 0o600); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	if err := c.makeKubeletRoot(); err != nil {
		return err
	}
	if c.kubelet, err = startProcess(c.Dir, "kubelet", childEnv(), kubeletBin,
		"--config="+filepath.Join(c.Dir, "kubelet.yaml"),
		"--kubeconfig="+nodeConfig,
		"--root-dir="+c.kubeletRoot(),
		"--hostname-override="+c.NodeName,
		"--node-ip="+NodeIP,
		"--cert-dir="+filepath.Join(c.Dir, "kubelet-pki"),
		"--v=1",
	); err != nil {
		return err
	}
	c.proxy, err = startProcess(c.Dir, "kube-proxy", childEnv(), proxyBin,
		"--config="+filepath.Join(c.Dir, "kube-proxy.yaml"), "--v=1")
	return err
}

// waitNodeReady waits until the node reports Ready.
func (c *Cluster) waitNodeReady(ctx context.Context) error {
	return waitReady(ctx, c.kubelet, "node "+c.NodeName+" Ready", func(ctx context.Context) error {
		n, err := c.Client.CoreV1().Nodes().Get(ctx, c.NodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				if cond.Status == corev1.ConditionTrue {
					return nil
				}
				return fmt.Errorf("node %s: Ready=%s: %s", c.NodeName, cond.Status, cond.Message)
			}
		}
		return fmt.Errorf("node %s: no Ready condition yet", c.NodeName)
	})
}

// removeSandboxes stops and removes every pod sandbox through the CRI, so
// that containerd's shims exit and the CNI releases each pod's network
// namespace, veth and address.
func (c *Cluster) removeSandboxes(ctx context.Context) error {
	if c.ContainerdSocket == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	conn, err := grpc.NewClient("unix://"+c.ContainerdSocket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("CRI: %w", err)
	}
	defer func() { _ = conn.Close() }()
	rt := cri.NewRuntimeServiceClient(conn)
	list, err := rt.ListPodSandbox(ctx, &cri.ListPodSandboxRequest{})
	if err != nil {
		return fmt.Errorf("CRI: list pod sandboxes: %w", err)
	}
	var errs []error
	// A sandbox kubelet was removing as it stopped may be gone by the time
	// it is stopped here: NotFound is done.
	for _, sb := range list.Items {
		if _, err := rt.StopPodSandbox(ctx, &cri.StopPodSandboxRequest{PodSandboxId: sb.Id}); status.Code(err) == codes.NotFound {
			continue
		} else if err != nil {
			errs = append(errs, fmt.Errorf("CRI: stop sandbox of %s/%s: %w", sb.Metadata.Namespace, sb.Metadata.Name, err))
			continue
		}
		if _, err := rt.RemovePodSandbox(ctx, &cri.RemovePodSandboxRequest{PodSandboxId: sb.Id}); err != nil && status.Code(err) != codes.NotFound {
			errs = append(errs, fmt.Errorf("CRI: remove sandbox of %s/%s: %w", sb.Metadata.Namespace, sb.Metadata.Name, err))
		}
	}
	return errors.Join(errs...)
}
