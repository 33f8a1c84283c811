package leases

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/singleflight"

	"github.com/okevault/vault-csi-provider/internal/cache"
	"github.com/okevault/vault-csi-provider/internal/panics"
	"github.com/okevault/vault-csi-provider/internal/vault"
)

const (
	// checkEvery is the longest Run sleeps; it wakes earlier when a renewal
	// is due sooner.
	checkEvery = 10 * time.Second
	// minWait keeps Run from spinning on renewals due in the past.
	minWait = 500 * time.Millisecond
	// retryAfter is when a renewal that got no answer is tried again.
	retryAfter = 30 * time.Second
	// callTimeout bounds one renewal or revocation in the background.
	callTimeout = 10 * time.Second
	// renewers bounds the renewals in flight in all, and perTarget those to
	// one Vault (address and namespace): a Vault that never answers holds
	// perTarget of them for callTimeout at a time, and the others go on. It
	// takes renewers/perTarget such Vaults, each with leases remembered
	// (-allowed-vault-addresses keeps classes from naming them), to hold
	// every renewal.
	renewers  = 32
	perTarget = 2
	// goneSize is how many deleted pods are remembered, so that a lease
	// stored after its pod's delete event (by a mount still in flight) is
	// revoked at once: far more pods than a node deletes within a mount's
	// deadline.
	goneSize = 4096
	// warnedSize bounds the roles already warned that their policy does not
	// allow sys/leases/revoke.
	warnedSize = 1024
)

// Key names one remembered response. Its parts are opaque digests or names,
// never secrets.
type Key struct {
	Identity string // the service-account identity (a digest)
	Pod      string // the pod's UID; empty when the identity's pods share
	Request  string // config.Object.RequestKey()
}

// Issuer is the login a response is issued with.
type Issuer struct {
	// Vault is bound to the issuing client and token.
	Vault Vault
	// Token identifies the token without holding it (a digest): leases of
	// one token share its renewal.
	Token     string
	TTL       time.Duration // the login's TTL, asked for again on renewal
	Renewable bool
	Expires   time.Time // zero: the token never expires
	// Target is the Vault (address and namespace) the lease lives in.
	Target string
	// Role names the Vault role that logged in, auth/<mount>/role/<name>,
	// for the operator: it is where a missing policy is fixed.
	Role string
}

// Store remembers responses that carry a lease. It is bounded (LRU); an
// evicted or forgotten lease is left to expire, never revoked.
type Store struct {
	mu  sync.Mutex
	lru *lru.Cache[Key, *entry]
	// bytes is what the remembered responses hold (vault.Response.Size),
	// at most maxBytes; the oldest are forgotten first.
	bytes, maxBytes int64
	tokens          map[string]*token // by Issuer.Token; pruned by each renewal pass
	group           singleflight.Group
	now             func() time.Time
	log             *slog.Logger
	// next is the earliest renewal known to be due (zero: none); wake tells
	// Run that it moved earlier.
	next time.Time
	wake chan struct{}
	// running and targets count the renewals in flight, in all and per
	// Issuer.Target; calls holds them, so Run returns after them.
	running int
	targets map[string]int
	calls   sync.WaitGroup
	// gone is the pods deleted lately (by UID), warned the roles whose
	// policy was found not to allow revocation.
	gone, warned *lru.Cache[string, struct{}]
	// stats count what the store did, for metrics.
	reused, issued, renewed, dropped, revoked atomic.Uint64
}

// Stats are the store's counters since start.
type Stats struct {
	// Remembered is how many responses the store holds now.
	Remembered int
	// Reused mounts got a remembered response instead of a new issue;
	// Issued responses with a lease were remembered.
	Reused, Issued uint64
	// Renewed leases and tokens; Dropped: forgotten because Vault refused
	// a renewal or no longer knew the lease; Revoked for deleted pods.
	Renewed, Dropped, Revoked uint64
}

// Stats returns the counters.
func (s *Store) Stats() Stats {
	return Stats{
		Remembered: s.Len(),
		Reused:     s.reused.Load(), Issued: s.issued.Load(),
		Renewed: s.renewed.Load(), Dropped: s.dropped.Load(), Revoked: s.revoked.Load(),
	}
}

type entry struct {
	resp    *vault.Response
	lease   vault.Lease // as issued: its TTL is the renewal increment
	end     time.Time   // when the lease ends, as last known
	renewAt time.Time   // zero: not renewed (not renewable, or max TTL reached)
	tok     *token
	busy    bool // a renewal is in flight
}

