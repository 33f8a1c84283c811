package seed

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"sigs.k8s.io/yaml"

	"github.com/okevault/vault-csi-provider/test/testbed"
)

// kubectl runs the bed's kubectl from the module root, as the docs do.
func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	bin, err := testbed.Bin("kubectl")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), bin, append([]string{"--kubeconfig", bed.cluster.KubeconfigPath}, args...)...)
	cmd.Dir = bed.root
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func readFile(t *testing.T, ns, pod, file string) string {
	t.Helper()
	return kubectl(t, "exec", "-n", ns, pod, "--", "cat", file)
}

// eventually polls cond every second until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	testbed.Eventually(t, timeout, time.Second, what, cond)
}

// pods lists the pods of ns matching selector.
func pods(t *testing.T, ns, selector string) []corev1.Pod {
	t.Helper()
	list, err := bed.cluster.Client.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	return list.Items
}

func ready(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue && p.DeletionTimestamp == nil
		}
	}
	return false
}

// checkOperators: both operators' Deployments are available.
func checkOperators(t *testing.T) {
	t.Helper()
	for _, d := range [][2]string{{vaultNS, "vault-operator"}, {"etcd-operator-system", "etcd-operator-controller-manager"}} {
		if err := bed.cluster.WaitDeployment(t.Context(), d[0], d[1]); err != nil {
			t.Errorf("operator %s/%s: %v", d[0], d[1], err)
		}
	}
}

// etcdSelector selects the EtcdCluster's pods (the etcd operator's labels).
const etcdSelector = "app=" + etcdName

// etcdHealth asks each etcd pod for its own health (GET /health on the
// client port: plain HTTP, as etcd-operator v0.2.0 runs etcd) and for the
// member list; it returns how many pods answer healthy and the member count
// the first healthy one reports.
func etcdHealth(t *testing.T) (healthy, members int, state string) {
	t.Helper()
	var b strings.Builder
	client := &http.Client{Timeout: 3 * time.Second}
	for _, p := range pods(t, vaultNS, etcdSelector) {
		if p.Status.PodIP == "" {
			fmt.Fprintf(&b, "%s: no IP; ", p.Name)
			continue
		}
		var h struct {
			Health string `json:"health"`
		}
		err := getJSON(client, "http://"+p.Status.PodIP+":2379/health", &h)
		fmt.Fprintf(&b, "%s: health %q %v; ", p.Name, h.Health, err)
		if err != nil || h.Health != "true" {
			continue
		}
		healthy++
		if members == 0 {
			resp, err := client.Post("http://"+p.Status.PodIP+":2379/v3/cluster/member/list", "application/json", strings.NewReader("{}"))
			if err == nil {
				var l struct {
					Members []json.RawMessage `json:"members"`
				}
				_ = json.NewDecoder(resp.Body).Decode(&l)
				_ = resp.Body.Close()
				members = len(l.Members)
			}
		}
	}
	return healthy, members, b.String()
}

// checkEtcd: n members, each healthy by its own account.
func checkEtcd(t *testing.T, n int) {
	t.Helper()
	eventually(t, 3*time.Minute, fmt.Sprintf("%d healthy etcd members", n), func() (bool, string) {
		healthy, members, state := etcdHealth(t)
		return healthy == n && members == n, fmt.Sprintf("%d healthy, %d members: %s", healthy, members, state)
	})
}

// vaultSelector selects the Vault pods (the operator's LabelsForVault).
const vaultSelector = "app.kubernetes.io/name=vault,vault_cr=" + vaultName

// vaultCA is the CA the operator made for Vault's certificate.
func vaultCA(t *testing.T) *x509.CertPool {
	t.Helper()
	s, err := bed.cluster.Client.CoreV1().Secrets(vaultNS).Get(t.Context(), vaultName+"-tls", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(s.Data["ca.crt"]) {
		t.Fatal("no CA in the operator's TLS Secret")
	}
	return pool
}

// vaultStates asks each Vault pod for sys/health at its address on the
// bed's bridge, verifying the operator's certificate by the pod's own name
// (which the certificate carries): "active", "standby", "sealed",
// "uninitialised" or the error.
func vaultStates(t *testing.T) map[string]string {
	t.Helper()
	ca := vaultCA(t)
	states := map[string]string{}
	for _, p := range pods(t, vaultNS, vaultSelector) {
		if p.Status.PodIP == "" || p.DeletionTimestamp != nil {
			states[p.Name] = "not running"
			continue
		}
		client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: ca, ServerName: p.Name, MinVersion: tls.VersionTLS12},
		}}
		resp, err := client.Get("https://" + p.Status.PodIP + ":8200/v1/sys/health")
		if err != nil {
			states[p.Name] = err.Error()
			continue
		}
		_ = resp.Body.Close()
		states[p.Name] = map[int]string{200: "active", 429: "standby", 503: "sealed", 501: "uninitialised"}[resp.StatusCode]
	}
	return states
}

// checkVault: n pods, one active, the others standby: all unsealed.
func checkVault(t *testing.T, n int) {
	t.Helper()
	eventually(t, 3*time.Minute, fmt.Sprintf("Vault: %d pods, 1 active, %d standby", n, n-1), func() (bool, string) {
		states := vaultStates(t)
		count := map[string]int{}
		for _, s := range states {
			count[s]++
		}
		return len(states) == n && count["active"] == 1 && count["standby"] == n-1, fmt.Sprint(states)
	})
}

