package podwatch

import (
	"context"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/okevault/vault-csi-provider/test/testbed"
)

// TestWatchSeesOnlyThisNode runs against a real kube-apiserver: of two
// deleted pods, only the one on the watched node is reported.
func TestWatchSeesOnlyThisNode(t *testing.T) {
	kube := testbed.StartKube(t)
	ctx := t.Context()
	const ns = "podwatch"
	if err := kube.CreateServiceAccount(ctx, ns, "app"); err != nil {
		t.Fatal(err)
	}
	pods := kube.Client.CoreV1().Pods(ns)
	create := func(name, node string) *corev1.Pod {
		t.Helper()
		p, err := pods.Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.PodSpec{NodeName: node, ServiceAccountName: "app",
				Containers: []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	mine, other := create("mine", "node-a"), create("other", "node-b")

	var mu sync.Mutex
	var gone []string
	stop, err := Start(ctx, kube.Client, "node-a", func(_ context.Context, uid string) {
		mu.Lock()
		gone = append(gone, uid)
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	zero := int64(0)
	for _, p := range []*corev1.Pod{other, mine} { // mine last: once it is seen, other had its chance
		if err := pods.Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		got := append([]string(nil), gone...)
		mu.Unlock()
		if len(got) > 0 {
			if len(got) != 1 || got[0] != string(mine.UID) {
				t.Errorf("gone = %v, want only the pod on node-a (%s)", got, mine.UID)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the deleted pod on node-a was not reported within 30s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