type token struct {
	vault   Vault
	target  string
	role    string
	ttl     time.Duration
	end     time.Time // zero: never
	renewAt time.Time // zero: not renewed
	busy    bool      // a renewal is in flight
}

// New returns a store holding at most size responses and maxBytes bytes.
// log (nil: none) hears of renewals Vault refused.
func New(size int, maxBytes int64, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{maxBytes: maxBytes, tokens: map[string]*token{}, targets: map[string]int{}, now: time.Now, log: log, wake: make(chan struct{}, 1)}
	c, err := lru.NewWithEvict(size, func(_ Key, e *entry) { s.bytes -= e.resp.Size })
	if err != nil {
		return nil, err
	}
	s.lru = c
	if s.gone, err = lru.New[string, struct{}](goneSize); err != nil {
		return nil, err
	}
	if s.warned, err = lru.New[string, struct{}](warnedSize); err != nil {
		return nil, err
	}
	return s, nil
}

// Get returns the response remembered under k while its lease is good, or
// runs issue (once across concurrent callers of k) and remembers the answer
// if it carries a lease. iss is the login issue uses.
func (s *Store) Get(ctx context.Context, k Key, iss Issuer, issue func(context.Context) (*vault.Response, error)) (*vault.Response, error) {
	resp, ok, err := s.remembered(ctx, k)
	if ok || err != nil {
		return resp, err
	}
	return cache.Shared(ctx, &s.group, k.Identity+"\x00"+k.Pod+"\x00"+k.Request, issue, func(resp *vault.Response) {
		l, ok := vault.LeaseOf(resp.Body)
		if ok && !s.remember(k, iss, resp, l) {
			// The pod was deleted while its mount was in flight: what it
			// was issued is revoked as its other leases were.
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), callTimeout)
			defer cancel()
			s.revoke(ctx, &entry{lease: l, tok: &token{vault: iss.Vault, target: iss.Target, role: iss.Role}})
		}
	})
}

// remembered is k's response if its lease is still usable; Vault is asked,
// so a lease revoked meanwhile is not served.
func (s *Store) remembered(ctx context.Context, k Key) (*vault.Response, bool, error) {
	s.mu.Lock()
	e, ok := s.lru.Get(k)
	if ok && !s.usable(e, s.now()) {
		s.lru.Remove(k)
		ok = false
	}
	s.mu.Unlock()
	if !ok {
		return nil, false, nil
	}
	l, err := e.tok.vault.LookupLease(ctx, e.lease.ID)
	switch {
	case refused(err):
		s.forget(k, e)
		s.dropped.Add(1)
		return nil, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("look up the remembered lease: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	e.end = now.Add(l.TTL)
	if !s.usable(e, now) {
		s.remove(k, e)
		return nil, false, nil
	}
	s.reused.Add(1)
	return e.resp, true, nil
}

// remember keeps resp under k. It returns false, keeping nothing, when k's
// pod was deleted meanwhile.
func (s *Store) remember(k Key, iss Issuer, resp *vault.Response, l vault.Lease) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if k.Pod != "" && s.gone.Contains(k.Pod) {
		return false
	}
	now := s.now()
	tok, ok := s.tokens[iss.Token]
	if !ok {
		tok = &token{vault: iss.Vault, target: iss.Target, role: iss.Role, ttl: iss.TTL, end: iss.Expires}
		if iss.Renewable && !iss.Expires.IsZero() {
			tok.renewAt = iss.Expires.Add(-iss.TTL / 3)
		}
		s.tokens[iss.Token] = tok
	}
	e := &entry{resp: resp, lease: l, end: now.Add(l.TTL), tok: tok}
	if l.Renewable {
		e.renewAt = now.Add(2 * l.TTL / 3)
	}
	if !s.usable(e, now) || resp.Size > s.maxBytes {
		return true // too short-lived to serve again, or too large to keep
	}
	s.lru.Remove(k) // replacing an entry does not tell the callback
	s.lru.Add(k, e)
	s.bytes += resp.Size
	for s.bytes > s.maxBytes {
		s.lru.RemoveOldest() // left to expire, as an evicted lease is
	}
	s.issued.Add(1)
	s.schedule(e.renewAt)
	s.schedule(tok.renewAt)
	return true
}

// schedule makes Run wake by t (zero: nothing to do). s.mu is held.
func (s *Store) schedule(t time.Time) {
	if t.IsZero() || (!s.next.IsZero() && !t.Before(s.next)) {
		return
	}
	s.next = t
	select {
	case s.wake <- struct{}{}:
	default: // Run is already told
	}
}

// untilNext is how long Run may sleep.
func (s *Store) untilNext() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := checkEvery
	if !s.next.IsZero() {
		d = min(d, s.next.Sub(s.now()))
	}
	return max(d, minWait)
}

