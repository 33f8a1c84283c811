package leases

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/okevault/vault-csi-provider/internal/vault"
)

// hungVault is an injected fault: a Vault that takes every renewal and
// never answers until released (or the call's context ends). It counts the
// calls it holds at once.
type hungVault struct {
	fakeVault
	release           chan struct{}
	inFlight, maxHeld int
}

func (h *hungVault) RenewLease(ctx context.Context, id string, increment time.Duration) (vault.Lease, error) {
	h.mu.Lock()
	h.inFlight++
	h.maxHeld = max(h.maxHeld, h.inFlight)
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		h.inFlight--
		h.mu.Unlock()
	}()
	select {
	case <-h.release:
	case <-ctx.Done():
		return vault.Lease{}, ctx.Err()
	}
	return h.fakeVault.RenewLease(ctx, id, increment)
}

// getFrom mounts request k of pod through iss, issuing lease id.
func (r *rig) getFrom(iss Issuer, pod, k, id string) {
	r.t.Helper()
	_, err := r.store.Get(context.Background(), Key{Identity: "sa", Pod: pod, Request: k}, iss, func(context.Context) (*vault.Response, error) {
		body := fmt.Sprintf(`{"lease_id":%q,"lease_duration":1800,"renewable":true}`, id)
		return &vault.Response{Body: []byte(body)}, nil
	})
	if err != nil {
		r.t.Fatal(err)
	}
}

// waitFor polls cond until it holds or a deadline far beyond what the
// store needs passes (a failure, not a measurement).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(callTimeout / 2)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", callTimeout/2, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSlowTargetDoesNotDelayOthers: one Vault (address and namespace) that
// never answers holds no more than its own few renewals; the pass does not
// wait for them, and another Vault's leases, due at the same moment and
// listed after the slow ones, are renewed while they hang.
func TestSlowTargetDoesNotDelayOthers(t *testing.T) {
	r := newRig(t, 100, dbLease)
	hung := &hungVault{fakeVault: fakeVault{now: r.store.now, ends: map[string]time.Time{}}, release: make(chan struct{})}
	slow := Issuer{Vault: hung, Target: "https://slow.example:8200", Token: "slow-token", TTL: 768 * time.Hour, Renewable: true, Expires: r.now.Add(768 * time.Hour)}
	fast := r.token
	fast.Target = "https://vault.example:8200"
	for i := range 8 {
		r.getFrom(slow, "slow-pod", fmt.Sprint("creds-", i), fmt.Sprint("database/creds/slow/", i))
	}
	for i := range 2 {
		r.getFrom(fast, "fast-pod", fmt.Sprint("creds-", i), fmt.Sprint("database/creds/fast/", i))
	}
	r.advance(20 * time.Minute) // all ten due

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	passed := make(chan struct{})
	go func() { r.store.renewDue(ctx); close(passed) }()
	waitFor(t, "the other Vault's two leases renewed while one Vault hangs", func() bool {
		_, renewals, _ := r.vault.counts()
		return renewals == 2
	})
	waitFor(t, "the pass returned while one Vault hangs", func() bool {
		select {
		case <-passed:
			return true
		default:
			return false
		}
	})
	hung.mu.Lock()
	held := hung.maxHeld
	hung.mu.Unlock()
	if held > perTarget {
		t.Errorf("the hung Vault held %d renewals at once, want at most %d", held, perTarget)
	}
	close(hung.release)
	// Passes until the slow Vault's leases are all renewed, a few at a time.
	waitFor(t, "the slow Vault's leases renewed once it answers", func() bool {
		r.store.renewDue(ctx)
		_, renewals, _ := hung.counts()
		return renewals == 8
	})
}

// panickyVault panics renewing one lease: a bug in a renewal (ours or a
// library's) must fail that renewal only.
type panickyVault struct {
	fakeVault
	bad string
}

func (p *panickyVault) RenewLease(ctx context.Context, id string, increment time.Duration) (vault.Lease, error) {
	if id == p.bad {
		panic("injected panic renewing " + id)
	}
	return p.fakeVault.RenewLease(ctx, id, increment)
}

