package podwatch

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// TestSlowOrPanickingHandlerDoesNotBlockTheWatch: the revocation of one
// deleted pod hangs, another's panics; the pods deleted after them are
// still reported, and the watch goes on. It runs on client-go's fake
// clientset, whose watch the test can tell has opened (TestWatchSeesOnlyThisNode
// covers the real apiserver's field selector).
func TestSlowOrPanickingHandlerDoesNotBlockTheWatch(t *testing.T) {
	var pods []runtime.Object
	for i := range 4 {
		pods = append(pods, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprint("p", i), Namespace: "app", UID: types.UID(fmt.Sprint("uid-", i))},
			Spec:       corev1.PodSpec{NodeName: "node-a"},
		})
	}
	client := fake.NewClientset(pods...)
	watching := make(chan struct{})
	var once sync.Once
	client.PrependWatchReactor("pods", func(k8stesting.Action) (bool, watch.Interface, error) {
		once.Do(func() { close(watching) })
		return false, nil, nil // the tracker's own watch
	})

	hang := make(chan struct{})
	var mu sync.Mutex
	seen := map[string]bool{}
	stop, err := Start(t.Context(), client, "node-a", func(_ context.Context, uid string) {
		mu.Lock()
		seen[uid] = true
		mu.Unlock()
		switch uid {
		case "uid-0":
			<-hang // a revocation against a Vault that never answers
		case "uid-1":
			panic("injected panic handling " + uid)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	defer close(hang) // before stop, which waits for the handlers
	select {
	case <-watching:
	case <-time.After(30 * time.Second):
		t.Fatal("the watch did not open")
	}
	for i := range 4 {
		if err := client.CoreV1().Pods("app").Delete(t.Context(), fmt.Sprint("p", i), metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n := len(seen)
		mu.Unlock()
		if n == 4 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of 4 deleted pods reported while one handler hangs and one panicked: %v", n, seen)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
