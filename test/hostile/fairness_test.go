package hostile

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	"github.com/okevault/vault-csi-provider/test/testbed"
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
func slowDripServer(stalled *atomic.Int64) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
	}))
}

// TestSlowDripNamespaceDoesNotStarveOthers runs the provider binary with
// its defaults (but a 20 s mount deadline, so the test is short) and keeps
// 48 pods of one namespace mounting from a slow-drip server, each mount
// holding 600 KiB until its deadline: together far more than
// -max-total-bytes. Once they hold what they can, 20 pods of another
// namespace mount a small secret 5 times each: every one of those mounts
// succeeds, because one namespace's mounts hold at most a quarter of the
// pool. The slow-drip mounts fail with ResourceExhausted (over their
// namespace's share) or DeadlineExceeded.
func TestSlowDripNamespaceDoesNotStarveOthers(t *testing.T) {
	var stalled atomic.Int64
	drip, good := slowDripServer(&stalled), goodServer()
	defer drip.Close()
	defer good.Close()
	p := testbed.StartProvider(t, testbed.ProviderOptions{ProvidersDir: t.TempDir(), Args: []string{"-log-level=error", "-mount-timeout=20s"}})
	conn, err := grpc.NewClient("unix://"+p.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := v1alpha1.NewCSIDriverProviderClient(conn)

	ctx, cancel := context.WithCancel(t.Context())
	var attackers sync.WaitGroup
	var mu sync.Mutex
	codesSeen := map[codes.Code]int{}
	for i := range 48 {
		attackers.Go(func() {
			for ctx.Err() == nil {
				// A path of its own: mounts of one identity share a read in flight.
				_, err := client.Mount(ctx, request(t, drip.URL, fmt.Sprintf("- {objectName: k, secretPath: drip/%d}", i), "attacker", fmt.Sprint("drip-", i)))
				if ctx.Err() != nil {
					return
				}
				mu.Lock()
				codesSeen[status.Code(err)]++
				mu.Unlock()
				if c := status.Code(err); c != codes.ResourceExhausted && c != codes.DeadlineExceeded {
					t.Errorf("a slow-drip mount: %v, want ResourceExhausted or DeadlineExceeded", err)
				}
			}
		})
	}
	defer func() { cancel(); attackers.Wait() }()

	// The slow-drip mounts hold what they can: at least a namespace's
	// share (8 MiB) is held: six answers of 600 KiB stalled at least.
	deadline := time.Now().Add(15 * time.Second)
	for stalled.Load() < 6 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d slow-drip answers stalled within 15s", stalled.Load())
		}
		time.Sleep(50 * time.Millisecond)
	}

	var innocent sync.WaitGroup
	var ok, failed atomic.Int64
	for i := range 20 {
		innocent.Go(func() {
			for range 5 {
				resp, err := client.Mount(t.Context(), request(t, good.URL, "- {objectName: password, secretPath: secret/data/app, secretKey: password}", "shop", fmt.Sprint("web-", i)))
				if err != nil || len(resp.GetFiles()) != 1 || string(resp.GetFiles()[0].GetContents()) != "p4ss" {
					failed.Add(1)
					t.Errorf("a mount of another namespace while the slow-drip namespace holds its share: %v", err)
					continue
				}
				ok.Add(1)
			}
		})
	}
	innocent.Wait()
	mu.Lock()
	t.Logf("FAIRNESS: %d of 100 other-namespace mounts succeeded (%d failed) while 48 slow-drip pods mounted; slow-drip answers stalled: %d; slow-drip codes so far: %v",
		ok.Load(), failed.Load(), stalled.Load(), codesSeen)
	mu.Unlock()
}
