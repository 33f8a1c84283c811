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
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// ClusterNodeName is the cluster bed's one node.
const ClusterNodeName = "okevault-node"

// Cluster is a real single-node Kubernetes cluster on this machine: etcd and
// kube-apiserver (Node and RBAC authorization, NodeRestriction), the
// controller-manager and scheduler, containerd with runc and the bridge CNI
// plugin, kubelet with its own node credential, kube-proxy, and CoreDNS as a
// Deployment behind the cluster DNS Service. Every image it runs is
// assembled locally (bin/images, see test/tools/build.sh) and imported; no
// image is ever pulled. It needs root.
//
// Only one Cluster runs on a machine at a time (the bridge, the iptables
// chain, the providers' hostPath): NewCluster waits for a machine-wide lock,
// and first removes what a killed run left. Close stops everything and
// removes the pods' sandboxes, mounts, cgroups, the bridge and the rules.
type Cluster struct {
	*Kube
	// NodeName is the node's name.
	NodeName string
	// ContainerdSocket is the node's containerd (and CRI) socket.
	ContainerdSocket string
	// Dir holds the node's state: containerd, kubelet root, logs, configs.
	Dir string
	// Registry is a registry on the node's address (NodeIP), TLS with its
	// own CA and basic auth; containerd trusts it (certs.d/<host:port>), and
	// it is the only registry containerd may pull from. It starts empty.
	Registry *Registry

	ownDir bool
	lock   *os.File
	net    *hostNet
	cgroup string
	// cgroupParents are the folders above cgroup that the bed created.
	cgroupParents []string
	containerd    *process
	cm            *process
	scheduler     *process
	kubelet       *process
	proxy         *process

	providerImported bool
	// hostDirs are the node's directories outside Dir that the charts'
	// hostPath volumes create (DirectoryOrCreate); Close removes those that
	// did not exist before.
	hostDirs []string
}

// chartHostDirs are the driver chart's providers directories (and the
// folder of one), created on the host by its hostPath volumes.
var chartHostDirs = []string{"/var/run/secrets-store-csi-providers", "/etc/kubernetes/secrets-store-csi-providers", "/etc/kubernetes"}

// ClusterOptions configure NewCluster. The zero value is ready to use.
type ClusterOptions struct {
	// Dir holds everything of the cluster. Empty: a new temporary directory
	// that Close removes.
	Dir string
}

// lockPath serialises cluster beds on the machine; stateFile records the
// running bed's directory and cgroup so the next one can clean up after it.
const (
	lockPath  = "/run/lock/okevault-testbed.lock"
	stateFile = "/run/lock/okevault-testbed.state"
)

// StartCluster starts a Cluster for the test and stops it at cleanup,
// printing the log tails if the test failed.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	skipShort(t)
	c, err := NewCluster(t.Context(), ClusterOptions{})
	must(t, err)
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(c.LogTail(tailLines))
		}
		if err := c.Close(); err != nil {
			t.Errorf("testbed: %v", err)
		}
	})
	return c
}

// NewCluster starts the cluster and waits until its node is Ready and
// CoreDNS answers. ctx bounds the start only.
func NewCluster(ctx context.Context, opts ClusterOptions) (_ *Cluster, err error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("the cluster bed needs root (bridges, iptables, mounts, cgroups)")
	}
	for _, tool := range []string{"containerd", "runc", "ctr", "iptables", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%s not found: run \"make testbin\" (it installs containerd, runc, the CNI plugins and iptables from Debian)", tool)
		}
	}
	images, err := Bin("images")
	if err != nil {
		return nil, err
	}
	c := &Cluster{NodeName: ClusterNodeName}
	if c.lock, err = lockMachine(ctx); err != nil {
		return nil, err
	}
	defer func() { //nolint:contextcheck // cleanup must run after ctx ended too
		if err != nil {
			err = errors.Join(err, c.Close())
		}
	}()
	cleanStale()
	if c.Dir, c.ownDir, err = partDir(opts.Dir, "testbed-cluster-"); err != nil {
		return nil, err
	}
	if c.cgroup, err = bedCgroup(); err != nil {
		return nil, err
	}
	for _, d := range chartHostDirs {
		if _, err := os.Stat(d); errors.Is(err, os.ErrNotExist) {
			c.hostDirs = append(c.hostDirs, d)
		}
	}
	if err := os.WriteFile(stateFile, []byte(c.Dir+"\n"+c.cgroup+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("record the bed's state: %w", err)
	}
	if c.cgroupParents, err = createCgroup(c.cgroup); err != nil {
		return nil, err
	}
	if c.net, err = setUpHostNet(); err != nil {
		return nil, err
	}
	if c.Kube, err = NewKube(ctx, KubeOptions{Dir: filepath.Join(c.Dir, "kube"), Address: NodeIP, ServiceCIDR: ServiceCIDR, Nodes: true}); err != nil {
		return nil, err
	}
	if c.Registry, err = NewRegistry(ctx, RegistryOptions{Dir: filepath.Join(c.Dir, "registry"), IP: net.ParseIP(NodeIP)}); err != nil {
		return nil, err
	}
	if err := c.startContainerd(ctx); err != nil {
		return nil, err
	}
	tarballs, err := filepath.Glob(filepath.Join(images, "*.tar"))
	if err != nil || len(tarballs) == 0 {
		return nil, fmt.Errorf("no images in %s: run \"make testbin\"", images)
	}
	for _, tb := range tarballs {
		if err := c.ImportImage(ctx, tb); err != nil {
			return nil, err
		}
	}
	if err := c.startControlPlane(); err != nil {
		return nil, err
	}
	if err := c.startNode(); err != nil {
		return nil, err
	}
	if err := c.waitNodeReady(ctx); err != nil {
		return nil, err
	}
	if err := c.installDNS(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// lockMachine takes the machine-wide cluster lock, waiting while another
// bed holds it.
func lockMachine(ctx context.Context) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(lockPath), 0o755); err != nil { //nolint:gosec // G301: /run/lock, a system folder
		return nil, fmt.Errorf("cluster lock: %w", err)
	}
	f, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cluster lock: %w", err)
	}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			_ = f.Close()
			return nil, fmt.Errorf("cluster lock %s: %w", lockPath, err)
		}
		if err := sleep(ctx, time.Second); err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("wait for the cluster lock %s (another cluster bed runs): %w", lockPath, err)
		}
	}
}