func TestPanicInRenewalFailsOnlyThatRenewal(t *testing.T) {
	r := newRig(t, 10, dbLease)
	pv := &panickyVault{fakeVault: fakeVault{now: r.store.now, ends: map[string]time.Time{}}, bad: "database/creds/app/bad"}
	iss := r.token
	iss.Vault = pv
	r.getFrom(iss, "pod", "bad", pv.bad)
	r.getFrom(iss, "pod", "good", "database/creds/app/good")
	r.advance(20 * time.Minute)
	r.pass()
	if _, renewals, _ := pv.counts(); renewals != 1 {
		t.Errorf("%d renewals, want the other lease's", renewals)
	}
	if !strings.Contains(r.logs.String(), "panicked") {
		t.Errorf("the panic is not logged:\n%s", r.logs.String())
	}
	if strings.Contains(r.logs.String(), pv.bad) {
		t.Errorf("the lease ID reached the log:\n%s", r.logs.String())
	}
	if r.store.Len() != 2 {
		t.Errorf("%d leases remembered after a renewal panicked, want both (the failed one is retried)", r.store.Len())
	}
}

// TestDeletedPodLeases: a deleted pod's leases are forgotten, so never
// renewed again, whether Vault revokes them or not; a lease its mount
// stores after the pod's delete event (the mount was in flight) is revoked
// at once and not kept.
func TestDeletedPodLeases(t *testing.T) {
	r := newRig(t, 10, dbLease)
	r.token.Role = "auth/kubernetes/role/app"
	r.getFrom(r.token, "denied", "creds", "database/creds/app/denied")
	r.vault.err = &vault.Error{Status: 403, Msg: "permission denied"}
	r.store.RevokePod(context.Background(), "denied")
	r.vault.err = nil

	var wg sync.WaitGroup
	r.store.RevokePod(context.Background(), "late") // before its mount stored anything
	wg.Go(func() { r.getFrom(r.token, "late", "creds", "database/creds/app/late") })
	wg.Wait()
	waitFor(t, "the late lease revoked", func() bool {
		r.vault.mu.Lock()
		defer r.vault.mu.Unlock()
		return len(r.vault.revoked) == 1 && r.vault.revoked[0] == "database/creds/app/late"
	})
	if r.store.Len() != 0 {
		t.Errorf("%d leases remembered for deleted pods, want 0", r.store.Len())
	}
	r.advance(20 * time.Minute)
	r.pass()
	if _, renewals, _ := r.vault.counts(); renewals != 0 {
		t.Errorf("%d renewals of deleted pods' leases, want 0", renewals)
	}
}

// TestRevokeDeniedWarnsOncePerRole: where a role's policy does not allow
// sys/leases/revoke, the operator hears of it once for that role, not once
// per pod.
func TestRevokeDeniedWarnsOncePerRole(t *testing.T) {
	r := newRig(t, 10, dbLease)
	app, other := r.token, r.token
	app.Role, other.Role = "auth/kubernetes/role/app", "auth/kubernetes/role/other"
	other.Token = "token-2" // a login of the other role
	for _, pod := range []string{"a", "b", "c"} {
		r.getFrom(app, pod, "creds", "database/creds/app/"+pod)
	}
	r.getFrom(other, "d", "creds", "database/creds/other/d")
	r.vault.err = &vault.Error{Status: 403, Msg: "permission denied"}
	for _, pod := range []string{"a", "b", "c", "d"} {
		r.store.RevokePod(context.Background(), pod)
	}
	logs := r.logs.String()
	for _, role := range []string{app.Role, other.Role} {
		if n := strings.Count(logs, `"role":"`+role+`"`); n != 1 {
			t.Errorf("%d warnings naming %s, want 1:\n%s", n, role, logs)
		}
	}
	if !strings.Contains(logs, "sys/leases/revoke") {
		t.Errorf("the warning does not say what the policy lacks:\n%s", logs)
	}
}
