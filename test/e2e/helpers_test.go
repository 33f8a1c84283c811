package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/okevault/vault-csi-provider/test/testbed"
)

var spcpsResource = schema.GroupVersionResource{Group: "secrets-store.csi.x-k8s.io", Version: "v1", Resource: "secretproviderclasspodstatuses"}

// applyClass applies a SecretProviderClass for provider vault.
func applyClass(t *testing.T, ns, name string, params map[string]string, secretObjects ...map[string]any) {
	t.Helper()
	spec := map[string]any{"provider": "vault", "parameters": params}
	if len(secretObjects) > 0 {
		spec["secretObjects"] = secretObjects
	}
	obj := map[string]any{
		"apiVersion": "secrets-store.csi.x-k8s.io/v1",
		"kind":       "SecretProviderClass",
		"metadata":   map[string]any{"name": name, "namespace": ns},
		"spec":       spec,
	}
	b, err := yaml.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	if err := bed.kube.CreateNamespace(t.Context(), ns); err != nil {
		t.Fatal(err)
	}
	if err := bed.kube.Apply(t.Context(), b); err != nil {
		t.Fatal(err)
	}
}

// defaultVolume is the volume name publish uses when none is given.
const defaultVolume = "secrets-store-inline"

// newPod creates a pod object on the driver's node under a unique name, with
// a CSI volume per entry of volumes (volume name → SecretProviderClass), as
// the pod spec a user writes would have. The driver's rotation and sync
// controllers look the class up in the pod's volumes.
func newPod(t *testing.T, ns, sa string, volumes map[string]string) *corev1.Pod {
	t.Helper()
	name := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(name) > 50 {
		name = name[len(name)-50:]
	}
	name = strings.Trim(name, "-") + fmt.Sprintf("-%d", time.Now().UnixNano()%100000)
	if err := bed.kube.CreateServiceAccount(t.Context(), ns, sa); err != nil {
		t.Fatal(err)
	}
	readOnly := true
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PodSpec{
			ServiceAccountName: sa,
			NodeName:           testbed.NodeName,
			Containers:         []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}},
		},
	}
	for vol, class := range volumes {
		pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: vol, VolumeSource: corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{
			Driver: testbed.DriverName, ReadOnly: &readOnly, VolumeAttributes: map[string]string{"secretProviderClass": class},
		}}})
		pod.Spec.Containers[0].VolumeMounts = append(pod.Spec.Containers[0].VolumeMounts, corev1.VolumeMount{Name: vol, MountPath: "/mnt/" + vol, ReadOnly: true})
	}
	created, err := bed.kube.Client.CoreV1().Pods(ns).Create(t.Context(), pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return created
}

// podFor is newPod with one volume for class, under the default volume name.
func podFor(t *testing.T, ns, sa, class string) *corev1.Pod {
	t.Helper()
	return newPod(t, ns, sa, map[string]string{defaultVolume: class})
}

// publish mounts the pod's volume for class through the driver, as kubelet
// would, and unpublishes it at cleanup.
func publish(t *testing.T, pod *corev1.Pod, class, volume string) (*testbed.Volume, error) {
	t.Helper()
	v, err := bed.driver.Publish(t.Context(), testbed.PublishRequest{Pod: pod, SecretProviderClass: class, VolumeName: volume})
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() {
		if err := v.Unpublish(context.Background()); err != nil {
			t.Errorf("unpublish: %v", err)
		}
	})
	return v, nil
}

func mustPublish(t *testing.T, pod *corev1.Pod, class string) *testbed.Volume {
	t.Helper()
	v, err := publish(t, pod, class, "")
	if err != nil {
		t.Fatalf("publish %s for %s: %v", class, pod.Name, err)
	}
	return v
}

func files(t *testing.T, v *testbed.Volume) map[string]string {
	t.Helper()
	fs, err := v.Files()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for k, b := range fs {
		out[k] = string(b)
	}
	return out
}

// objectVersions reads the driver's SecretProviderClassPodStatus for the
// pod's volume: object id → version.
func objectVersions(t *testing.T, pod *corev1.Pod, class string) map[string]string {
	t.Helper()
	dyn, err := dynamic.NewForConfig(bed.kube.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	name := pod.Name + "-" + pod.Namespace + "-" + class
	u, err := dyn.Resource(spcpsResource).Namespace(pod.Namespace).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("SecretProviderClassPodStatus %s: %v", name, err)
	}
	objs, _, _ := unstructured.NestedSlice(u.Object, "status", "objects")
	out := map[string]string{}
	for _, o := range objs {
		m, _ := o.(map[string]any)
		id, _ := m["id"].(string)
		ver, _ := m["version"].(string)
		out[id] = ver
	}
	return out
}

// eventually polls cond every 200ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	testbed.Eventually(t, timeout, 200*time.Millisecond, what, cond)
}

// wantMountError asserts that publishing failed with the gRPC code name and
// words in the message, and that no file reached the pod.
func wantMountError(t *testing.T, v *testbed.Volume, err error, code string, words ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("mount succeeded with files %v; want %s", files(t, v), code)
	}
	msg := err.Error()
	if !strings.Contains(msg, code) {
		t.Errorf("error %q does not carry %s", msg, code)
	}
	for _, w := range words {
		if !strings.Contains(msg, w) {
			t.Errorf("error %q does not mention %q", msg, w)
		}
	}
}