// cleanStale removes what a killed bed left (it holds no lock any more, so
// its processes are gone or orphaned): its containers' processes, mounts,
// cgroups, network and directory.
func cleanStale() {
	b, err := os.ReadFile(stateFile)
	if err != nil {
		return
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) < 2 {
		return
	}
	dir, cgroup := lines[0], lines[1]
	killShims(filepath.Join(dir, "containerd", "containerd.sock"))
	_ = removeCgroup(cgroup)
	_ = unmountUnder(dir)
	_ = (*hostNet)(nil).tearDown()
	_ = cleanKubeProxy()
	if strings.HasPrefix(filepath.Base(dir), "testbed-cluster-") && filepath.Dir(dir) == filepath.Clean(os.TempDir()) {
		_ = os.RemoveAll(dir) //nolint:gosec // G703: a bed folder in the temporary directory, checked above
	}
	_ = os.Remove(stateFile)
}

// killShims kills containerd shims serving the given containerd socket
// (they leave containerd's process group on purpose).
func killShims(socket string) {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p) //nolint:gosec // G304: procfs
		if err != nil || !strings.Contains(string(b), "containerd-shim") || !strings.Contains(string(b), socket) {
			continue
		}
		var pid int
		if _, err := fmt.Sscan(filepath.Base(filepath.Dir(p)), &pid); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// Close stops the node and the control plane and removes everything the
// cluster made on the machine.
func (c *Cluster) Close() error {
	if c == nil {
		return nil
	}
	ctx := context.Background()
	var errs []error
	// kubelet first, so it restarts nothing; then every sandbox through the
	// CRI, so the CNI gives back each pod's network.
	errs = append(errs, c.kubelet.stop())
	if c.containerd != nil && !c.containerd.exited() {
		errs = append(errs, c.removeSandboxes(ctx))
	}
	errs = append(errs, c.proxy.stop(), c.scheduler.stop(), c.cm.stop(), c.containerd.stop())
	c.kubelet, c.proxy, c.scheduler, c.cm, c.containerd = nil, nil, nil, nil, nil
	if c.Registry != nil {
		errs = append(errs, c.Registry.Close())
		c.Registry = nil
	}
	if c.Dir != "" {
		killShims(c.ContainerdSocket)
		errs = append(errs, unmountUnder(c.Dir))
	}
	if c.cgroup != "" {
		errs = append(errs, removeCgroup(c.cgroup))
		removeCgroupParents(c.cgroupParents)
	}
	if c.net != nil {
		errs = append(errs, c.net.tearDown())
		errs = append(errs, cleanKubeProxy())
	}
	errs = append(errs, c.Kube.Close())
	c.Kube = nil
	// The socket a killed provider left, then the directories the charts
	// made (deepest first; a directory that is not empty stays).
	_ = os.Remove("/var/run/secrets-store-csi-providers/vault.sock")
	for _, d := range c.hostDirs {
		_ = os.Remove(d)
	}
	cniResults, _ := filepath.Glob("/var/lib/cni/results/okevault-testbed-*")
	for _, f := range cniResults {
		_ = os.Remove(f)
	}
	errs = append(errs, removeDir(c.Dir, c.ownDir))
	if c.lock != nil {
		_ = os.Remove(stateFile)
		_ = c.lock.Close() // releases the flock
		c.lock = nil
	}
	return closeErrors(errs...)
}

// LogTail returns the last lines of each process's log.
func (c *Cluster) LogTail(lines int) string {
	s := tailOf(lines, c.containerd, c.kubelet, c.proxy, c.cm, c.scheduler)
	if c.Registry != nil {
		s += tailOf(lines, c.Registry.proc)
	}
	if c.Kube != nil {
		s = c.Kube.LogTail(lines) + s
	}
	return s
}

// cleanKubeProxy removes kube-proxy's iptables chains and rules.
func cleanKubeProxy() error {
	bin, err := Bin("kube-proxy")
	if err != nil {
		return err
	}
	return run(bin, "--cleanup")
}