// forget drops k if it still holds e.
func (s *Store) forget(k Key, e *entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.remove(k, e)
}

func (s *Store) remove(k Key, e *entry) {
	if cur, ok := s.lru.Peek(k); ok && cur == e {
		s.lru.Remove(k)
	}
}

// usable reports whether e may be served at now: it ends (with its token)
// later than a margin of a fifth of its TTL, at most five minutes, so a pod
// is not handed credentials about to die.
func (s *Store) usable(e *entry, now time.Time) bool {
	end := e.end
	if !e.tok.end.IsZero() && e.tok.end.Before(end) {
		end = e.tok.end
	}
	return now.Before(end.Add(-min(e.lease.TTL/5, 5*time.Minute)))
}

// RevokePod forgets the leases remembered for a deleted pod (scope pod
// only: shared leases are never revoked for one pod), so they are never
// renewed again, revokes them, and returns how many Vault revoked. The pod
// is remembered as deleted, so a lease its mount stores later is revoked
// too. A revocation that fails is logged; that lease then ends with its TTL.
func (s *Store) RevokePod(ctx context.Context, uid string) int {
	var gone []*entry
	s.mu.Lock()
	s.gone.Add(uid, struct{}{})
	for _, k := range s.lru.Keys() {
		if k.Pod == uid {
			e, _ := s.lru.Peek(k)
			gone = append(gone, e)
			s.lru.Remove(k)
		}
	}
	s.mu.Unlock()
	revoked := 0
	for _, e := range gone {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		if s.revoke(cctx, e) {
			revoked++
		}
		cancel()
	}
	return revoked
}

// revoke revokes e's lease and reports whether Vault did. A role whose
// policy does not allow it is warned of once, not once per pod.
func (s *Store) revoke(ctx context.Context, e *entry) (ok bool) {
	var err error
	func() {
		defer panics.Recover(ctx, s.log, "revoking a deleted pod's lease", &err)
		err = e.tok.vault.RevokeLease(ctx, e.lease.ID)
	}()
	switch {
	case vault.Denied(err):
		s.mu.Lock()
		told, _ := s.warned.ContainsOrAdd(e.tok.target+"\x00"+e.tok.role, struct{}{})
		s.mu.Unlock()
		if !told {
			s.log.LogAttrs(ctx, slog.LevelWarn, "the role's policy does not allow update on sys/leases/revoke: deleted pods' dynamic secrets of this role end with their leases (said once per role)",
				slog.String("role", e.tok.role), slog.String("vault", e.tok.target), slog.String("path", leasePath(e.lease.ID)))
		}
	case err != nil:
		s.log.LogAttrs(ctx, slog.LevelWarn, "could not revoke a deleted pod's dynamic secret; it ends with its lease",
			slog.String("role", e.tok.role), slog.String("path", leasePath(e.lease.ID)), slog.String("error", err.Error()))
	default:
		s.revoked.Add(1)
		return true
	}
	return false
}

// Len is the number of remembered responses.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lru.Len()
}

// Run renews leases, and the tokens they depend on, until ctx ends; it
// returns once the renewals it started have.
func (s *Store) Run(ctx context.Context) {
	defer s.calls.Wait()
	t := time.NewTimer(s.untilNext())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-t.C:
			s.pass(ctx)
		}
		t.Reset(s.untilNext())
	}
}

// pass is renewDue, which a bug must not stop for good.
func (s *Store) pass(ctx context.Context) {
	defer panics.Recover(ctx, s.log, "the lease renewal pass", nil)
	s.renewDue(ctx)
}

