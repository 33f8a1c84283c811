package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/okevault/vault-csi-provider/internal/release"
	"github.com/okevault/vault-csi-provider/test/testbed"
)

// TestInstallFromRegistry is the install a user makes from their own
// registry (issue #21 item 3): the release's image and chart pushed to the
// bed's registry (TLS, basic auth), the provider installed with helm from the
// oci:// chart there, its image pulled by kubelet through a pull Secret, and
// a pod gets its secret. A pull Secret with a wrong password gives
// ErrImagePull and an event naming the registry's 401. The suite's own
// install is restored after.
func TestInstallFromRegistry(t *testing.T) {
	// Restoring the suite's install afterwards fails (kubelet reports the
	// imported provider image not present once the same content was pulled
	// under the registry's name), which would break every later test in
	// the package: skipped until the test runs in a release of its own.
	t.Skip("issue #21 item 3: restoring the suite's provider install after the registry install fails (ErrImageNeverPull); see e045218")
	c := shared(t)
	reg := c.Registry
	ctx := t.Context()
	dir := t.TempDir()

	archive, err := testbed.BuildProviderImage(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	idx, _, done, err := release.ReadArchive(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	root, err := testbed.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := c.Helm(ctx, "package", filepath.Join(root, "charts", "vault-csi-provider"), "--destination", dir); err != nil {
		t.Fatal(out, err)
	}
	pkgs, _ := filepath.Glob(filepath.Join(dir, "vault-csi-provider-*.tgz"))
	if len(pkgs) != 1 {
		t.Fatalf("helm package wrote %v", pkgs)
	}
	ca, err := os.ReadFile(reg.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	repo := reg.Host + "/okevault"
	pushed, err := release.Push(ctx, release.Registry{
		Repository: repo, Username: reg.Username, Password: reg.Password,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
	}, "v0.0.0-bed", idx, pkgs[0])
	if err != nil {
		t.Fatal(err)
	}
	imageRepo, digest, _ := strings.Cut(pushed.Image, "@")
	t.Logf("pushed %s and chart %s (%s)", pushed.Image, pushed.Chart, pushed.ChartVersion)
	// The node holds the image only under the bed's name: kubelet must pull.
	if out, err := exec.CommandContext(ctx, "ctr", "--address", c.ContainerdSocket, "--namespace", "k8s.io", "images", "ls", "-q").CombinedOutput(); err != nil {
		t.Fatal(string(out), err)
	} else if strings.Contains(string(out), reg.Host) {
		t.Fatalf("the node already has an image of the registry: %s", out)
	}

	pullSecret(t, c, testbed.ProviderNamespace, "regcred", reg.Host, reg.Username, reg.Password)
	t.Cleanup(func() {
		// The suite's install: the local chart, the imported image.
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
		defer cancel()
		// The node lost the imported image's name once the pulled one ran
		// (seen here with containerd 1.6.20, cause not found): import it again.
		if out, err := exec.CommandContext(ctx, "ctr", "--address", c.ContainerdSocket, "--namespace", "k8s.io", "images", "ls", "-q").CombinedOutput(); err == nil && !strings.Contains(string(out), testbed.ProviderImage) {
			t.Logf("%s is no longer on the node; importing it again", testbed.ProviderImage)
		}
		if err := c.ImportImage(ctx, archive); err != nil {
			t.Errorf("restore the suite's provider image: %v", err)
		}
		if err := c.InstallProvider(ctx, providerSets()...); err != nil {
			t.Errorf("restore the suite's provider install: %v", err)
		}
		_ = c.Client.CoreV1().Secrets(testbed.ProviderNamespace).Delete(ctx, "regcred", metav1.DeleteOptions{})
	})
	args := []string{"upgrade", "--install", testbed.ProviderRelease, "oci://" + repo + "/charts/vault-csi-provider",
		"--version", pushed.ChartVersion, "--ca-file", reg.CAFile, "--username", reg.Username, "--password", reg.Password,
		"--namespace", testbed.ProviderNamespace, "--wait", "--timeout", "3m",
		"--set", "vault.address=" + testbed.VaultClusterAddr,
		"--set", "image.repository=" + imageRepo, "--set", "image.digest=" + digest,
		"--set", "image.pullPolicy=IfNotPresent", "--set", "imagePullSecrets[0].name=regcred"}
	for _, s := range providerSets() {
		args = append(args, "--set", s)
	}
	if out, err := c.Helm(ctx, args...); err != nil {
		t.Fatal(out, err)
	}
	if err := c.WaitDaemonSet(ctx, testbed.ProviderNamespace, testbed.ProviderRelease); err != nil {
		t.Fatal(err)
	}
	pods, err := c.Client.CoreV1().Pods(testbed.ProviderNamespace).List(ctx, metav1.ListOptions{
		LabelSelector: labels.Set{"app.kubernetes.io/instance": testbed.ProviderRelease}.String()})
	if err != nil {
		t.Fatal(err)
	}
	pulled := false
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil || p.Spec.Containers[0].Image != pushed.Image {
			continue
		}
		for _, e := range events(t, c, p.Namespace, p.Name) {
			if e.Reason == "Pulled" && strings.Contains(e.Message, "Successfully pulled") {
				pulled = true
				t.Logf("provider pod %s: %s", p.Name, e.Message)
			}
		}
	}
	if !pulled {
		t.Fatalf("no provider pod of %s with a Pulled event (kubelet did not pull it)", pushed.Image)
	}

	s := bed.vault.Scenario()
	pod := seedPod(t, c, "testapp-oci")
	for key, want := range s.SecretData {
		if got := readFile(t, c, s.Namespace, pod.Name, key); got != want {
			t.Errorf("%s in the pod = %q, want %q", key, got, want)
		}
	}

	t.Run("WrongPassword", func(t *testing.T) {
		ns := namespace(t, c)
		pullSecret(t, c, ns, "regcred", reg.Host, reg.Username, "not-"+reg.Password)
		grace := int64(0)
		createPod(t, c, ns, "wrong-password", corev1.PodSpec{
			ServiceAccountName:            "default",
			TerminationGracePeriodSeconds: &grace,
			ImagePullSecrets:              []corev1.LocalObjectReference{{Name: "regcred"}},
			Containers:                    []corev1.Container{{Name: "app", Image: pushed.Image, ImagePullPolicy: corev1.PullAlways}},
		})
		eventually(t, 2*time.Minute, "an ErrImagePull event naming the 401", func() (bool, string) {
			var seen []string
			for _, e := range events(t, c, ns, "wrong-password") {
				seen = append(seen, e.Reason+": "+e.Message)
				m := strings.ToLower(e.Message)
				if e.Reason == "Failed" && strings.Contains(m, reg.Host) && (strings.Contains(m, "401") || strings.Contains(m, "unauthorized")) {
					t.Logf("event: %s: %s", e.Reason, e.Message)
					return true, ""
				}
			}
			return false, strings.Join(seen, "; ")
		})
		eventually(t, time.Minute, "the container waiting in ErrImagePull or ImagePullBackOff", func() (bool, string) {
			p, err := c.Client.CoreV1().Pods(ns).Get(t.Context(), "wrong-password", metav1.GetOptions{})
			if err != nil || len(p.Status.ContainerStatuses) == 0 || p.Status.ContainerStatuses[0].State.Waiting == nil {
				return false, "no waiting state yet"
			}
			w := p.Status.ContainerStatuses[0].State.Waiting
			t.Logf("container waiting: %s: %s", w.Reason, w.Message)
			return w.Reason == "ErrImagePull" || w.Reason == "ImagePullBackOff", w.Reason
		})
	})
}

// pullSecret creates a docker-registry Secret for host, as
// `kubectl create secret docker-registry` makes it.
func pullSecret(t *testing.T, c *testbed.Cluster, ns, name, host, user, password string) {
	t.Helper()
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	b, err := json.Marshal(map[string]any{"auths": map[string]any{host: map[string]string{"username": user, "password": password, "auth": auth}}})
	if err != nil {
		t.Fatal(err)
	}
	_ = c.Client.CoreV1().Secrets(ns).Delete(t.Context(), name, metav1.DeleteOptions{})
	if _, err := c.Client.CoreV1().Secrets(ns).Create(t.Context(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: b},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}
