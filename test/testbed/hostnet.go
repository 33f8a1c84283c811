package testbed

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// The cluster bed's addresses. Pods live on one bridge the bed creates, on a
// private /24 of its own; Services are virtual addresses that kube-proxy
// translates to pods on that bridge or to the apiserver on the bridge's own
// address. Nothing of the bed routes anywhere else: a guard chain drops what
// would leave the bridge for another interface.
const (
	// BridgeName is the bed's Linux bridge; the CNI bridge plugin attaches pods to it.
	BridgeName = "okvbr0"
	// PodCIDR is the pods' range, on the bridge.
	PodCIDR = "10.244.77.0/24"
	// NodeIP is the bridge's own address: the node's InternalIP, where the
	// apiserver and kubelet listen for pods and for each other.
	NodeIP = "10.244.77.1"
	// ServiceCIDR is the Services' ClusterIP range (virtual, kube-proxy's).
	ServiceCIDR = "10.96.77.0/24"
	// ClusterDNSIP is the kube-dns Service's ClusterIP, CoreDNS behind it.
	ClusterDNSIP = "10.96.77.10"
	// guardChain holds the bed's iptables rules (filter FORWARD and INPUT).
	guardChain = "OKEVAULT-GUARD"
)

// hostNet is what the bed changed in the host's network: the bridge, the
// guard rules and net.ipv4.ip_forward (the CNI bridge plugin turns it on),
// put back by teardown.
type hostNet struct {
	forwardWas string
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput() //nolint:gosec,noctx // the bed's own commands, short-lived
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

const ipForward = "/proc/sys/net/ipv4/ip_forward"

// setUpHostNet creates the bridge with NodeIP and the guard chain: traffic
// from the bridge may reach only the bridge (pods, and the node's address);
// nothing from or to another interface is forwarded.
func setUpHostNet() (*hostNet, error) {
	was, err := os.ReadFile(ipForward)
	if err != nil {
		return nil, fmt.Errorf("read ip_forward: %w", err)
	}
	h := &hostNet{forwardWas: strings.TrimSpace(string(was))}
	steps := [][]string{
		{"ip", "link", "add", BridgeName, "type", "bridge"},
		{"ip", "addr", "add", NodeIP + "/24", "dev", BridgeName},
		{"ip", "link", "set", BridgeName, "up"},
		{"iptables", "-w", "-N", guardChain},
		// Replies to the bed's own connections (the host's tests to pods) pass.
		{"iptables", "-w", "-A", guardChain, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "RETURN"},
		{"iptables", "-w", "-A", guardChain, "-i", BridgeName, "-o", BridgeName, "-j", "RETURN"},
		{"iptables", "-w", "-A", guardChain, "-i", BridgeName, "-j", "DROP"},
		{"iptables", "-w", "-A", guardChain, "-o", BridgeName, "-j", "DROP"},
		{"iptables", "-w", "-I", "FORWARD", "1", "-j", guardChain},
		// Pods may reach the host only at the node's address.
		{"iptables", "-w", "-I", "INPUT", "1", "-i", BridgeName, "!", "-d", NodeIP, "-j", "DROP"},
	}
	for _, s := range steps {
		if err := run(s[0], s[1:]...); err != nil {
			return h, errors.Join(err, h.tearDown())
		}
	}
	return h, nil
}

// tearDown removes the bridge and the guard and restores ip_forward. It
// tolerates what is already gone, so it also cleans up after a killed run.
func (h *hostNet) tearDown() error {
	var errs []error
	_ = run("ip", "link", "del", BridgeName)
	deleteAll("iptables", "FORWARD", "-j", guardChain)
	deleteAll("iptables", "INPUT", "-i", BridgeName, "!", "-d", NodeIP, "-j", "DROP")
	_ = run("iptables", "-w", "-F", guardChain)
	_ = run("iptables", "-w", "-X", guardChain)
	// kubelet's own chains (its localnet firewall and the canaries it uses
	// to notice a flush), in both families; kube-proxy --cleanup removes
	// kube-proxy's.
	for _, ipt := range []string{"iptables", "ip6tables"} {
		for _, hook := range []string{"INPUT", "OUTPUT"} {
			deleteAll(ipt, hook, "-j", "KUBE-FIREWALL")
		}
		for _, table := range []string{"filter", "nat", "mangle"} {
			for _, chain := range []string{"KUBE-FIREWALL", "KUBE-KUBELET-CANARY", "KUBE-IPTABLES-HINT"} {
				_ = run(ipt, "-w", "-t", table, "-F", chain)
				_ = run(ipt, "-w", "-t", table, "-X", chain)
			}
		}
	}
	if h != nil && h.forwardWas != "" {
		if err := os.WriteFile(ipForward, []byte(h.forwardWas+"\n"), 0o644); err != nil { //nolint:gosec // G306: a sysctl
			errs = append(errs, fmt.Errorf("restore ip_forward: %w", err))
		}
	}
	return errors.Join(errs...)
}

// deleteAll deletes every copy of a rule from chain (a killed run may have
// added it twice).
func deleteAll(ipt, chain string, rule ...string) {
	for range 10 {
		if run(ipt, append([]string{"-w", "-D", chain}, rule...)...) != nil {
			return
		}
	}
}

// cgroupBase is the v1 mount point of the host's cgroup hierarchies.
const cgroupBase = "/sys/fs/cgroup"

// bedCgroup returns the cgroup path the node's pods live under: one subtree,
// below the memory cgroup the test runs in (on this kind of machine the
// memory hierarchy places it below the root; the others at /), the same path
// in every hierarchy, so kubelet's cgroupfs driver finds it everywhere.
func bedCgroup() (string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", fmt.Errorf("read /proc/self/cgroup: %w", err)
	}
	parent := "/"
	for _, line := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) == 3 && parts[1] == "memory" {
			parent = parts[2]
		}
	}
	return filepath.Join(parent, "okevault-testbed"), nil
}

