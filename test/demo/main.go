// Command demo is `make demo`: it starts the real parts on 127.0.0.1 — etcd
// and kube-apiserver, a Vault dev server, the Secrets Store CSI Driver and
// this provider — sets Vault up as the user's scenario does, mounts the
// example SecretProviderClass into the example pod as kubelet would, shows
// what the pod sees, rotates the secret and mounts again. DEMO_KEEP=1 keeps
// everything running until Ctrl-C.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/okevault/vault-csi-provider/test/testbed"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		stop()
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

	step("Configuring Vault as the scenario does")
	if err := vault.SeedScenario(ctx, kube); err != nil {
		return err
	}
	sc := vault.Scenario()
	say("auth/%s: Kubernetes auth, checking tokens with TokenReview on the apiserver", sc.AuthMount)
	say("policy %s, role %s bound to service account %s/%s (audience %s)", sc.Policy, sc.Role, sc.Namespace, sc.ServiceAccount, sc.Audience)
	say("%s/%s (KV v2) holds username=%s password=%s", sc.KVMount, sc.SecretPath, sc.SecretData["username"], sc.SecretData["password"])

	dir, err := os.MkdirTemp("", "vault-csi-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
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
	spc, err := os.ReadFile(filepath.Join(root, "examples", "secretproviderclass.yaml"))
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
	if _, err := vault.Client.KVv2(sc.KVMount).Patch(ctx, sc.SecretPath, map[string]any{"password": newPassword}); err != nil {
		return err
	}
	say("%s/%s password=%s (version 2)", sc.KVMount, sc.SecretPath, newPassword)
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

// createPod creates the example pod on the driver's node and returns its
// CSI volume's name and SecretProviderClass.
func createPod(ctx context.Context, kube *testbed.Kube, node, path string) (*corev1.Pod, string, string, error) {
	b, err := os.ReadFile(path)
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
