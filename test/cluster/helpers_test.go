package cluster

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"sigs.k8s.io/yaml"

	"github.com/okevault/vault-csi-provider/test/testbed"
)

// appImage is the bed's workload image: busybox (sh, cat, ls, env, sleep).
const appImage = "docker.io/library/busybox:1.35"

// mountPath is where the pods see their secrets.
const mountPath = "/mnt/secrets-store"

// namespace creates a namespace of the test's own and deletes it after.
func namespace(t *testing.T, c *testbed.Cluster) string {
	t.Helper()
	name := strings.ToLower(strings.TrimPrefix(t.Name(), "Test"))
	name = strings.NewReplacer("/", "-", "_", "-").Replace(name)
	if len(name) > 40 {
		name = name[:40]
	}
	if err := c.CreateNamespace(t.Context(), name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		grace := int64(0)
		_ = c.Client.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: &grace})
	})
	return name
}

// applyClass applies a SecretProviderClass for provider vault.
func applyClass(t testing.TB, c *testbed.Cluster, ns, name string, params map[string]string, secretObjects ...map[string]any) {
	t.Helper()
	spec := map[string]any{"provider": "vault", "parameters": params}
	if len(secretObjects) > 0 {
		spec["secretObjects"] = secretObjects
	}
	b, err := yaml.Marshal(map[string]any{
		"apiVersion": "secrets-store.csi.x-k8s.io/v1",
		"kind":       "SecretProviderClass",
		"metadata":   map[string]any{"name": name, "namespace": ns},
		"spec":       spec,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Apply(t.Context(), b); err != nil {
		t.Fatal(err)
	}
}

// seedClass is the scenario's class: username and password of secret/testapp.
func seedClass() map[string]string {
	return map[string]string{
		"roleName": "testapp",
		"objects": `
- objectName: username
  secretPath: secret/data/testapp
  secretKey: username
- objectName: password
  secretPath: secret/data/testapp
  secretKey: password
`,
	}
}

// podSpec is what a user writes: the app container with the class's CSI
// volume at mountPath, the bed's image, never pulled.
func podSpec(sa, class string) corev1.PodSpec {
	readOnly := true
	grace := int64(1)
	return corev1.PodSpec{
		ServiceAccountName:            sa,
		TerminationGracePeriodSeconds: &grace,
		Containers: []corev1.Container{{
			Name:            "app",
			Image:           appImage,
			ImagePullPolicy: corev1.PullNever,
			VolumeMounts:    []corev1.VolumeMount{{Name: "secrets", MountPath: mountPath, ReadOnly: true}},
		}},
		Volumes: []corev1.Volume{{
			Name: "secrets",
			VolumeSource: corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{
				Driver:           testbed.DriverName,
				ReadOnly:         &readOnly,
				VolumeAttributes: map[string]string{"secretProviderClass": class},
			}},
		}},
	}
}

// createPod creates a pod (and its service account) from spec.
func createPod(t *testing.T, c *testbed.Cluster, ns, name string, spec corev1.PodSpec) *corev1.Pod {
	t.Helper()
	if err := c.CreateServiceAccount(t.Context(), ns, spec.ServiceAccountName); err != nil {
		t.Fatal(err)
	}
	pod, err := c.Client.CoreV1().Pods(ns).Create(t.Context(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": name}},
		Spec:       spec,
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return pod
}

// waitPodReady waits until kubelet reports the pod Ready.
func waitPodReady(t *testing.T, c *testbed.Cluster, ns, name string, timeout time.Duration) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	eventually(t, timeout, "pod "+ns+"/"+name+" Ready", func() (bool, string) {
		p, err := c.Client.CoreV1().Pods(ns).Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		pod = p
		return podReady(p), podState(t, c, p)
	})
	return pod
}

func podReady(p *corev1.Pod) bool {
	for _, cond := range p.Status.Conditions {
		if cond.Type == corev1.PodReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

// podState describes a pod for failure messages: phase, waiting reasons and
// its events.
func podState(t *testing.T, c *testbed.Cluster, p *corev1.Pod) string {
	var b strings.Builder
	fmt.Fprintf(&b, "phase %s", p.Status.Phase)
	for _, cs := range p.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil {
			fmt.Fprintf(&b, ", %s waiting: %s", cs.Name, w.Reason)
		}
	}
	for _, e := range events(t, c, p.Namespace, p.Name) {
		fmt.Fprintf(&b, "; %s %s: %s", e.Type, e.Reason, e.Message)
	}
	return b.String()
}

// events lists the events of the object name in ns.
func events(t *testing.T, c *testbed.Cluster, ns, name string) []corev1.Event {
	t.Helper()
	list, err := c.Client.CoreV1().Events(ns).List(t.Context(), metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("involvedObject.name", name).String(),
	})
	if err != nil {
		return nil
	}
	return list.Items
}

// failedMounts lists the FailedMount events in ns.
func failedMounts(t *testing.T, c *testbed.Cluster, ns string) []corev1.Event {
	t.Helper()
	list, err := c.Client.CoreV1().Events(ns).List(t.Context(), metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("reason", "FailedMount").String(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return list.Items
}

// kubectl runs the bed's kubectl against the cluster.
func kubectl(t *testing.T, c *testbed.Cluster, args ...string) string {
	t.Helper()
	bin, err := testbed.Bin("kubectl")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), bin, append([]string{"--kubeconfig", c.KubeconfigPath}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// readFile reads a file in the pod's app container through kubectl exec,
// the way a user looks.
func readFile(t *testing.T, c *testbed.Cluster, ns, pod, file string) string {
	t.Helper()
	return kubectl(t, c, "exec", "-n", ns, pod, "-c", "app", "--", "cat", mountPath+"/"+file)
}

// deployment creates a Deployment of replicas app pods mounting class.
func deployment(t *testing.T, c *testbed.Cluster, ns, name, sa, class string, replicas int32) *appsv1.Deployment {
	t.Helper()
	if err := c.CreateServiceAccount(t.Context(), ns, sa); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": name}
	d, err := c.Client.AppsV1().Deployments(ns).Create(t.Context(), &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: podSpec(sa, class)},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// deleteAndWait deletes a pod and waits until it is gone (its volume
// unmounted by kubelet). It runs in cleanups, after t.Context has ended.
func deleteAndWait(t *testing.T, c *testbed.Cluster, ns, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := c.Client.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		t.Error(err)
		return
	}
	for {
		_, err := c.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return
		}
		select {
		case <-ctx.Done():
			t.Errorf("pod %s/%s not gone within 2 minutes (last: %v)", ns, name, err)
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// eventually polls cond every 500ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	testbed.Eventually(t, timeout, 500*time.Millisecond, what, cond)
}
