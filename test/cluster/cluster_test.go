package cluster

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/okevault/vault-csi-provider/test/testbed"
)

// TestSeedPod is the user's scenario through kubelet: the pod testapp, as
// service account testapp in default, sees secret/testapp as files.
func TestSeedPod(t *testing.T) {
	c := shared(t)
	s := bed.vault.Scenario()
	pod := seedPod(t, c, "testapp")

	for key, want := range s.SecretData {
		if got := readFile(t, c, s.Namespace, pod.Name, key); got != want {
			t.Errorf("%s in the pod = %q, want %q", key, got, want)
		}
	}
	listing := kubectl(t, c, "exec", "-n", s.Namespace, pod.Name, "--", "ls", mountPath)
	if fields := strings.Fields(listing); len(fields) != 2 {
		t.Errorf("files in %s: %q, want username and password only", mountPath, listing)
	}
}

// seedPod starts a pod of the scenario (service account testapp, the seed
// class) and waits until it is Ready; it is deleted after the test.
func seedPod(t *testing.T, c *testbed.Cluster, name string) *corev1.Pod {
	t.Helper()
	s := bed.vault.Scenario()
	applyClass(t, c, s.Namespace, "testapp", seedClass())
	pod := createPod(t, c, s.Namespace, name, podSpec(s.ServiceAccount, "testapp"))
	t.Cleanup(func() { deleteAndWait(t, c, s.Namespace, pod.Name) })
	return waitPodReady(t, c, s.Namespace, pod.Name, 2*time.Minute)
}

// TestDeploymentMounts: 20 replicas of one service account all start with
// their secrets.
func TestDeploymentMounts(t *testing.T) {
	c := shared(t)
	s := bed.vault.Scenario()
	ns := s.Namespace
	applyClass(t, c, ns, "testapp-fleet", seedClass())
	d := deployment(t, c, ns, "fleet", s.ServiceAccount, "testapp-fleet", 20)
	t.Cleanup(func() {
		_ = c.Client.AppsV1().Deployments(ns).Delete(context.Background(), d.Name, metav1.DeleteOptions{})
	})
	if err := c.WaitDeployment(t.Context(), ns, d.Name); err != nil {
		t.Fatal(err)
	}
	pods, err := c.Client.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{LabelSelector: "app=fleet"})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != 20 {
		t.Fatalf("%d pods, want 20", len(pods.Items))
	}
	last := pods.Items[len(pods.Items)-1]
	if got := readFile(t, c, ns, last.Name, "password"); got != s.SecretData["password"] {
		t.Errorf("password in %s = %q", last.Name, got)
	}
}

// TestSyncSecretAndEnv: the class's secretObjects become a Kubernetes
// Secret, and the pod gets an environment variable from it.
func TestSyncSecretAndEnv(t *testing.T) {
	c := shared(t)
	s := bed.vault.Scenario()
	ns := namespace(t, c)
	// The scenario's role binds default/testapp; this namespace gets its own.
	if _, err := bed.vault.Client.Logical().WriteWithContext(t.Context(), "auth/kubernetes/role/"+ns, map[string]any{
		"bound_service_account_names": []string{"app"}, "bound_service_account_namespaces": []string{ns},
		"audience": "vault", "token_policies": []string{s.Policy}, "token_ttl": "1h",
	}); err != nil {
		t.Fatal(err)
	}
	params := seedClass()
	params["roleName"] = ns
	applyClass(t, c, ns, "synced", params, map[string]any{
		"secretName": "db-credentials",
		"type":       "Opaque",
		"data":       []map[string]string{{"objectName": "password", "key": "password"}},
	})
	spec := podSpec("app", "synced")
	spec.Containers[0].Env = []corev1.EnvVar{{Name: "DB_PASSWORD", ValueFrom: &corev1.EnvVarSource{
		SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "db-credentials"}, Key: "password"},
	}}}
	pod := createPod(t, c, ns, "synced", spec)
	waitPodReady(t, c, ns, pod.Name, 2*time.Minute)

	sec, err := c.Client.CoreV1().Secrets(ns).Get(t.Context(), "db-credentials", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("synced Secret: %v", err)
	}
	if got := string(sec.Data["password"]); got != s.SecretData["password"] {
		t.Errorf("synced Secret's password = %q, want the Vault value", got)
	}
	env := kubectl(t, c, "exec", "-n", ns, pod.Name, "--", "env")
	if !strings.Contains(env, "DB_PASSWORD="+s.SecretData["password"]+"\n") {
		t.Errorf("the pod's environment lacks DB_PASSWORD from the synced Secret")
	}
}