// cgroupHierarchies lists the mounted cgroup v1 hierarchies (and the
// unified one of a hybrid host), by folder.
func cgroupHierarchies() []string {
	entries, err := os.ReadDir(cgroupBase)
	if err != nil {
		return nil
	}
	var dirs []string
	for _, e := range entries {
		p := filepath.Join(cgroupBase, e.Name())
		if fi, err := os.Lstat(p); err == nil && fi.IsDir() { // skip cpu -> cpu,cpuacct links
			dirs = append(dirs, p)
		}
	}
	return dirs
}

// createCgroup makes path in every hierarchy; cpuset needs its cpus and mems
// copied down before a process may join. It returns the folders it created
// above path (the test's own cgroup exists in one hierarchy only), for
// removeCgroupParents.
func createCgroup(path string) ([]string, error) {
	var parents []string
	for _, h := range cgroupHierarchies() {
		if filepath.Base(h) == "unified" {
			continue
		}
		for p := filepath.Dir(path); p != "/" && p != "."; p = filepath.Dir(p) {
			if _, err := os.Stat(filepath.Join(h, p)); errors.Is(err, os.ErrNotExist) {
				parents = append(parents, filepath.Join(h, p))
			}
		}
		dir := filepath.Join(h, path)
		if err := os.MkdirAll(dir, 0o755); err != nil { //nolint:gosec // G301: cgroupfs folders, as runc makes them
			return parents, fmt.Errorf("create cgroup %s: %w", dir, err)
		}
		if strings.Contains(filepath.Base(h), "cpuset") {
			if err := copyCpuset(h, path); err != nil {
				return parents, err
			}
		}
	}
	return parents, nil
}

// removeCgroupParents removes the folders createCgroup made above the bed's
// cgroup, deepest first (they were listed deepest first per hierarchy).
func removeCgroupParents(parents []string) {
	for _, p := range parents {
		_ = syscall.Rmdir(p)
	}
}

func copyCpuset(hierarchy, path string) error {
	var walk []string
	for p := path; p != "/" && p != "."; p = filepath.Dir(p) {
		walk = append([]string{p}, walk...)
	}
	for _, p := range walk {
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			mine := filepath.Join(hierarchy, p, f)
			if b, err := os.ReadFile(mine); err == nil && strings.TrimSpace(string(b)) != "" { //nolint:gosec // G304: cgroupfs
				continue
			}
			parent, err := os.ReadFile(filepath.Join(hierarchy, filepath.Dir(p), f)) //nolint:gosec // G304: cgroupfs
			if err != nil {
				return fmt.Errorf("read cpuset of %s: %w", filepath.Dir(p), err)
			}
			if err := os.WriteFile(mine, parent, 0o644); err != nil { //nolint:gosec // G306: cgroupfs
				return fmt.Errorf("set %s: %w", mine, err)
			}
		}
	}
	return nil
}

// removeCgroup kills what is left in path's subtree and removes it from
// every hierarchy, deepest first.
func removeCgroup(path string) error {
	var errs []error
	for _, h := range cgroupHierarchies() {
		root := filepath.Join(h, path)
		var dirs []string
		//nolint:gosec // G703: the bed's own cgroup
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := rmdirCgroup(dirs[i]); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func rmdirCgroup(dir string) error {
	var err error
	for range 50 {
		if b, rerr := os.ReadFile(filepath.Join(dir, "cgroup.procs")); rerr == nil { //nolint:gosec // G304: cgroupfs
			for _, f := range strings.Fields(string(b)) {
				var pid int
				if _, serr := fmt.Sscan(f, &pid); serr == nil && pid > 0 {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		if err = syscall.Rmdir(dir); err == nil || errors.Is(err, syscall.ENOENT) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("remove cgroup %s: %w", dir, err)
}
