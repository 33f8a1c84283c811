package hostile

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"
)

// dripBytes is what the slow-drip server sends of each answer before it
// stops sending: under 1 MiB, so each mount counts as a small one, which
// may use the pool's reserve.
const dripBytes = 600 << 10

// slowDripServer is what a SecretProviderClass may point vaultAddress at: a
// server of its author's that logs anyone in, then answers each read with
// the start of a body, a chunk at a time, and never finishes it, so every
// mount reading it holds those bytes until its deadline. stalled counts
// the answers that reached dripBytes.
func slowDripServer(stalled *atomic.Int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if strings.HasSuffix(r.URL.Path, "/login") {
			_, _ = w.Write([]byte(`{"auth":{"client_token":"hvs.drip","lease_duration":3600}}`))
			return
		}
		_, _ = w.Write([]byte(`{"data":{"k":"`))
		chunk := []byte(strings.Repeat("x", 32<<10))
		for sent := 0; sent < dripBytes; sent += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			time.Sleep(20 * time.Millisecond)
		}
		stalled.Add(1)
		<-r.Context().Done() // never finishes: held until the mount gives up
	})
}

// TestSlowDripNamespaceDoesNotStarveOthers runs the provider binary with
// its defaults (but a 20 s mount deadline, so the test is short) and has 48
// pods of one namespace mount from a slow-drip server at once, each mount
// holding 600 KiB until its deadline: together far more than
// -max-total-bytes. Once they hold what they can (six answers stalled, at
// least a namespace's share of 8 MiB), innocent pods of another namespace
// go on mounting a small secret (run says what it asserts of every class):
// every one of those mounts succeeds, because one namespace's mounts hold
// at most a quarter of the pool. The slow-drip mounts fail with
// ResourceExhausted (over their namespace's share) or DeadlineExceeded.
func TestSlowDripNamespaceDoesNotStarveOthers(t *testing.T) {
	var stalled atomic.Int64
	o := run(t, attack{
		args:   []string{"-mount-timeout=20s"},
		server: slowDripServer(&stalled),
		busy:   func() bool { return stalled.Load() >= 6 },
		request: func(t *testing.T, addr, pod string) *v1alpha1.MountRequest {
			// A path of its own: mounts of one identity share a read in flight.
			return request(t, addr, "- {objectName: k, secretPath: drip/"+pod+"}", "attacker", pod)
		},
		pods: 48, rounds: 1,
	})
	seen := map[codes.Code]int{}
	for _, err := range o.errs {
		seen[status.Code(err)]++
		if c := status.Code(err); c != codes.ResourceExhausted && c != codes.DeadlineExceeded {
			t.Errorf("a slow-drip mount: %v, want ResourceExhausted or DeadlineExceeded", err)
		}
	}
	t.Logf("FAIRNESS: slow-drip answers stalled: %d; slow-drip codes: %v", stalled.Load(), seen)
}