// TestRotation: a new version in Vault reaches the running pod's file
// through the driver's rotation.
func TestRotation(t *testing.T) {
	c := shared(t)
	s := bed.vault.Scenario()
	kv := bed.vault.Client.KVv2(s.KVMount)
	path := s.SecretPath + "/rotating"
	if _, err := kv.Put(t.Context(), path, map[string]any{"token": "v1"}); err != nil {
		t.Fatal(err)
	}
	applyClass(t, c, s.Namespace, "rotating", map[string]string{
		"roleName": s.Role,
		"objects":  "- objectName: token\n  secretPath: secret/data/" + path + "\n  secretKey: token\n",
	})
	pod := createPod(t, c, s.Namespace, "rotating", podSpec(s.ServiceAccount, "rotating"))
	t.Cleanup(func() { deleteAndWait(t, c, s.Namespace, pod.Name) })
	waitPodReady(t, c, s.Namespace, pod.Name, 2*time.Minute)
	if got := readFile(t, c, s.Namespace, pod.Name, "token"); got != "v1" {
		t.Fatalf("token = %q, want v1", got)
	}
	if _, err := kv.Put(t.Context(), path, map[string]any{"token": "v2"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*rotationPoll, "the pod's file rotated to v2", func() (bool, string) {
		got := readFile(t, c, s.Namespace, pod.Name, "token")
		return got == "v2", got
	})
}

// TestWrongServiceAccount: a pod whose service account the role does not
// bind never starts; its FailedMount event says PermissionDenied and holds
// no token and no secret value.
func TestWrongServiceAccount(t *testing.T) {
	c := shared(t)
	s := bed.vault.Scenario()
	applyClass(t, c, s.Namespace, "testapp-intruder", seedClass())
	pod := createPod(t, c, s.Namespace, "intruder", podSpec("intruder", "testapp-intruder"))
	t.Cleanup(func() { deleteAndWait(t, c, s.Namespace, pod.Name) })

	var msg string
	eventually(t, 2*time.Minute, "a FailedMount event for the intruder", func() (bool, string) {
		for _, e := range events(t, c, s.Namespace, pod.Name) {
			if e.Reason == "FailedMount" {
				msg = e.Message
				return true, msg
			}
		}
		return false, "no event"
	})
	if !strings.Contains(msg, "PermissionDenied") {
		t.Errorf("FailedMount message does not carry PermissionDenied: %s", msg)
	}
	for _, secret := range []string{s.SecretData["password"], "eyJ", "hvs."} {
		if strings.Contains(msg, secret) {
			t.Errorf("FailedMount message leaks %q: %s", secret[:3], msg)
		}
	}
	p, err := c.Client.CoreV1().Pods(s.Namespace).Get(t.Context(), pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Status.Phase != corev1.PodPending || podReady(p) {
		t.Errorf("intruder pod is %s (ready %t), want Pending (ContainerCreating)", p.Status.Phase, podReady(p))
	}
}

// TestProviderPodAsInstalled: the chart's provider pod is Ready with no
// restarts (its probes pass), it created the HMAC key Secret itself through
// the chart's RBAC, and its metrics answer through the chart's Service.
func TestProviderPodAsInstalled(t *testing.T) {
	c := shared(t)
	// A mount first, so the key Secret exists and metrics have counts.
	seedPod(t, c, "testapp-probes")

	pods, err := c.Client.CoreV1().Pods(testbed.ProviderNamespace).List(t.Context(), metav1.ListOptions{
		LabelSelector: "app.kubernetes.io/instance=" + testbed.ProviderRelease,
	})
	if err != nil || len(pods.Items) != 1 {
		t.Fatalf("provider pods: %v, %v", pods, err)
	}
	p := pods.Items[0]
	if !podReady(&p) {
		t.Errorf("provider pod not Ready: %s", podState(t, c, &p))
	}
	for _, cs := range p.Status.ContainerStatuses {
		if cs.RestartCount != 0 {
			t.Errorf("container %s restarted %d times (liveness probe?)", cs.Name, cs.RestartCount)
		}
	}

	key, err := c.Client.CoreV1().Secrets(testbed.ProviderNamespace).Get(t.Context(), "vault-csi-provider-hmac-key", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("HMAC key Secret: %v", err)
	}
	var managers []string
	for _, mf := range key.ManagedFields {
		managers = append(managers, mf.Manager)
	}
	if len(managers) == 0 || strings.Contains(strings.Join(managers, ","), "testbed") {
		t.Errorf("HMAC key Secret managed by %v, want the provider alone", managers)
	}

	svc, err := c.Client.CoreV1().Services(testbed.ProviderNamespace).List(t.Context(), metav1.ListOptions{
		LabelSelector: "app.kubernetes.io/instance=" + testbed.ProviderRelease,
	})
	if err != nil || len(svc.Items) == 0 {
		t.Fatalf("metrics Service: %v, %v", svc, err)
	}
	body := scrape(t, c, svc.Items[0])
	if !strings.Contains(body, "vault_csi_provider_mounts_total{") {
		t.Errorf("metrics through the Service lack mount metrics:\n%.2000s", body)
	}
}

// scrape GETs /metrics through the Service: its endpoints, from the host.
func scrape(t *testing.T, c *testbed.Cluster, svc corev1.Service) string {
	t.Helper()
	var port int32
	for _, p := range svc.Spec.Ports {
		port = p.Port
	}
	eps, err := c.Client.CoreV1().Endpoints(svc.Namespace).Get(t.Context(), svc.Name, metav1.GetOptions{})
	if err != nil || len(eps.Subsets) == 0 || len(eps.Subsets[0].Addresses) == 0 {
		t.Fatalf("metrics Service %s has no endpoints: %v", svc.Name, err)
	}
	url := fmt.Sprintf("http://%s:%d/metrics", eps.Subsets[0].Addresses[0].IP, port)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: %s %v", url, resp.Status, err)
	}
	return string(b)
}
