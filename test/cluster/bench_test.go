package cluster

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BenchmarkPodStart measures what a user feels: from creating a Deployment
// to all its pods Ready, with and without a secrets volume, for 1 replica
// and for 50 at once, through kubelet, the driver and the provider.
//
//	go test -run '^$' -bench PodStart -benchtime 3x ./test/cluster/
func BenchmarkPodStart(b *testing.B) {
	for _, replicas := range []int32{1, 50} {
		for _, secrets := range []bool{false, true} {
			name := fmt.Sprintf("replicas=%d/secrets=%t", replicas, secrets)
			b.Run(name, func(b *testing.B) {
				c := shared(b)
				s := bed.vault.Scenario()
				applyClass(b, c, s.Namespace, "testapp", seedClass())
				var total time.Duration
				for i := 0; i < b.N; i++ {
					spec := podSpec(s.ServiceAccount, "testapp")
					if !secrets {
						spec.Volumes, spec.Containers[0].VolumeMounts = nil, nil
					}
					d := &appsv1.Deployment{
						ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("bench-%d", benchSeq.Add(1)), Namespace: s.Namespace},
						Spec: appsv1.DeploymentSpec{
							Replicas: &replicas,
							Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"bench": "start"}},
							Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"bench": "start"}}, Spec: spec},
						},
					}
					start := time.Now()
					if _, err := c.Client.AppsV1().Deployments(s.Namespace).Create(b.Context(), d, metav1.CreateOptions{}); err != nil {
						b.Fatal(err)
					}
					b.Cleanup(func() { removeDeployment(b, d) })
					if err := c.WaitDeployment(b.Context(), s.Namespace, d.Name); err != nil {
						b.Fatal(err)
					}
					total += time.Since(start)
					b.StopTimer()
					removeDeployment(b, d)
					b.StartTimer()
				}
				b.ReportMetric(total.Seconds()/float64(b.N), "s/all-ready")
			})
		}
	}
}

// benchSeq names each run's Deployment: go test runs a benchmark function
// more than once (b.N = 1, then the -benchtime count) and every
// sub-benchmark starts at i = 0, so names from i alone met a Deployment of
// the same name still being deleted ("object is being deleted: ...
// already exists").
var benchSeq atomic.Int64

// removeDeployment deletes a Deployment and waits until it and its pods are
// gone: with foreground deletion the Deployment outlives its pods until the
// garbage collector removes its finalizer, and the next run's pods must not
// share the node with these.
func removeDeployment(b *testing.B, d *appsv1.Deployment) {
	c := bed.cluster
	ctx := context.Background()
	fg := metav1.DeletePropagationForeground
	if err := c.Client.AppsV1().Deployments(d.Namespace).Delete(ctx, d.Name, metav1.DeleteOptions{PropagationPolicy: &fg}); err != nil && !apierrors.IsNotFound(err) {
		b.Fatal(err)
	}
	// A plain poll, not testbed.Eventually: this also runs from Cleanup, when
	// the benchmark's context is already cancelled.
	state := ""
	for deadline := time.Now().Add(3 * time.Minute); time.Now().Before(deadline); time.Sleep(time.Second) {
		if _, err := c.Client.AppsV1().Deployments(d.Namespace).Get(ctx, d.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			state = fmt.Sprintf("Deployment still there (%v)", err)
			continue
		}
		pods, err := c.Client.CoreV1().Pods(d.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "bench=start"})
		switch {
		case err != nil:
			state = err.Error()
		case len(pods.Items) == 0:
			return
		default:
			state = fmt.Sprintf("%d pods left", len(pods.Items))
		}
	}
	b.Fatalf("%s not gone within 3 minutes: %s", d.Name, state)
}
