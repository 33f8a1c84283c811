package migration

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BenchmarkPodStart is test/cluster's BenchmarkPodStart with the peer as the
// provider: from creating a Deployment of pods that mount the scenario's
// class to all of them Ready, 1 replica and 50 at once, on the same bed
// (the driver with the same values, the same Vault and class, the same pod
// spec), the peer v1.7.4 installed with vault-helm as TestMigration
// installs it. The pods without a secrets volume do not reach a provider;
// test/cluster measures those. make bench-pods runs both.
//
//	go test -run '^$' -bench PodStart -benchtime 3x ./test/migration/
func BenchmarkPodStart(b *testing.B) {
	for _, replicas := range []int32{1, 50} {
		b.Run(fmt.Sprintf("provider=peer/replicas=%d/secrets=true", replicas), func(b *testing.B) {
			c := peerBed(b)
			var total time.Duration
			for i := 0; i < b.N; i++ {
				d := deployment(fmt.Sprintf("bench-%d", benchSeq.Add(1)), replicas)
				start := time.Now()
				if _, err := c.Client.AppsV1().Deployments(ns).Create(b.Context(), d, metav1.CreateOptions{}); err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { removeDeployment(b, c, d.Name) })
				if err := c.WaitDeployment(b.Context(), ns, d.Name); err != nil {
					b.Fatal(err)
				}
				total += time.Since(start)
				b.StopTimer()
				removeDeployment(b, c, d.Name)
				b.StartTimer()
			}
			b.ReportMetric(total.Seconds()/float64(b.N), "s/all-ready")
		})
	}
}

// benchSeq names each run's Deployment uniquely (go test runs a benchmark
// more than once).
var benchSeq atomic.Int64
