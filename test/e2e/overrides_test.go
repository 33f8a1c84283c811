package e2e

import (
	"maps"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/okevault/vault-csi-provider/test/testbed"
)

// podWithAttributes creates a pod whose inline volume sets attrs next to
// secretProviderClass, as a pod spec may, and publishes it: kubelet passes
// a pod's volumeAttributes to the driver as the volume context.
func podWithAttributes(t *testing.T, class string, attrs map[string]string) (*testbed.Volume, error) {
	t.Helper()
	vol := map[string]string{"secretProviderClass": class}
	maps.Copy(vol, attrs)
	readOnly := true
	pod, err := bed.kube.Client.CoreV1().Pods(e2eNS).Create(t.Context(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "attrs-", Namespace: e2eNS},
		Spec: corev1.PodSpec{
			ServiceAccountName: e2eSA,
			NodeName:           testbed.NodeName,
			Containers:         []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}},
			Volumes: []corev1.Volume{{Name: defaultVolume, VolumeSource: corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{
				Driver: testbed.DriverName, ReadOnly: &readOnly, VolumeAttributes: vol,
			}}}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return publishWith(t, pod, class, attrs)
}

func publishWith(t *testing.T, pod *corev1.Pod, class string, attrs map[string]string) (*testbed.Volume, error) {
	t.Helper()
	v, err := bed.driver.Publish(t.Context(), testbed.PublishRequest{Pod: pod, SecretProviderClass: class, ExtraAttributes: attrs})
	if err == nil {
		t.Cleanup(func() { _ = v.Unpublish(t.Context()) })
	}
	return v, err
}

// TestPodVolumeAttributesOverrideTheClass records what the real driver
// does with a pod's volumeAttributes: it lays them over the class's
// parameters (nodeserver.go, "send all the volume attributes sent from
// kubelet to the provider"), so a pod can change any parameter — here the
// Vault address and the role. The provider's -allowed-pod-attributes refuses
// keys a pod sets that are not listed (provider/podattrs_test.go).
func TestPodVolumeAttributesOverrideTheClass(t *testing.T) {
	shared(t)
	applyClass(t, e2eNS, "overridable", map[string]string{
		"roleName": "e2e",
		"objects":  "- {objectName: user, secretPath: secret/data/e2e/app, secretKey: username}",
	})
	v, err := podWithAttributes(t, "overridable", nil)
	if err != nil || files(t, v)["user"] != "e2e-user" {
		t.Fatalf("the class alone: %v", err)
	}

	v, err = podWithAttributes(t, "overridable", map[string]string{"vaultAddress": "http://127.0.0.1:1"})
	wantMountError(t, v, err, "Unavailable", "connection refused")

	v, err = podWithAttributes(t, "overridable", map[string]string{"roleName": "no-such-role"})
	wantMountError(t, v, err, "no-such-role")

	// What a pod cannot change is kubelet's to enforce, and this stand-in
	// does not: kubelet writes the pod's name, namespace, UID, service
	// account and (with tokenRequests) tokens over the pod's attributes
	// (pkg/volume/csi/csi_mounter.go, mergeMap).
}
