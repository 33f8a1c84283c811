// Command demo is `make demo`: a real single-node cluster (kubelet,
// containerd, kube-proxy, CoreDNS) with Vault as a pod, the Secrets Store CSI
// Driver and this provider installed with helm; the example pod starts, its
// files are shown with kubectl exec, and the secret rotates in the running
// pod (runCluster).
//
// With -quick (`make demo-quick`) it starts the parts as processes on
// 127.0.0.1 instead — etcd and kube-apiserver, a Vault dev server, the
// driver and this provider — and mounts the example volume as kubelet
// would, through the driver's CSI socket. DEMO_KEEP=1 keeps everything
// running until Ctrl-C.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/okevault/vault-csi-provider/setup"
	"github.com/okevault/vault-csi-provider/test/testbed"
)

func main() {
	quick := flag.Bool("quick", false, "run the parts as host processes and play kubelet (no cluster)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	demo := runCluster
	if *quick {
		demo = run
	}
	err := demo(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

type closer interface{ Close() error }

func run(ctx context.Context) (err error) {
	start := time.Now()
	root, err := testbed.ModuleRoot()
	if err != nil {
		return err
	}
	var parts []closer
	defer func() {
		step("Stopping everything")
		for i := len(parts) - 1; i >= 0; i-- {
			err = errors.Join(err, parts[i].Close())
		}
	}()

	dir, err := os.MkdirTemp("", "vault-csi-demo-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()

	step("Starting etcd and kube-apiserver")
	kube, err := testbed.NewKube(ctx, testbed.KubeOptions{})
	if err != nil {
		return err
	}
	parts = append(parts, kube)
	say("kube-apiserver %s", kube.Host)

	step("Starting Vault (dev server)")
	vault, err := testbed.NewVault(ctx, testbed.VaultOptions{})
	if err != nil {
		return err
	}
	parts = append(parts, vault)
	say("Vault %s", vault.Addr)

	step("Configuring Vault with vault-oke-setup's configure stage (examples/setup/seed.yaml)")
	if err := configureVault(ctx, root, dir, kube, vault); err != nil {
		return err
	}

	providers := filepath.Join(dir, "providers")
	if err := os.MkdirAll(providers, 0o700); err != nil {
		return err
	}

	step("Starting the Secrets Store CSI Driver")
	driver, err := testbed.NewDriver(ctx, kube, testbed.DriverOptions{ProvidersDir: providers})
	if err != nil {
		return err
	}
	parts = append(parts, driver)
	say("CSI socket %s, node %s, tokenRequests audience %v", driver.Endpoint, driver.NodeName, driver.TokenAudiences)

	step("Starting vault-csi-provider")
	provider, err := testbed.NewProvider(ctx, testbed.ProviderOptions{
		Binary:       filepath.Join(root, "dist", "vault-csi-provider"),
		ProvidersDir: providers,
		Kube:         kube,
		Args:         []string{"-vault-addr=" + vault.Addr},
	})
	if err != nil {
		return err
	}
	parts = append(parts, provider)
	say("provider socket %s", provider.Socket)

	step("Applying examples/secretproviderclass.yaml and examples/pod.yaml")
	spc, err := os.ReadFile(filepath.Join(root, "examples", "secretproviderclass.yaml")) //nolint:gosec // G304: the module's own example
	if err != nil {
		return err
	}
	if err := kube.Apply(ctx, spc); err != nil {
		return err
	}
	pod, volume, class, err := createPod(ctx, kube, driver.NodeName, filepath.Join(root, "examples", "pod.yaml"))
	if err != nil {
		return err
	}
	say("pod %s/%s (service account %s), volume %q → SecretProviderClass %q", pod.Namespace, pod.Name, pod.Spec.ServiceAccountName, volume, class)

	step("Mounting the volume as kubelet would (NodePublishVolume on the driver)")
	vol, err := driver.Publish(ctx, testbed.PublishRequest{Pod: pod, SecretProviderClass: class, VolumeName: volume})
	if err != nil {
		return err
	}
	if err := show(ctx, kube, vol, pod, class); err != nil {
		return err
	}

	step("Rotating the password in Vault and mounting again")
	newPassword := fmt.Sprintf("rotated-%d", time.Now().Unix())
	if _, err := vault.Client.KVv2("secret").Patch(ctx, "testapp", map[string]any{"password": newPassword}); err != nil {
		return err
	}
	say("secret/testapp password=%s (version 2)", newPassword)
	if err := vol.Unpublish(ctx); err != nil {
		return err
	}
	if vol, err = driver.Publish(ctx, testbed.PublishRequest{Pod: pod, SecretProviderClass: class, VolumeName: volume}); err != nil {
		return err
	}
	if err := show(ctx, kube, vol, pod, class); err != nil {
		return err
	}
	say("")
	say("Done in %s.", time.Since(start).Round(time.Second))

	if os.Getenv("DEMO_KEEP") != "" {
		step("DEMO_KEEP is set: everything keeps running until Ctrl-C")
		say("export KUBECONFIG=%s", kube.KubeconfigPath)
		say("export VAULT_ADDR=%s VAULT_TOKEN=%s", vault.Addr, vault.RootToken)
		say("provider socket: %s   pod volume: %s", provider.Socket, vol.TargetPath)
		say("kubectl: %s", filepath.Join(root, "bin", "kubectl"))
		<-ctx.Done()
	}
	return vol.Unpublish(context.WithoutCancel(ctx))
}

// configureVault runs the setup package's configure stage on the seed file,
// as `vault-oke-setup configure -f examples/setup/seed.yaml` would, with the
// changes a Vault outside the cluster needs: the apiserver's address and CA,
// and a reviewer service account bound to system:auth-delegator.
func configureVault(ctx context.Context, root, dir string, kube *testbed.Kube, vault *testbed.Vault) error {
	f, err := setup.Load(filepath.Join(root, "examples", "setup", "seed.yaml"))
	if err != nil {
		return err
	}
	reviewer := setup.ServiceAccountRef{Namespace: "kube-system", Name: "vault-tokenreview"}
	for i := range f.Spec.Configure.Auth {
		if k := f.Spec.Configure.Auth[i].Kubernetes; k != nil {
			k.Reviewer = &setup.Reviewer{ServiceAccount: &reviewer}
		}
	}
	if err := kube.CreateServiceAccount(ctx, reviewer.Namespace, reviewer.Name); err != nil {
		return err
	}
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "vault-tokenreview-auth-delegator"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:auth-delegator"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: reviewer.Namespace, Name: reviewer.Name}},
	}
	if _, err := kube.Client.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil {
		return err
	}
	// The seed's application service account (its deploy stage would make
	// it) and the namespace's default one, which verify expects to be denied
	// (no controller-manager runs here to make it).
	for _, sa := range []string{"testapp", "default"} {
		if err := kube.CreateServiceAccount(ctx, "default", sa); err != nil {
			return err
		}
	}
	ca := filepath.Join(dir, "kube-ca.pem")
	if err := os.WriteFile(ca, kube.CAPEM, 0o600); err != nil {
		return err
	}
	env := map[string]string{"TESTAPP_USERNAME": "testapp", "TESTAPP_PASSWORD": fmt.Sprintf("demo-%d", time.Now().UnixNano()%1_000_000)}
	p, err := setup.Prepare(f, setup.Overrides{VaultAddr: vault.Addr, KubernetesHost: kube.Host, KubernetesCAFile: ca}, func(k string) string { return env[k] })
	if err != nil {
		return err
	}
	vc, err := setup.NewVaultClient(vault.Addr, vault.RootToken, "", 10*time.Second)
	if err != nil {
		return err
	}
	r := &setup.Runner{Prepared: p, Kube: kube.RESTConfig, Vault: vc, Out: indent{os.Stdout}, WaitVault: 10 * time.Second}
	if _, err := r.Apply(ctx, setup.Stages{Configure: true}); err != nil {
		return err
	}
	failed, err := r.Verify(ctx)
	if err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("verify: %d checks failed", failed)
	}
	say("secret/testapp holds username=%s password=%s", env["TESTAPP_USERNAME"], env["TESTAPP_PASSWORD"])
	return nil
}

// indent prefixes the setup runner's lines like the demo's own.
type indent struct{ w *os.File }

func (i indent) Write(p []byte) (int, error) {
	for _, line := range strings.SplitAfter(string(p), "\n") {
		if line == "" {
			continue
		}
		if _, err := fmt.Fprint(i.w, "    "+line); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// createPod creates the example pod on the driver's node and returns its
// CSI volume's name and SecretProviderClass.
func createPod(ctx context.Context, kube *testbed.Kube, node, path string) (*corev1.Pod, string, string, error) {
	b, err := os.ReadFile(path) //nolint:gosec // G304: the module's own example manifest
	if err != nil {
		return nil, "", "", err
	}
	var pod corev1.Pod
	if err := yaml.UnmarshalStrict(b, &pod); err != nil {
		return nil, "", "", fmt.Errorf("%s: %w", path, err)
	}
	pod.Spec.NodeName = node // no scheduler runs: place it where the driver is
	created, err := kube.Client.CoreV1().Pods(pod.Namespace).Create(ctx, &pod, metav1.CreateOptions{})
	if err != nil {
		return nil, "", "", err
	}
	for _, v := range pod.Spec.Volumes {
		if v.CSI != nil && v.CSI.Driver == testbed.DriverName {
			return created, v.Name, v.CSI.VolumeAttributes["secretProviderClass"], nil
		}
	}
	return nil, "", "", fmt.Errorf("%s has no %s volume", path, testbed.DriverName)
}

// show prints the files the pod sees and the driver's record of versions.
func show(ctx context.Context, kube *testbed.Kube, vol *testbed.Volume, pod *corev1.Pod, class string) error {
	files, err := vol.Files()
	if err != nil {
		return err
	}
	modes, err := vol.Modes()
	if err != nil {
		return err
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	say("the pod sees (%s):", vol.TargetPath)
	for _, n := range names {
		say("  %s  %-14s %s", modes[n].Perm(), n, strings.TrimSpace(string(files[n])))
	}
	dyn, err := dynamic.NewForConfig(kube.RESTConfig)
	if err != nil {
		return err
	}
	gvr := schema.GroupVersionResource{Group: "secrets-store.csi.x-k8s.io", Version: "v1", Resource: "secretproviderclasspodstatuses"}
	name := pod.Name + "-" + pod.Namespace + "-" + class
	u, err := dyn.Resource(gvr).Namespace(pod.Namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	objs, _, _ := unstructured.NestedSlice(u.Object, "status", "objects")
	say("SecretProviderClassPodStatus %s:", name)
	for _, o := range objs {
		m, _ := o.(map[string]any)
		say("  %-14s version %v", m["id"], m["version"])
	}
	return nil
}

func step(s string) { fmt.Printf("\n==> %s\n", s) }

func say(format string, args ...any) { fmt.Printf("    "+format+"\n", args...) }
