// Package podwatch tells the provider when a pod on its node is gone, so
// -revoke-on-pod-delete can revoke the pod's dynamic secrets at once instead
// of leaving them to their TTL. It watches only this node's pods (a field
// selector on spec.nodeName), as kubelet does, so its memory and the
// apiserver's work do not grow with the cluster.
package podwatch

import (
	"context"
	"errors"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Start calls gone with the UID of each pod of node that is deleted, until
// ctx ends or stop is called; stop also waits for the watch's goroutines. It
// returns once the node's pods are listed, so deletions from then on are
// seen, or with ctx's error if it ends first. It needs list and watch on
// pods.
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
	stop = func() {
		cancel()
		factory.Shutdown()
	}
	inf := factory.Core().V1().Pods().Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		DeleteFunc: func(obj any) {
			if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj // deleted while the watch was down
			}
			if pod, ok := obj.(*corev1.Pod); ok {
				gone(ctx, string(pod.UID))
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