// renewDue is one pass: it drops what is no longer usable, then starts
// renewing the tokens and leases that are due. It never waits for a
// renewal: each runs on its own, within its target's bound, and schedules
// what follows when it ends.
func (s *Store) renewDue(ctx context.Context) {
	type dueLease struct {
		k Key
		e *entry
	}
	var leases []dueLease
	tokens := map[*token]bool{} // those that some lease outlives
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	used := map[*token]bool{}
	s.next = time.Time{}
	for _, k := range s.lru.Keys() {
		e, _ := s.lru.Peek(k)
		if !s.usable(e, now) {
			s.lru.Remove(k)
			continue
		}
		used[e.tok] = true
		if !e.renewAt.IsZero() && !now.Before(e.renewAt) {
			leases = append(leases, dueLease{k, e})
		} else {
			s.schedule(e.renewAt)
		}
		if t := e.tok; !t.renewAt.IsZero() && !now.Before(t.renewAt) && t.end.Before(e.end) {
			tokens[t] = true
		} else if t.end.Before(e.end) {
			s.schedule(t.renewAt)
		}
	}
	for id, t := range s.tokens {
		if !used[t] {
			delete(s.tokens, id)
		}
	}
	for t := range tokens {
		s.start(ctx, t.target, &t.busy, func(ctx context.Context) { s.renewToken(ctx, t) })
	}
	for _, d := range leases {
		if d.e.tok.busy {
			// A lease renewal made with a token about to end would be
			// wasted: after the token's.
			s.schedule(now.Add(minWait))
			continue
		}
		s.start(ctx, d.e.tok.target, &d.e.busy, func(ctx context.Context) { s.renewLease(ctx, d.k, d.e) })
	}
}

// start runs renew in a goroutine of its own, with callTimeout, unless it is
// in flight already (busy) or the bounds are reached, when it is tried again
// shortly. s.mu is held.
func (s *Store) start(ctx context.Context, target string, busy *bool, renew func(context.Context)) {
	if *busy {
		return // its end schedules what follows
	}
	if s.running >= renewers || s.targets[target] >= perTarget {
		s.schedule(s.now().Add(minWait))
		return
	}
	*busy = true
	s.running++
	s.targets[target]++
	s.calls.Go(func() {
		defer func() {
			s.mu.Lock()
			*busy = false
			s.running--
			if s.targets[target]--; s.targets[target] == 0 {
				delete(s.targets, target)
			}
			s.mu.Unlock()
		}()
		ctx, cancel := context.WithTimeout(ctx, callTimeout)
		defer cancel()
		renew(ctx)
	})
}

// renewToken keeps a token alive that remembered leases would outlive. A
// refusal stops renewing it; its leases then end with it.
func (s *Store) renewToken(ctx context.Context, t *token) {
	var ttl time.Duration
	var err error
	func() {
		defer panics.Recover(ctx, s.log, "renewing the token of remembered leases", &err)
		ttl, err = t.vault.RenewToken(ctx, t.ttl)
	}()
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	switch {
	case refused(err):
		t.renewAt = time.Time{}
		s.log.LogAttrs(ctx, slog.LevelWarn, "Vault refused to renew the token of remembered dynamic secrets; they will be issued anew before it ends", slog.String("error", err.Error()))
	case err != nil:
		t.renewAt = now.Add(retryAfter)
	default:
		s.renewed.Add(1)
		t.end = now.Add(ttl)
		t.renewAt = now.Add(2 * ttl / 3)
		if ttl < t.ttl {
			t.renewAt = time.Time{} // the token's max TTL is reached
		}
	}
	s.schedule(t.renewAt)
}

// renewLease renews e's lease with its issuing token. A refusal forgets it:
// Vault no longer knows the lease, or no longer lets it live.
func (s *Store) renewLease(ctx context.Context, k Key, e *entry) {
	var l vault.Lease
	var err error
	func() {
		defer panics.Recover(ctx, s.log, "renewing a lease", &err)
		l, err = e.tok.vault.RenewLease(ctx, e.lease.ID, e.lease.TTL)
	}()
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	switch {
	case refused(err):
		s.remove(k, e)
		s.dropped.Add(1)
		s.log.LogAttrs(ctx, slog.LevelWarn, "Vault refused to renew a dynamic secret's lease; the next mount issues a new one",
			slog.String("path", leasePath(e.lease.ID)), slog.String("error", err.Error()))
	case err != nil:
		e.renewAt = now.Add(retryAfter)
	default:
		s.renewed.Add(1)
		e.end = now.Add(l.TTL)
		e.renewAt = now.Add(2 * l.TTL / 3)
		if !l.Renewable || l.TTL < e.lease.TTL {
			e.renewAt = time.Time{} // the lease's max TTL is reached
		}
	}
	s.schedule(e.renewAt)
}

// leasePath is a lease ID without its last segment, the part that names the
// lease itself (database/creds/app/<id> → database/creds/app): enough to
// say which secret, while the ID stays out of logs.
func leasePath(id string) string {
	if i := strings.LastIndexByte(id, '/'); i >= 0 {
		return id[:i]
	}
	return ""
}
