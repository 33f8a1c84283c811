package provider_test

import (
	"testing"

	"google.golang.org/grpc/codes"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/okevault/vault-csi-provider/provider"
	"github.com/okevault/vault-csi-provider/test/testbed"
)

// TestAllowedPodAttributes: with an allowlist, the provider reads the pod
// from the real apiserver and refuses a mount whose volume sets a key that
// is not allowed; a volume that sets only allowed keys mounts. (The driver
// merging volumeAttributes over the class is shown in test/e2e.)
func TestAllowedPodAttributes(t *testing.T) {
	kube, v := realBed(t)
	readOnly := true
	csiVolume := func(name string, attrs map[string]string) corev1.Volume {
		attrs["secretProviderClass"] = "spc"
		return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{Driver: "secrets-store.csi.k8s.io", ReadOnly: &readOnly, VolumeAttributes: attrs}}}
	}
	created, err := kube.Client.CoreV1().Pods(readerNS).Create(t.Context(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "attrs", Namespace: readerNS},
		Spec: corev1.PodSpec{
			ServiceAccountName: readerSA,
			NodeName:           testbed.NodeName,
			Containers:         []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}},
			Volumes: []corev1.Volume{
				csiVolume("plain", map[string]string{"objects": "- {objectName: a, secretPath: kv1/attrs, secretKey: v}"}),
				csiVolume("redirected", map[string]string{"vaultAddress": "http://127.0.0.1:1", "roleName": "other"}),
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := kube.Token(t.Context(), readerNS, readerSA, "vault", created, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Client.Logical().WriteWithContext(t.Context(), "kv1/attrs", map[string]any{"v": "attrs-value"}); err != nil {
		t.Fatal(err)
	}
	s := serve(t, provider.Options{PodAttributes: &provider.PodAttributes{Pods: kube.Client, Allowed: []string{"objects"}}})
	p := pod{namespace: readerNS, name: created.Name, uid: string(created.UID), serviceAccount: readerSA}
	params := map[string]string{"roleName": readerRole, "vaultAddress": v.Addr, "objects": "- {objectName: a, secretPath: kv1/attrs, secretKey: v}"}
	mount := func(volume string, p pod) (map[string]string, error) {
		req := request(t, p, params, "vault", tok)
		req.TargetPath = "/var/lib/kubelet/pods/" + p.uid + "/volumes/kubernetes.io~csi/" + volume + "/mount"
		resp, err := s.client.Mount(t.Context(), req)
		return files(resp), err
	}

	got, err := mount("plain", p)
	if err != nil || got["a"] != "attrs-value" {
		t.Fatalf("a volume setting only allowed keys: %v %v", got, err)
	}
	_, err = mount("redirected", p)
	wantCode(t, nil, err, codes.InvalidArgument, `"roleName"`, `volume "redirected"`, "secretProviderClass, objects")

	stale := p
	stale.uid = "not-the-pod"
	_, err = mount("plain", stale)
	wantCode(t, nil, err, codes.Unavailable, "replaced")
	gone := p
	gone.name = "no-such-pod"
	_, err = mount("plain", gone)
	wantCode(t, nil, err, codes.Unavailable, "no-such-pod")
}
