package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/okevault/vault-csi-provider/test/testbed"
)

// runCluster is `make demo`: a real single-node cluster, the driver and this
// provider installed with helm, the example pod started by kubelet, its
// files shown with kubectl exec, and the secret rotated in the running pod.
func runCluster(ctx context.Context) (err error) {
	start := time.Now()
	root, err := testbed.ModuleRoot()
	if err != nil {
		return err
	}
	step("Starting a single-node cluster: etcd, kube-apiserver, controller-manager, scheduler, containerd, kubelet, kube-proxy, CoreDNS")
	c, err := testbed.NewCluster(ctx, testbed.ClusterOptions{})
	if err != nil {
		return err
	}
	defer func() { //nolint:contextcheck // cleanup must run after ctx ended too
		step("Stopping the cluster and removing what it made")
		err = errors.Join(err, c.Close())
	}()
	say("node %s Ready, apiserver %s (%s)", c.NodeName, c.Host, time.Since(start).Round(time.Second))

	step("Running Vault in the cluster (dev server, namespace vault)")
	vault, err := c.InstallVault(ctx)
	if err != nil {
		return err
	}
	say("Vault pod at %s; in the cluster %s", vault.Addr, testbed.VaultClusterAddr)

	step("Configuring Vault with vault-oke-setup's configure stage (examples/setup/seed.yaml)")
	dir, err := os.MkdirTemp("", "vault-csi-demo-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	if err := configureVault(ctx, root, dir, c.Kube, vault); err != nil {
		return err
	}

	step("helm install the Secrets Store CSI Driver (its own chart: tokenRequests audience vault, rotation every 5s, sync on)")
	if err := c.InstallDriver(ctx, 5*time.Second); err != nil {
		return err
	}
	step("helm install vault-csi-provider (charts/vault-csi-provider, vault.address=" + testbed.VaultClusterAddr + ")")
	if err := c.InstallProvider(ctx); err != nil {
		return err
	}
	say("%s", strings.TrimSpace(kubectl(ctx, c, "get", "pods", "-A", "-o", "wide")))

	step("kubectl apply -f examples/secretproviderclass.yaml -f examples/pod.yaml")
	for _, f := range []string{"secretproviderclass.yaml", "pod.yaml"} {
		b, err := os.ReadFile(filepath.Join(root, "examples", f)) //nolint:gosec // G304: the module's own example
		if err != nil {
			return err
		}
		if err := c.Apply(ctx, b); err != nil {
			return err
		}
	}
	podStart := time.Now()
	if err := waitRunning(ctx, c, "default", "testapp"); err != nil {
		return err
	}
	say("pod default/testapp Running in %s", time.Since(podStart).Round(100*time.Millisecond))
	step("kubectl exec testapp -- ls -l /mnt/secrets; cat /mnt/secrets/password")
	say("%s", kubectl(ctx, c, "exec", "testapp", "--", "ls", "-l", "/mnt/secrets"))
	before := kubectl(ctx, c, "exec", "testapp", "--", "cat", "/mnt/secrets/password")
	say("password: %s", before)

	step("Rotating the password in Vault; kubelet republishes the volume (the driver's requiresRepublish) and the running pod's file changes")
	newPassword := fmt.Sprintf("rotated-%d", time.Now().Unix())
	if _, err := vault.Client.KVv2("secret").Patch(ctx, "testapp", map[string]any{"password": newPassword}); err != nil {
		return err
	}
	rotated := time.Now()
	for kubectl(ctx, c, "exec", "testapp", "--", "cat", "/mnt/secrets/password") != newPassword {
		if time.Since(rotated) > 2*time.Minute {
			return errors.New("the pod's password file did not rotate within 2 minutes")
		}
		time.Sleep(time.Second)
	}
	say("password: %s (in the running pod after %s)", newPassword, time.Since(rotated).Round(100*time.Millisecond))
	say("")
	say("Done in %s.", time.Since(start).Round(time.Second))

	if os.Getenv("DEMO_KEEP") != "" {
		step("DEMO_KEEP is set: the cluster keeps running until Ctrl-C")
		say("export KUBECONFIG=%s", c.KubeconfigPath)
		say("export VAULT_ADDR=%s VAULT_TOKEN=%s", vault.Addr, vault.RootToken)
		say("kubectl, helm: %s", filepath.Join(root, "bin"))
		<-ctx.Done()
	}
	return nil
}

// kubectl runs the bed's kubectl and returns its output (or the error).
func kubectl(ctx context.Context, c *testbed.Cluster, args ...string) string {
	bin, err := testbed.Bin("kubectl")
	if err != nil {
		return err.Error()
	}
	out, err := exec.CommandContext(ctx, bin, append([]string{"--kubeconfig", c.KubeconfigPath}, args...)...).CombinedOutput() //nolint:gosec // G204: the bed's own kubectl
	if err != nil {
		return fmt.Sprintf("%s (%v)", strings.TrimSpace(string(out)), err)
	}
	return strings.TrimSpace(string(out))
}

// waitRunning waits until the pod runs, printing its events while it waits.
func waitRunning(ctx context.Context, c *testbed.Cluster, ns, name string) error {
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		p, err := c.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil && p.Status.Phase == corev1.PodRunning {
			return nil
		}
		if err := sleepCtx(ctx, time.Second); err != nil {
			return err
		}
	}
	return fmt.Errorf("pod %s/%s not Running within 3 minutes:\n%s", ns, name, kubectl(ctx, c, "describe", "pod", "-n", ns, name))
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
