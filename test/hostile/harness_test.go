package hostile

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	"github.com/okevault/vault-csi-provider/test/testbed"
)

// innocentObjects is what the innocent pods mount: one small KV v2 secret
// of goodServer's.
const innocentObjects = "- {objectName: password, secretPath: secret/data/app, secretKey: password}"

// innocentPods is how many innocent pods mount over and over during an
// attack, and heldMounts how many of their mounts must complete while a
// hostile request is held at the class's server.
const (
	innocentPods = 10
	heldMounts   = 20
)

// attack is one hostile class, run by run against a provider process of
// its own.
type attack struct {
	// args are the provider's flags beside -log-level=warn.
	args []string
	// server is the class author's server; nil: the class is refused
	// before any request leaves the provider.
	server http.Handler
	// busy reports that hostile mounts are provably in progress. nil: the
	// harness holds the class's requests at a gate in front of server,
	// and one held there is the proof.
	busy func() bool
	// request is one hostile pod's mount, given server's address.
	request      func(t *testing.T, addr, pod string) *v1alpha1.MountRequest
	pods, rounds int
}

// outcome is what an attack did to the provider and what its mounts got.
type outcome struct {
	// errs are the hostile mounts' errors.
	errs []error
	// innocent counts the innocent pods' mounts, failed those that did not
	// get their secret, overlapped those that began and ended while one
	// same hostile mount was in flight.
	innocent, failed, overlapped    int
	slowestHostile, slowestInnocent time.Duration
	baseRSS, peakRSS                int64
	cpu                             time.Duration
	threadsBefore, threadsAfter     int
}

func (o *outcome) String() string {
	return fmt.Sprintf("%d hostile mounts (slowest %s); %d innocent mounts, %d failed, %d while a hostile mount was in flight (slowest %s); RSS %d MiB at start, peak %d MiB (ceiling %d MiB); CPU %s; threads %d before, %d after",
		len(o.errs), o.slowestHostile.Round(time.Millisecond), o.innocent, o.failed, o.overlapped, o.slowestInnocent.Round(time.Millisecond),
		o.baseRSS>>20, o.peakRSS>>20, rssCeiling>>20, o.cpu.Round(10*time.Millisecond), o.threadsBefore, o.threadsAfter)
}

// inFlight tracks the hostile mounts in flight, so an innocent mount can
// tell whether one of them spanned it.
type inFlight struct {
	mu   sync.Mutex
	next int
	now  map[int]bool
}

func (f *inFlight) start() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.next++
	f.now[f.next] = true
	return f.next
}

func (f *inFlight) end(id int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.now, id)
}

func (f *inFlight) snapshot() map[int]bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.now)
}

// spans reports whether a mount in flight at before is in flight still.
func (f *inFlight) spans(before map[int]bool) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for id := range before {
		if f.now[id] {
			return true
		}
	}
	return false
}

// gate holds the requests reaching a hostile server until it is opened.
type gate struct {
	held   atomic.Int64
	opened chan struct{}
	once   sync.Once
}

func (g *gate) hold(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.held.Add(1)
		select {
		case <-g.opened:
		case <-r.Context().Done():
		}
		g.held.Add(-1)
		h.ServeHTTP(w, r)
	})
}

func (g *gate) open() { g.once.Do(func() { close(g.opened) }) }