func getJSON(c *http.Client, url string, v any) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return json.Unmarshal(b, v)
}

// providerNS is the provider's namespace in the README and docs/setup.md.
const providerNS = "vault-csi-provider"

// installProvider installs the driver with its chart and this provider with
// the values file the docs give for the Vault setup made (Vault's address
// and the CA the operator copies into the provider's namespace).
func installProvider(t *testing.T) {
	t.Helper()
	c := bed.cluster
	if err := c.InstallDriver(t.Context(), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	values := filepath.Join(bed.root, "examples", "vault-csi-provider-values.yaml")
	if err := c.HelmProvider(t.Context(), providerNS, "--namespace", providerNS, "--create-namespace", "-f", values); err != nil {
		t.Fatal(err)
	}
}

// appPod applies the example class and pod (examples/) and waits for the
// pod to be Ready; it is deleted after the test.
func appPod(t *testing.T, name string) string {
	t.Helper()
	kubectl(t, "apply", "-f", "examples/secretproviderclass.yaml", "-f", "examples/pod.yaml")
	t.Cleanup(func() {
		_ = bed.cluster.Client.CoreV1().Pods(appNS).Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	eventually(t, 3*time.Minute, "pod "+name+" Ready", func() (bool, string) {
		p, err := bed.cluster.Client.CoreV1().Pods(appNS).Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return ready(p), fmt.Sprintf("%s %v", p.Status.Phase, p.Status.ContainerStatuses)
	})
	return name
}

// stormRole is the role of test/seed/testdata/storm.yaml.
const stormRole = "storm"

// appDeployment starts replicas of the seed's test pod (service account
// testapp, class testapp) as a Deployment; it is deleted after the test.
func appDeployment(t *testing.T, name string, replicas int32) *appsv1.Deployment {
	t.Helper()
	labels := map[string]string{"app": name}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: appNS},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					ServiceAccountName: appSA,
					Containers: []corev1.Container{{
						Name: "app", Image: "docker.io/library/busybox:1.35", Command: []string{"sleep", "infinity"},
						VolumeMounts: []corev1.VolumeMount{{Name: "secrets", MountPath: "/mnt/secrets", ReadOnly: true}},
					}},
					Volumes: []corev1.Volume{{Name: "secrets", VolumeSource: corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{
						Driver: "secrets-store.csi.k8s.io", ReadOnly: ptrTo(true),
						VolumeAttributes: map[string]string{"secretProviderClass": "testapp"},
					}}}},
				},
			},
		},
	}
	d, err := bed.cluster.Client.AppsV1().Deployments(appNS).Create(t.Context(), d, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = bed.cluster.Client.AppsV1().Deployments(appNS).Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	return d
}

func scaleDeployment(t *testing.T, d *appsv1.Deployment, replicas int32) {
	t.Helper()
	s, err := bed.cluster.Client.AppsV1().Deployments(d.Namespace).GetScale(t.Context(), d.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Spec.Replicas = replicas
	if _, err := bed.cluster.Client.AppsV1().Deployments(d.Namespace).UpdateScale(t.Context(), d.Name, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func waitDeployment(t *testing.T, d *appsv1.Deployment) {
	t.Helper()
	if err := bed.cluster.WaitDeployment(t.Context(), d.Namespace, d.Name); err != nil {
		t.Error(err)
	}
}

func ptrTo[T any](v T) *T { return &v }

// ensureStormRole adds, once, the failover load's role to Vault: the seed
// file with one more policy (read secret/data/testapp) and the role storm
// for the 20 storm service accounts, applied with `vault-oke-setup
// configure`, which reaches Vault and takes a token as it does for the seed.
func ensureStormRole(t *testing.T) {
	t.Helper()
	if bed.stormRole {
		return
	}
	file := editedSetup(t, filepath.Join(bed.root, "examples", "setup", "seed.yaml"), func(spec map[string]any) {
		configure := spec["configure"].(map[string]any)
		configure["policies"] = append(configure["policies"].([]any), map[string]any{
			"name": "storm-read", "hcl": "path \"secret/data/testapp\" {\n  capabilities = [\"read\"]\n}\n",
		})
		sas := make([]any, stormSAs)
		for i := range sas {
			sas[i] = fmt.Sprintf("storm-%d", i)
		}
		auth := configure["auth"].([]any)[0].(map[string]any)
		auth["roles"] = append(auth["roles"].([]any), map[string]any{
			"name": stormRole, "serviceAccounts": sas, "namespaces": []any{stormNS},
			"audience": "vault", "policies": []any{"storm-read"}, "ttl": "1h",
		})
	})
	if out, code := setupCmd(t, 5*time.Minute, "configure", "-f", file, "--operator-chart", bed.chart); code != 0 {
		t.Fatalf("configure with the storm role exited %d:\n%s", code, out)
	}
	bed.stormRole = true
}

// editedSetup writes a copy of the setup file at path, with edit applied to
// its spec, to a temporary file and returns that file's path.
func editedSetup(t *testing.T, path string, edit func(spec map[string]any)) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f map[string]any
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	edit(f["spec"].(map[string]any))
	out, err := yaml.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), filepath.Base(path))
	if err := os.WriteFile(file, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}
