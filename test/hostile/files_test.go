package hostile

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	"github.com/okevault/vault-csi-provider/test/testbed"
)

// headersServer is a server of a class's author that logs anyone in with a
// response of 2,000 small distinct headers (~150 KB): within Go's default
// bound of 10 MiB, each read in flight would hold them all.
func headersServer() *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		for i := range 2000 {
			w.Header().Set(fmt.Sprintf("X-Pad-%d", i), strings.Repeat("x", 64))
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"auth":{"client_token":"hvs.hostile","lease_duration":3600}}`))
	}))
}

// withParams is request's MountRequest with more class parameters.
func withParams(t *testing.T, r *v1alpha1.MountRequest, params map[string]string) *v1alpha1.MountRequest {
	t.Helper()
	var attrs map[string]string
	if err := json.Unmarshal([]byte(r.GetAttributes()), &attrs); err != nil {
		t.Fatal(err)
	}
	for k, v := range params {
		attrs[k] = v
	}
	b, err := json.Marshal(attrs)
	if err != nil {
		t.Fatal(err)
	}
	r.Attributes = string(b)
	return r
}

// threadsOf is the process's OS thread count, from /proc/<pid>/status.
func threadsOf(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no Threads in /proc/%d/status", pid)
	return 0
}

// TestHostileFiles runs the provider binary with an allowed TLS directory
// and sends it classes naming, as TLS files, an endless device (a symlink
// to /dev/zero in the allowed directory), a pipe a writer holds open and
// never writes to, a 2 MiB file, a file outside the allowed directory, and
// a server answering with many headers; 4 pods each for 3 rounds, while 10
// other pods mount from a good server over and over. Every hostile mount
// fails at once with its code, every other mount succeeds, and the
// provider's OS thread count is back to where it was (none left parked on
// the pipe). Logged: go test -v -run TestHostileFiles ./test/hostile/ | grep FILES
func TestHostileFiles(t *testing.T) {
	good, headers := goodServer(), headersServer()
	defer good.Close()
	defer headers.Close()
	allowed, outside := t.TempDir(), t.TempDir()
	zero := filepath.Join(allowed, "zero.pem")
	if err := os.Symlink("/dev/zero", zero); err != nil {
		t.Fatal(err)
	}
	pipe := filepath.Join(allowed, "pipe.pem")
	if err := syscall.Mkfifo(pipe, 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := os.OpenFile(pipe, os.O_RDWR, 0) // holds the write end open without writing
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	big := filepath.Join(allowed, "big.pem")
	if err := os.WriteFile(big, []byte(strings.Repeat("a", 2<<20)), 0o600); err != nil {
		t.Fatal(err)
	}
	elsewhere := filepath.Join(outside, "ca.pem")
	if err := os.WriteFile(elsewhere, []byte("not read"), 0o600); err != nil {
		t.Fatal(err)
	}

	p := testbed.StartProvider(t, testbed.ProviderOptions{ProvidersDir: t.TempDir(), Args: []string{"-log-level=warn", "-allowed-tls-directories=" + allowed}})
	conn, err := grpc.NewClient("unix://"+p.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := v1alpha1.NewCSIDriverProviderClient(conn)
	goodObjects := "- {objectName: password, secretPath: secret/data/app, secretKey: password}"
	// A first good mount starts what every mount uses, so the baseline
	// counts the runtime's working threads.
	if _, err := client.Mount(t.Context(), request(t, good.URL, goodObjects, "shop", "warm-up")); err != nil {
		t.Fatal(err)
	}
	before := threadsOf(t, p.PID())

	hostile := map[string]struct {
		addr   string
		params map[string]string
		code   codes.Code
		reason string
	}{
		"an endless device":     {good.URL, map[string]string{"vaultCACertPath": zero}, codes.InvalidArgument, "not a regular file"},
		"a pipe held open":      {good.URL, map[string]string{"vaultCACertPath": pipe}, codes.InvalidArgument, "not a regular file"},
		"a pipe as client key":  {good.URL, map[string]string{"vaultTLSClientCertPath": big, "vaultTLSClientKeyPath": pipe}, codes.InvalidArgument, "vaultTLSClient"},
		"a 2 MiB file":          {good.URL, map[string]string{"vaultCACertPath": big}, codes.InvalidArgument, "larger than"},
		"a file outside":        {good.URL, map[string]string{"vaultCACertPath": elsewhere}, codes.InvalidArgument, "-allowed-tls-directories"},
		"2,000 headers":         {headers.URL, nil, codes.ResourceExhausted, "headers"},
		"the pipe as directory": {good.URL, map[string]string{"vaultCADirectory": pipe}, codes.InvalidArgument, "not a directory"},
	}
	var (
		wg, goodWG        sync.WaitGroup
		mu                sync.Mutex
		goodMounts, fails int
		slowestHostile    time.Duration
		slowestGood       time.Duration
	)
	done := make(chan struct{})
	for i := range 10 {
		goodWG.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				start := time.Now()
				resp, err := client.Mount(t.Context(), request(t, good.URL, goodObjects, "shop", fmt.Sprintf("web-%d", i)))
				mu.Lock()
				slowestGood = max(slowestGood, time.Since(start))
				goodMounts++
				if err != nil || len(resp.GetFiles()) != 1 || string(resp.GetFiles()[0].GetContents()) != "p4ss" {
					fails++
					t.Errorf("a good pod's mount, during the attack: %v", err)
				}
				mu.Unlock()
			}
		})
	}
	for name, c := range hostile {
		for i := range 4 {
			wg.Go(func() {
				for r := range 3 {
					start := time.Now()
					_, err := client.Mount(t.Context(), withParams(t, request(t, c.addr, goodObjects, "attacker", fmt.Sprintf("hostile-%d-%d", i, r)), c.params))
					mu.Lock()
					slowestHostile = max(slowestHostile, time.Since(start))
					mu.Unlock()
					if status.Code(err) != c.code || !strings.Contains(status.Convert(err).Message(), c.reason) {
						t.Errorf("%s: %v; want %s saying %q", name, err, c.code, c.reason)
					}
				}
			})
		}
	}
	wg.Wait()
	close(done)
	goodWG.Wait()

	after := threadsOf(t, p.PID())
	t.Logf("FILES: %d good mounts (%d failed, slowest %s), slowest hostile mount %s; provider threads %d before, %d after",
		goodMounts, fails, slowestGood.Round(time.Millisecond), slowestHostile.Round(time.Millisecond), before, after)
	// The runtime may start a thread or two for load; a thread parked on
	// the pipe per hostile mount would be 12 or more.
	if after > before+4 {
		t.Errorf("provider threads: %d before the hostile mounts, %d after", before, after)
	}
	if goodMounts == 0 {
		t.Error("no good pod mounted during the attack")
	}
}