// run starts a provider process for a, keeps innocentPods pods mounting a
// small secret over and over, and sends a's hostile mounts. Where the
// class reaches a server, the harness waits until its mounts are provably
// in progress and heldMounts innocent mounts have completed since, before
// letting them go on. It asserts what holds for every class: every innocent
// mount gets its secret, some while a hostile mount was in flight (where
// one reaches a server), and the provider's peak RSS stays under
// rssCeiling. Wall times are reported, never asserted.
func run(t *testing.T, a attack) *outcome {
	t.Helper()
	good := goodServer()
	defer good.Close()
	addr, busy, release := good.URL, a.busy, func() {}
	if a.server != nil {
		h := a.server
		if busy == nil {
			g := &gate{opened: make(chan struct{})}
			h, busy, release = g.hold(h), func() bool { return g.held.Load() > 0 }, g.open
		}
		srv := httptest.NewServer(h)
		defer srv.Close()
		defer release() // before srv.Close, which waits for held requests
		addr = srv.URL
	}

	p := testbed.StartProvider(t, testbed.ProviderOptions{ProvidersDir: t.TempDir(), Args: append([]string{"-log-level=warn"}, a.args...)})
	conn, err := grpc.NewClient("unix://"+p.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := v1alpha1.NewCSIDriverProviderClient(conn)
	// A first mount starts what every mount uses, so the baselines count
	// the runtime's working threads.
	if _, err := client.Mount(t.Context(), request(t, good.URL, innocentObjects, "shop", "warm-up")); err != nil {
		t.Fatal(err)
	}
	o := &outcome{baseRSS: procStatus(t, p.PID(), "VmRSS"), threadsBefore: threadsOf(t, p.PID())}
	baseCPU := cpuTime(t, p.PID())

	var (
		mu       sync.Mutex
		flight   = inFlight{now: map[int]bool{}}
		finished atomic.Int64 // innocent mounts completed
	)
	ctx, stop := context.WithCancel(t.Context())
	hostileCtx, stopHostile := context.WithCancel(t.Context())
	var innocents, hostile sync.WaitGroup
	// Also on t.Fatal: no mount outlives the test.
	defer func() { release(); stopHostile(); stop(); hostile.Wait(); innocents.Wait() }()
	for i := range innocentPods {
		innocents.Go(func() {
			for ctx.Err() == nil {
				before := flight.snapshot()
				start := time.Now()
				resp, err := client.Mount(context.WithoutCancel(ctx), request(t, good.URL, innocentObjects, "shop", fmt.Sprint("web-", i)))
				took, spanned := time.Since(start), flight.spans(before)
				ok := err == nil && len(resp.GetFiles()) == 1 && string(resp.GetFiles()[0].GetContents()) == "p4ss"
				if !ok {
					t.Errorf("an innocent pod's mount, during the attack: %v", err)
				}
				mu.Lock()
				o.innocent++
				o.slowestInnocent = max(o.slowestInnocent, took)
				if !ok {
					o.failed++
				} else if spanned {
					o.overlapped++
				}
				mu.Unlock()
				finished.Add(1)
			}
		})
	}
	for i := range a.pods {
		hostile.Go(func() {
			for r := range a.rounds {
				id := flight.start()
				start := time.Now()
				_, err := client.Mount(hostileCtx, a.request(t, addr, fmt.Sprintf("hostile-%d-%d", i, r)))
				took := time.Since(start)
				flight.end(id)
				mu.Lock()
				o.errs = append(o.errs, err)
				o.slowestHostile = max(o.slowestHostile, took)
				mu.Unlock()
			}
		})
	}
	if a.server != nil {
		waitFor(t, busy, "no hostile mount was provably in progress")
		n := finished.Load()
		waitFor(t, func() bool { return finished.Load() >= n+heldMounts }, "innocent pods did not mount while a hostile mount was in progress")
		release()
	}
	hostile.Wait()
	stop()
	innocents.Wait()

	o.peakRSS, o.cpu, o.threadsAfter = procStatus(t, p.PID(), "VmHWM"), cpuTime(t, p.PID())-baseCPU, threadsOf(t, p.PID())
	t.Logf("HOSTILE %s: %s", t.Name(), o)
	if o.peakRSS > rssCeiling {
		t.Errorf("peak RSS %d MiB, over the %d MiB ceiling", o.peakRSS>>20, rssCeiling>>20)
	}
	if o.innocent == 0 {
		t.Error("no innocent pod mounted during the attack")
	}
	if a.server != nil && o.overlapped == 0 {
		t.Error("no innocent mount completed while a hostile mount was in flight")
	}
	return o
}

// waitFor polls cond for up to 2 minutes (the machine may be loaded; what
// is asserted is that it happens, not how soon).
func waitFor(t *testing.T, cond func() bool, fail string) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Minute); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal(fail)
		}
	}
}
