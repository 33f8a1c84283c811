// Package podwatch tells the provider when a pod on its node is gone, so
// -revoke-on-pod-delete can revoke the pod's dynamic secrets at once instead
// of leaving them to their TTL. It watches only this node's pods (a field
// selector on spec.nodeName), as kubelet does, so its memory and the
// apiserver's work do not grow with the cluster.
package podwatch

import (
	"context"
	"errors"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/okevault/vault-csi-provider/internal/panics"
)

// workers is how many deleted pods are handled at once: each revokes the
// pod's leases, against a Vault that may be slow.
const workers = 4

// Start calls gone with the UID of each pod of node that is deleted, until
// ctx ends or stop is called; stop also waits for the watch's goroutines and
// gone's calls. It returns once the node's pods are listed, so deletions
// from then on are seen, or with ctx's error if it ends first. It needs
// list and watch on pods.
//
// The informer calls its handler for one event after another, so the
// handler only queues the UID: gone runs in a few workers of its own, and a
// slow revocation delays neither the watch nor other pods' handling. The
// queue holds each UID once (client-go's workqueue), so it is bounded by the
// node's pods deleted and not yet handled. A panic in gone fails that pod's
// handling only.
func Start(ctx context.Context, client kubernetes.Interface, node string, gone func(ctx context.Context, uid string)) (stop func(), _ error) {
	if node == "" {
		return nil, errors.New("podwatch: no node name")
	}
	ctx, cancel := context.WithCancel(ctx)
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0,
		informers.WithNamespace(metav1.NamespaceAll),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", node).String()
		}))
	queue := workqueue.NewTyped[string]()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				uid, shutdown := queue.Get()
				if shutdown {
					return
				}
				handle(ctx, queue, uid, gone)
			}
		})
	}
	stop = func() {
		cancel()
		factory.Shutdown()
		queue.ShutDown()
		wg.Wait()
	}
	inf := factory.Core().V1().Pods().Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		DeleteFunc: func(obj any) {
			if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj // deleted while the watch was down
			}
			if pod, ok := obj.(*corev1.Pod); ok {
				queue.Add(string(pod.UID))
			}
		},
	}); err != nil {
		stop()
		return nil, err
	}
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		stop()
		return nil, ctx.Err()
	}
	return stop, nil
}

// handle calls gone for uid; a panic there fails this pod's handling only.
func handle(ctx context.Context, queue workqueue.TypedInterface[string], uid string, gone func(ctx context.Context, uid string)) {
	defer queue.Done(uid)
	defer panics.Recover(ctx, nil, "handling a deleted pod", nil)
	gone(ctx, uid)
}
