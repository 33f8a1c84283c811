package leases

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/okevault/vault-csi-provider/internal/vault"
)

// fakeVault stands in for Vault's lease endpoints so that renewal timing can
// be driven by a fake clock; provider/leases_test.go runs the store against
// the real Vault.
type fakeVault struct {
	mu                               sync.Mutex
	now                              func() time.Time
	ends                             map[string]time.Time // lease ends, as Vault keeps them
	lookups, renewals, tokenRenewals int
	grant                            time.Duration // what RenewLease grants; 0: the increment
	tokenGrant                       time.Duration // what RenewToken grants; 0: the increment
	err                              error         // answered by every call when set
	revoked                          []string
}

func (f *fakeVault) LookupLease(ctx context.Context, id string) (vault.Lease, error) {
	if ctx.Err() != nil {
		return vault.Lease{}, ctx.Err()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lookups++
	return vault.Lease{ID: id, TTL: f.ends[id].Sub(f.now()), Renewable: true}, f.err
}

func (f *fakeVault) RenewLease(ctx context.Context, id string, increment time.Duration) (vault.Lease, error) {
	if ctx.Err() != nil {
		return vault.Lease{}, ctx.Err()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.renewals++
	if f.grant > 0 {
		increment = f.grant
	}
	if f.err == nil {
		f.ends[id] = f.now().Add(increment)
	}
	return vault.Lease{ID: id, TTL: increment, Renewable: true}, f.err
}

func (f *fakeVault) RenewToken(ctx context.Context, increment time.Duration) (time.Duration, error) {
	if ctx.Err() != nil {
		return 0, ctx.Err()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tokenRenewals++
	if f.tokenGrant > 0 {
		increment = f.tokenGrant
	}
	return increment, f.err
}

func (f *fakeVault) RevokeLease(ctx context.Context, id string) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err == nil {
		f.revoked = append(f.revoked, id)
	}
	return f.err
}

func (f *fakeVault) counts() (lookups, renewals, tokenRenewals int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lookups, f.renewals, f.tokenRenewals
}

// rig is a store on a fake clock and an issuer that counts its issues.
type rig struct {
	t      *testing.T
	store  *Store
	now    time.Time
	vault  *fakeVault
	issued int
	// lease is what the next issue carries; ID "" issues no lease.
	lease vault.Lease
	// token is the issuing login.
	token Issuer
	logs  bytes.Buffer
	// size is the Size of the responses issued.
	size int64
}

func newRig(t *testing.T, size int, lease vault.Lease) *rig {
	t.Helper()
	r := &rig{t: t, now: time.Unix(1_000_000, 0), lease: lease}
	s, err := New(size, 64<<20, slog.New(slog.NewJSONHandler(&r.logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	r.store = s
	s.now = func() time.Time { return r.now }
	r.vault = &fakeVault{now: s.now, ends: map[string]time.Time{}}
	r.token = Issuer{Vault: r.vault, Token: "token-1", TTL: 768 * time.Hour, Renewable: true, Expires: r.now.Add(768 * time.Hour)}
	return r
}

// get mounts key k and returns the serial of the response it got.
func (r *rig) get(k string) string {
	r.t.Helper()
	resp, err := r.store.Get(context.Background(), Key{Identity: "sa", Pod: "uid", Request: k}, r.token, func(context.Context) (*vault.Response, error) {
		r.issued++
		r.vault.mu.Lock()
		r.vault.ends[r.lease.ID] = r.now.Add(r.lease.TTL)
		r.vault.mu.Unlock()
		body := fmt.Sprintf(`{"lease_id":%q,"lease_duration":%d,"renewable":%t,"data":{"serial":"%d"}}`,
			r.lease.ID, int64(r.lease.TTL/time.Second), r.lease.Renewable, r.issued)
		return &vault.Response{Body: []byte(body), Data: map[string]any{"serial": fmt.Sprint(r.issued)}, Size: r.size}, nil
	})
	if err != nil {
		r.t.Fatal(err)
	}
	return resp.Data["serial"].(string)
}

func (r *rig) advance(d time.Duration) { r.now = r.now.Add(d) }

// pass runs one renewal pass and waits for the renewals it started.
func (r *rig) pass() {
	r.store.renewDue(context.Background())
	r.store.calls.Wait()
}

var dbLease = vault.Lease{ID: "database/creds/app/abc", TTL: 30 * time.Minute, Renewable: true}

func TestRemembersOnlyLeasedResponses(t *testing.T) {
	r := newRig(t, 10, dbLease)
	first := r.get("creds")
	for range 5 { // rotation polls
		if got := r.get("creds"); got != first {
			t.Fatalf("poll got serial %s, want the remembered %s", got, first)
		}
	}
	if r.issued != 1 {
		t.Errorf("%d issues for 6 mounts, want 1", r.issued)
	}
	if lookups, _, _ := r.vault.counts(); lookups != 5 {
		t.Errorf("%d lookups, want one per served poll (5)", lookups)
	}

	r.lease = vault.Lease{} // a KV read: no lease, nothing to remember
	r.get("kv")
	r.get("kv")
	if r.issued != 3 {
		t.Errorf("%d issues, want 3: a response without a lease is read each time", r.issued)
	}
}

func TestRenewalTiming(t *testing.T) {
	r := newRig(t, 10, dbLease)
	first := r.get("creds")
	r.advance(19 * time.Minute) // before two thirds of 30m
	r.pass()
	if _, renewals, _ := r.vault.counts(); renewals != 0 {
		t.Fatalf("%d renewals at 19m of 30m, want 0", renewals)
	}
	r.advance(time.Minute) // 20m: two thirds
	r.pass()
	if _, renewals, _ := r.vault.counts(); renewals != 1 {
		t.Fatalf("%d renewals at 20m, want 1", renewals)
	}
	r.advance(20 * time.Minute) // 40m: past the lease's first end, renewed to 50m
	if got := r.get("creds"); got != first || r.issued != 1 {
		t.Errorf("at 40m got serial %s after %d issues, want the renewed %s", got, r.issued, first)
	}
	r.pass() // 40m is due again (20m + 2/3 of 30m)
	if _, renewals, _ := r.vault.counts(); renewals != 2 {
		t.Errorf("%d renewals at 40m, want 2", renewals)
	}
}

func TestMaxTTLStopsRenewalThenReissues(t *testing.T) {
	r := newRig(t, 10, dbLease)
	r.vault.grant = 10 * time.Minute // capped: less than the 30m asked for
	first := r.get("creds")
	r.advance(20 * time.Minute)
	r.pass()                   // renewed to 30m, and no further
	r.advance(4 * time.Minute) // 24m: six minutes left, more than the 5m margin
	r.pass()
	if _, renewals, _ := r.vault.counts(); renewals != 1 {
		t.Errorf("%d renewals, want 1: a capped grant means the max TTL is reached", renewals)
	}
	if got := r.get("creds"); got != first {
		t.Errorf("at 24m got serial %s, want the remembered %s", got, first)
	}
	r.advance(2 * time.Minute) // 26m: within 5 minutes of the end
	if got := r.get("creds"); got == first || r.issued != 2 {
		t.Errorf("near the end got serial %s after %d issues, want a new issue", got, r.issued)
	}
}

func TestRefusedRenewalForgets(t *testing.T) {
	for _, tt := range []struct {
		name   string
		err    error
		forget bool
	}{
		{"lease unknown", &vault.Error{Status: http.StatusBadRequest, Msg: "lease not found"}, true},
		{"token revoked", &vault.Error{Status: http.StatusForbidden, Msg: "permission denied"}, true},
		{"vault down", &vault.Error{Msg: "unreachable: connection refused"}, false},
		{"vault sealed", &vault.Error{Status: http.StatusServiceUnavailable, Msg: "sealed"}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, 10, dbLease)
			r.get("creds")
			r.advance(20 * time.Minute)
			r.vault.err = tt.err
			r.pass()
			if got := r.store.Len() == 0; got != tt.forget {
				t.Errorf("forgotten = %v, want %v", got, tt.forget)
			}
			if logged := strings.Contains(r.logs.String(), `"path":"database/creds/app"`); logged != tt.forget {
				t.Errorf("refusal logged with the lease's path = %v, want %v:\n%s", logged, tt.forget, r.logs.String())
			}
			if strings.Contains(r.logs.String(), dbLease.ID) {
				t.Error("the lease ID was logged")
			}
			r.vault.err = nil
			if !tt.forget {
				r.advance(retryAfter)
				r.pass()
				if _, renewals, _ := r.vault.counts(); renewals != 2 {
					t.Errorf("%d renewals, want a retry after %v", renewals, retryAfter)
				}
			}
		})
	}
}

func TestRevokedLeaseReissued(t *testing.T) {
	r := newRig(t, 10, dbLease)
	first := r.get("creds")
	r.vault.err = &vault.Error{Status: http.StatusBadRequest, Msg: "invalid lease"}
	// The lookup before serving fails; the issue does not use the fake.
	if got := r.get("creds"); got == first || r.issued != 2 {
		t.Errorf("got serial %s after %d issues, want a new issue for a revoked lease", got, r.issued)
	}
	r.vault.err = &vault.Error{Msg: "unreachable: connection refused"}
	_, err := r.store.Get(context.Background(), Key{Identity: "sa", Pod: "uid", Request: "creds"}, r.token, func(context.Context) (*vault.Response, error) {
		t.Error("issued while Vault could not be asked about the remembered lease")
		return nil, nil
	})
	if err == nil {
		t.Error("no error when Vault could not be asked about the remembered lease")
	}
}

func TestLeaseEndsWithItsToken(t *testing.T) {
	cert := vault.Lease{ID: "pki/issue/web/xyz", TTL: 24 * time.Hour} // not renewable, like PKI
	r := newRig(t, 10, cert)
	r.token = Issuer{Vault: r.vault, Token: "short", TTL: time.Hour, Expires: r.now.Add(time.Hour)} // not renewable
	first := r.get("cert")
	r.advance(54 * time.Minute)
	if got := r.get("cert"); got != first {
		t.Errorf("at 54m got %s, want the remembered %s", got, first)
	}
	r.advance(2 * time.Minute) // 56m: the token, and so the lease, ends within 5 minutes
	if got := r.get("cert"); got == first {
		t.Error("served a lease whose token is about to end")
	}
}

func TestTokenKeptAliveForLeasesThatOutliveIt(t *testing.T) {
	cert := vault.Lease{ID: "pki/issue/web/xyz", TTL: 24 * time.Hour}
	r := newRig(t, 10, cert)
	r.token = Issuer{Vault: r.vault, Token: "renewable", TTL: time.Hour, Renewable: true, Expires: r.now.Add(time.Hour)}
	first := r.get("cert")
	r.advance(39 * time.Minute)
	r.pass()
	if _, _, n := r.vault.counts(); n != 0 {
		t.Fatalf("%d token renewals at 39m of 1h, want 0", n)
	}
	r.advance(time.Minute) // 40m: two thirds of the token's hour
	r.pass()
	if _, _, n := r.vault.counts(); n != 1 {
		t.Fatalf("%d token renewals at 40m, want 1", n)
	}
	r.advance(30 * time.Minute) // 70m: the token lives to 100m now
	if got := r.get("cert"); got != first {
		t.Errorf("at 70m got %s, want the remembered %s", got, first)
	}

	t.Run("not while no lease outlives it", func(t *testing.T) {
		r := newRig(t, 10, vault.Lease{ID: "pki/issue/web/short", TTL: 10 * time.Minute})
		r.token = Issuer{Vault: r.vault, Token: "renewable", TTL: time.Hour, Renewable: true, Expires: r.now.Add(time.Hour)}
		r.get("cert")
		r.advance(41 * time.Minute)
		r.pass()
		if _, _, n := r.vault.counts(); n != 0 {
			t.Errorf("%d token renewals for a token its leases do not outlive, want 0", n)
		}
	})
	t.Run("max TTL reached", func(t *testing.T) {
		r := newRig(t, 10, cert)
		r.token = Issuer{Vault: r.vault, Token: "renewable", TTL: time.Hour, Renewable: true, Expires: r.now.Add(time.Hour)}
		r.vault.tokenGrant = 30 * time.Minute
		first := r.get("cert")
		r.advance(40 * time.Minute)
		r.pass()                    // token now ends at 70m
		r.advance(24 * time.Minute) // 64m
		r.pass()
		if _, _, n := r.vault.counts(); n != 1 {
			t.Errorf("%d token renewals, want 1: a capped grant means its max TTL is reached", n)
		}
		r.advance(2 * time.Minute) // 66m: within 5 minutes of the token's end
		if got := r.get("cert"); got == first {
			t.Error("served a lease whose token is about to reach its max TTL")
		}
	})
}

func TestBoundedAndPruned(t *testing.T) {
	r := newRig(t, 2, dbLease)
	a := r.get("a")
	r.get("b")
	r.get("c") // evicts a
	if n := r.store.Len(); n != 2 {
		t.Errorf("Len = %d, want 2", n)
	}
	if got := r.get("a"); got == a {
		t.Error(`"a" was served after its eviction`)
	}
	r.advance(time.Hour) // every lease has ended
	r.pass()
	r.store.mu.Lock()
	tokens := len(r.store.tokens)
	r.store.mu.Unlock()
	if n := r.store.Len(); n != 0 || tokens != 0 {
		t.Errorf("after the leases ended: %d entries, %d tokens; want none", n, tokens)
	}
}

// TestBoundedInBytes: the store forgets its oldest responses to stay
// within its bytes, and keeps none larger than all of them.
func TestBoundedInBytes(t *testing.T) {
	r := newRig(t, 100, dbLease)
	r.store.maxBytes = 250
	r.size = 100
	a := r.get("a")
	r.get("b")
	r.get("c") // a third 100 bytes: a goes
	if n, b := r.store.Len(), r.store.bytes; n != 2 || b != 200 {
		t.Errorf("Len = %d holding %d bytes, want 2 holding 200", n, b)
	}
	if got := r.get("a"); got == a {
		t.Error(`"a" was served after its eviction`)
	}
	r.size = 251
	r.get("huge")
	if n, b := r.store.Len(), r.store.bytes; n != 2 || b != 200 {
		t.Errorf("after a response over the bound: Len = %d holding %d bytes, want it not kept", n, b)
	}
}

func TestOneIssueInFlight(t *testing.T) {
	r := newRig(t, 10, dbLease)
	release := make(chan struct{})
	var mu sync.Mutex
	issues := 0
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := r.store.Get(context.Background(), Key{Identity: "sa", Request: "creds"}, r.token, func(context.Context) (*vault.Response, error) {
				mu.Lock()
				issues++
				mu.Unlock()
				<-release
				return &vault.Response{Body: []byte(`{"lease_id":"x","lease_duration":600}`)}, nil
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	time.Sleep(20 * time.Millisecond) // let the callers pile up behind the first issue
	close(release)
	wg.Wait()
	if issues != 1 {
		t.Errorf("%d issues for 10 concurrent mounts of one key, want 1", issues)
	}
}

func TestRunStopsWithItsContext(t *testing.T) {
	s, err := New(1, 64<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

// TestRunWakesWhenARenewalIsDue runs the loop on the real clock: a lease of
// 2s is due after 1.33s, well before Run's longest sleep.
func TestRunWakesWhenARenewalIsDue(t *testing.T) {
	s, err := New(10, 64<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeVault{now: time.Now, ends: map[string]time.Time{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	iss := Issuer{Vault: f, Token: "t", TTL: time.Hour, Renewable: true, Expires: time.Now().Add(time.Hour)}
	_, err = s.Get(ctx, Key{Identity: "sa", Pod: "uid", Request: "creds"}, iss, func(context.Context) (*vault.Response, error) {
		return &vault.Response{Body: []byte(`{"lease_id":"db/x","lease_duration":2,"renewable":true}`)}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(checkEvery / 2)
	for {
		if _, renewals, _ := f.counts(); renewals > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no renewal within %v of a 2s lease", checkEvery/2)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestScope(t *testing.T) {
	if _, err := ParseScope("cluster"); err == nil {
		t.Error("ParseScope accepted an unknown scope")
	}
	pod1, _ := ScopePod.Key("sa", "uid-1")
	pod2, _ := ScopePod.Key("sa", "uid-2")
	id1, _ := ScopeIdentity.Key("sa", "uid-1")
	id2, _ := ScopeIdentity.Key("sa", "uid-2")
	other, _ := ScopeIdentity.Key("other-sa", "uid-1")
	if pod1 == pod2 || id1 != id2 || id1 == other {
		t.Errorf("pod scope must separate pods, identity scope must join them and separate identities: %+v %+v %+v %+v %+v", pod1, pod2, id1, id2, other)
	}
	if _, ok := ScopePod.Key("sa", ""); ok {
		t.Error("pod scope without a pod UID must remember nothing")
	}
	if _, ok := ScopeOff.Key("sa", "uid-1"); ok {
		t.Error("scope off must remember nothing")
	}
}

func TestRevokePod(t *testing.T) {
	r := newRig(t, 10, dbLease)
	get := func(pod string) {
		t.Helper()
		_, err := r.store.Get(context.Background(), Key{Identity: "sa", Pod: pod, Request: "creds"}, r.token, func(context.Context) (*vault.Response, error) {
			body := fmt.Sprintf(`{"lease_id":"database/creds/app/%s","lease_duration":1800,"renewable":true}`, pod)
			return &vault.Response{Body: []byte(body)}, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	get("gone")
	get("stays")
	if n := r.store.RevokePod(context.Background(), "gone"); n != 1 {
		t.Errorf("RevokePod revoked %d leases, want 1", n)
	}
	if r.store.Len() != 1 || len(r.vault.revoked) != 1 || r.vault.revoked[0] != "database/creds/app/gone" {
		t.Errorf("after RevokePod: %d remembered, revoked %v; want the other pod's kept and only the gone pod's revoked", r.store.Len(), r.vault.revoked)
	}
	r.vault.err = &vault.Error{Status: http.StatusForbidden, Msg: "permission denied"}
	if n := r.store.RevokePod(context.Background(), "stays"); n != 0 || r.store.Len() != 0 {
		t.Errorf("refused revocation: %d revoked, %d remembered; want 0 and the lease forgotten", n, r.store.Len())
	}
	if !strings.Contains(r.logs.String(), "sys/leases/revoke") || strings.Contains(r.logs.String(), "database/creds/app/stays") {
		t.Errorf("the refusal is not logged, or the lease ID is:\n%s", r.logs.String())
	}
}

func TestStats(t *testing.T) {
	r := newRig(t, 10, dbLease)
	r.get("creds")
	r.get("creds")
	r.get("creds")
	r.advance(20 * time.Minute)
	r.pass()
	want := Stats{Remembered: 1, Issued: 1, Reused: 2, Renewed: 1}
	if got := r.store.Stats(); got != want {
		t.Errorf("after 3 mounts and a renewal: %+v, want %+v", got, want)
	}
	r.vault.err = &vault.Error{Status: http.StatusBadRequest, Msg: "invalid lease"}
	r.get("creds") // the lookup is refused: dropped, issued anew
	want = Stats{Remembered: 1, Issued: 2, Reused: 2, Renewed: 1, Dropped: 1}
	if got := r.store.Stats(); got != want {
		t.Errorf("after a revoked lease: %+v, want %+v", got, want)
	}
}
