package chaos

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// allPods creates per pods of every service account.
func allPods(t *testing.T, per int) [][]*pod {
	out := make([][]*pod, identities)
	for i := range out {
		out[i] = newPods(t, sa(i), per)
	}
	return out
}

// warm mounts one pod of each identity, so every identity has a cached
// login, and returns the goroutine baseline after it.
func warm(t *testing.T, p *provider, pods [][]*pod) int {
	t.Helper()
	for _, ps := range pods {
		if r := p.mount(t.Context(), t, ps[0]); r.err != nil {
			t.Fatalf("warm-up mount: %v", r.err)
		}
	}
	return p.goroutines(t)
}

// flatten lists pods identity by identity.
func flatten(pods [][]*pod) []*pod {
	var out []*pod
	for _, ps := range pods {
		out = append(out, ps...)
	}
	return out
}

// expectCode fails unless every failed result has one of codes, each came
// back inside the provider's deadline, and reports how many failed.
func expectCode(t *testing.T, rs []result, codes ...string) (failed int) {
	t.Helper()
	for _, r := range rs {
		if r.took > mountTimeout+time.Second {
			t.Errorf("a mount took %s, past the %s deadline", r.took, mountTimeout)
		}
		if r.err == nil {
			continue
		}
		failed++
		code, msg := codeOf(r.err)
		if !contains(codes, code) {
			t.Errorf("code %s (%s), want one of %v", code, msg, codes)
		}
	}
	return failed
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// 1. Vault killed in the middle of a storm, then restarted and configured
// again: the storm's failures are Unavailable, and once Vault is back every
// identity's cached (now unknown) token is replaced by exactly one login.
func TestVaultKilledMidStorm(t *testing.T) {
	shared(t)
	p := startProvider(t, "")
	pods := allPods(t, 5)
	baseline := warm(t, p, pods)

	var during []result
	var mu sync.Mutex
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			rs := p.storm(t.Context(), t, flatten(pods))
			mu.Lock()
			during = append(during, rs...)
			mu.Unlock()
		}
	})
	time.Sleep(500 * time.Millisecond) // the storm is running
	if err := bed.vault.Kill(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * mountTimeout) // mounts keep coming while Vault is down
	close(stop)
	wg.Wait()
	failed := expectCode(t, during, "Unavailable")
	if failed == 0 {
		t.Fatal("no mount failed while Vault was down: the fault was not injected")
	}
	t.Logf("storm while Vault was killed: %d mounts, %d Unavailable", len(during), failed)

	if err := bed.vault.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := configure(t.Context()); err != nil {
		t.Fatal(err)
	}
	// configure enables the audit device again on the same file.
	before, err := bed.vault.AuditCount("auth/kubernetes/login")
	if err != nil {
		t.Fatal(err)
	}
	report(t, "vault restarted: first successful mount after it is configured", p.recover(t, pods[0][0], 30*time.Second))
	for i, r := range p.storm(t.Context(), t, flatten(pods)) {
		if r.err != nil {
			t.Errorf("mount %d after recovery: %v", i, r.err)
		}
	}
	after, err := bed.vault.AuditCount("auth/kubernetes/login")
	if err != nil {
		t.Fatal(err)
	}
	logins := after - before
	// The restarted Vault knows none of the cached tokens: each identity's
	// first read is a 403, answered by one new login per identity.
	if logins != identities {
		t.Errorf("logins on the restarted Vault: %d, want one per identity (%d)", logins, identities)
	}
	p.noLeak(t, baseline)
}

// 2. Vault sealed, then unsealed: Unavailable saying "sealed", then success.
func TestVaultSealed(t *testing.T) {
	shared(t)
	p := startProvider(t, "")
	pods := allPods(t, 1)
	baseline := warm(t, p, pods)

	if err := bed.vault.Seal(t.Context()); err != nil {
		t.Fatal(err)
	}
	unsealed := false
	t.Cleanup(func() {
		if !unsealed {
			_ = bed.vault.Unseal(context.Background())
		}
	})
	rs := p.storm(t.Context(), t, flatten(pods))
	if failed := expectCode(t, rs, "Unavailable"); failed != len(rs) {
		t.Fatalf("%d of %d mounts failed while Vault was sealed, want all", failed, len(rs))
	}
	if _, msg := codeOf(rs[0].err); !strings.Contains(msg, "sealed") {
		t.Errorf("message %q does not say Vault is sealed", msg)
	}
	t.Logf("sealed: mounts failed in %s (first)", rs[0].took.Round(time.Millisecond))

	if err := bed.vault.Unseal(t.Context()); err != nil {
		t.Fatal(err)
	}
	unsealed = true
	report(t, "vault unsealed: first successful mount", p.recover(t, pods[0][0], 30*time.Second))
	p.noLeak(t, baseline)
}

// 4. The provider's Vault tokens revoked behind its back: the next mount of
// each identity logs in again, once, and succeeds.
func TestTokenRevoked(t *testing.T) {
	shared(t)
	p := startProvider(t, "")
	pods := allPods(t, 2)
	baseline := warm(t, p, pods)

	accessors, err := tokenAccessors(t.Context(), bed.vault.Client)
	if err != nil {
		t.Fatal(err)
	}
	if len(accessors) < identities {
		t.Fatalf("found %d of the provider's tokens, want at least %d", len(accessors), identities)
	}
	for _, acc := range accessors {
		if _, err := bed.vault.Client.Logical().WriteWithContext(t.Context(), "auth/token/revoke-accessor", map[string]any{"accessor": acc}); err != nil {
			t.Fatal(err)
		}
	}
	before, err := bed.vault.AuditCount("auth/kubernetes/login")
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range p.storm(t.Context(), t, flatten(pods)) {
		if r.err != nil {
			t.Errorf("mount %d after revocation: %v", i, r.err)
		}
	}
	after, err := bed.vault.AuditCount("auth/kubernetes/login")
	if err != nil {
		t.Fatal(err)
	}
	if after-before != identities {
		t.Errorf("logins after revocation: %d, want one per identity (%d)", after-before, identities)
	}
	p.noLeak(t, baseline)
}

// 5a. The policy turned to deny: PermissionDenied at once (the cached token
// is retried with one fresh login, which is denied too), success once the
// policy is restored.
func TestPolicyDenied(t *testing.T) {
	shared(t)
	p := startProvider(t, "")
	pods := allPods(t, 1)
	baseline := warm(t, p, pods)

	put := func(rules string) {
		t.Helper()
		if err := bed.vault.Client.Sys().PutPolicyWithContext(context.Background(), policy, rules); err != nil {
			t.Fatal(err)
		}
	}
	put(denyAll)
	t.Cleanup(func() { put(readAll) })
	rs := p.storm(t.Context(), t, flatten(pods))
	if failed := expectCode(t, rs, "PermissionDenied"); failed != len(rs) {
		t.Fatalf("%d of %d mounts failed with the policy denying, want all", failed, len(rs))
	}
	put(readAll)
	report(t, "policy restored: first successful mount", p.recover(t, pods[0][0], 10*time.Second))
	p.noLeak(t, baseline)
}

// 5b. The role deleted: Vault still honours tokens it issued, so the cached
// login keeps working — but not past its TTL: once it would expire, the
// provider logs in again, which the deleted role refuses: PermissionDenied.
func TestRoleDeleted(t *testing.T) {
	shared(t)
	const ttl = 20 * time.Second
	name := sa(0)
	if err := putRole(t.Context(), name, ttl.String()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = putRole(context.Background(), name, "1h") })
	p := startProvider(t, "")
	pd := newPods(t, name, 1)[0]
	if r := p.mount(t.Context(), t, pd); r.err != nil {
		t.Fatal(r.err)
	}
	loggedIn := time.Now()
	if _, err := bed.vault.Client.Logical().DeleteWithContext(t.Context(), "auth/kubernetes/role/"+name); err != nil {
		t.Fatal(err)
	}
	var denied time.Duration
	for time.Since(loggedIn) < 2*ttl {
		r := p.mount(t.Context(), t, pd)
		if r.err != nil {
			code, msg := codeOf(r.err)
			if code != "PermissionDenied" {
				t.Fatalf("after the role's deletion: %s (%s), want PermissionDenied", code, msg)
			}
			denied = time.Since(loggedIn)
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if denied == 0 {
		t.Fatalf("mounts still succeed %s after the login, past its %s TTL", 2*ttl, ttl)
	}
	if denied > ttl {
		t.Errorf("the cached token was served for %s, past its %s TTL", denied, ttl)
	}
	report(t, "role deleted: cached token served until (token TTL 20s)", denied)
}

// 6. kube-apiserver down: Vault cannot review new tokens, so new identities
// fail with a clear code; identities with a cached login keep mounting. Once
// the apiserver is back, new identities log in again.
func TestAPIServerDown(t *testing.T) {
	shared(t)
	p := startProvider(t, "")
	pods := allPods(t, 1)
	// Identities 0..9 log in now; 10..19 will first try with the apiserver down.
	cached, fresh := pods[:identities/2], pods[identities/2:]
	baseline := warm(t, p, cached)
	// A fresh pod of a cached identity: its token is new, its login is not.
	cachedPods := flatten(cached)
	if err := bed.kube.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	started := false
	t.Cleanup(func() {
		if !started {
			_ = bed.kube.StartAPIServer(context.Background())
		}
	})
	for i, r := range p.storm(t.Context(), t, cachedPods) {
		if r.err != nil {
			t.Errorf("cached identity %d with the apiserver down: %v", i, r.err)
		}
	}
	rs := p.storm(t.Context(), t, flatten(fresh))
	if failed := expectCode(t, rs, "PermissionDenied", "Unavailable"); failed != len(rs) {
		t.Fatalf("%d of %d new identities failed with the apiserver down, want all", failed, len(rs))
	}
	code, msg := codeOf(rs[0].err)
	t.Logf("new identity with the apiserver down: %s: %s", code, msg)

	if err := bed.kube.StartAPIServer(t.Context()); err != nil {
		t.Fatal(err)
	}
	started = true
	report(t, "apiserver back: first successful login of a new identity", p.recover(t, fresh[0][0], 60*time.Second))
	p.noLeak(t, baseline)
}

// 8. The provider SIGTERMed under load: in-flight mounts finish, or fail
// cleanly, within the drain period; the process exits; a new provider on the
// same directory replaces the socket and serves at once.
func TestProviderRestartUnderLoad(t *testing.T) {
	shared(t)
	dir := t.TempDir()
	const drain = 3 * time.Second
	p := startProvider(t, dir, "-shutdown-timeout="+drain.String())
	pods := allPods(t, 5)
	warm(t, p, pods)

	var (
		rs   []result
		mu   sync.Mutex
		stop = make(chan struct{})
		wg   sync.WaitGroup
	)
	// Storms run back to back until the provider is gone, so SIGTERM lands
	// with mounts in flight.
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			out := p.storm(context.Background(), t, flatten(pods))
			mu.Lock()
			rs = append(rs, out...)
			mu.Unlock()
		}
	})
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	err := p.Terminate()
	stopped := time.Since(start)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("provider did not stop cleanly: %v", err)
	}
	if stopped > drain+2*time.Second {
		t.Errorf("provider took %s to stop, drain period %s", stopped, drain)
	}
	var ok int
	for _, r := range rs {
		if r.err == nil {
			ok++
			continue
		}
		if code, msg := codeOf(r.err); code != "Unavailable" && code != "Canceled" {
			t.Errorf("mount during shutdown: %s (%s), want success, Unavailable or Canceled", code, msg)
		}
	}
	if ok == 0 {
		t.Error("no in-flight mount completed during the drain")
	}
	if ok == len(rs) {
		t.Error("every mount succeeded: SIGTERM did not land under load")
	}
	t.Logf("SIGTERM under load: stopped in %s; %d of %d mounts succeeded, the rest failed cleanly", stopped.Round(time.Millisecond), ok, len(rs))

	restart := time.Now()
	q := startProvider(t, dir)
	q.recover(t, pods[0][0], 30*time.Second)
	report(t, "provider restarted on the same socket: process start to first successful mount", time.Since(restart))

	// Killed without a drain, the provider leaves its socket behind: the
	// next one must replace it rather than fail to listen.
	if err := q.Kill(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(q.Socket); err != nil {
		t.Fatalf("no stale socket after SIGKILL (%v): the case is not produced", err)
	}
	restart = time.Now()
	r := startProvider(t, dir)
	r.recover(t, pods[0][0], 30*time.Second)
	report(t, "provider restarted over a stale socket (after SIGKILL): process start to first successful mount", time.Since(restart))
}

// 3. A rate-limit quota on the secrets mount: 429s are retried after
// Retry-After while that fits the deadline, then Unavailable; each read is
// tried at most three times, so a thousand mounts cannot become a storm.
func TestRateLimited(t *testing.T) {
	shared(t)
	const rate = 2
	proxy := newCountingProxy(t, bed.vault.Addr, "/v1/secret/")
	p := startProvider(t, "", "-vault-addr="+proxy.URL)
	pods := allPods(t, 5)
	baseline := warm(t, p, pods)

	c := bed.vault.Client.Logical()
	if _, err := c.WriteWithContext(t.Context(), "sys/quotas/config", map[string]any{"enable_rate_limit_response_headers": true}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WriteWithContext(t.Context(), "sys/quotas/rate-limit/chaos", map[string]any{"path": "secret/", "rate": rate, "interval": "1s"}); err != nil {
		t.Fatal(err)
	}
	removed := false
	remove := func() {
		if !removed {
			_, _ = c.DeleteWithContext(context.Background(), "sys/quotas/rate-limit/chaos")
			removed = true
		}
	}
	t.Cleanup(remove)

	proxy.requests.Store(0)
	all := flatten(pods)
	rs := p.storm(t.Context(), t, all)
	failed := expectCode(t, rs, "Unavailable")
	ok := len(rs) - failed
	requests, limited := proxy.requests.Load(), proxy.limited.Load()
	t.Logf("rate limit %d/s: %d mounts, %d succeeded, %d Unavailable; Vault got %d reads, %d answered 429", rate, len(rs), ok, failed, requests, limited)
	if failed == 0 || limited == 0 {
		t.Fatal("the quota did not trip")
	}
	if _, msg := codeOf(firstErr(rs)); !strings.Contains(msg, "429") {
		t.Errorf("message %q does not say Vault rate-limited the request", msg)
	}
	// At most one read per mount (concurrent identical reads of one
	// identity are shared), each tried at most 3 times.
	if requests > int64(3*len(rs)) {
		t.Errorf("Vault got %d reads for %d mounts: more than 3 attempts each", requests, len(rs))
	}
	// More mounts succeeded than one window lets through: retries after
	// Retry-After got the later windows' tokens.
	if ok <= rate {
		t.Errorf("%d mounts succeeded, no more than the first window's %d: 429s were not retried", ok, rate)
	}

	remove()
	report(t, "rate limit lifted: first successful mount", p.recover(t, all[0], 10*time.Second))
	p.noLeak(t, baseline)
}

// 7. A slow Vault: the provider's deadline holds and the driver gets
// DeadlineExceeded, not a hang; once Vault is fast again mounts succeed.
func TestSlowVault(t *testing.T) {
	shared(t)
	proxy := newSlowProxy(t, bed.vault.Addr)
	p := startProvider(t, "", "-vault-addr="+proxy.Addr)
	pods := allPods(t, 1)
	baseline := warm(t, p, pods)

	proxy.setDelay(3 * mountTimeout)
	rs := p.storm(t.Context(), t, flatten(pods)[:5])
	if failed := expectCode(t, rs, "DeadlineExceeded"); failed != len(rs) {
		t.Fatalf("%d of %d mounts failed with Vault slower than the deadline, want all", failed, len(rs))
	}
	t.Logf("slow Vault: mounts ended after %s (deadline %s)", rs[0].took.Round(time.Millisecond), mountTimeout)
	proxy.setDelay(0)
	// A read in flight when Vault recovers ends by the deadline of the
	// mount that started it, so recovery takes at most one mount deadline.
	recovered := p.recover(t, pods[0][0], 3*mountTimeout)
	if recovered > mountTimeout+time.Second {
		t.Errorf("recovery took %s, more than one mount deadline (%s)", recovered, mountTimeout)
	}
	report(t, "vault fast again: first successful mount", recovered)
	p.noLeak(t, baseline)
}

// firstErr is the first failed result's error.
func firstErr(rs []result) error {
	for _, r := range rs {
		if r.err != nil {
			return r.err
		}
	}
	return nil
}

// 8b. Mounts that cannot finish within the drain period (Vault is slow) are
// cut at its end: the provider exits on time and the driver gets an error,
// not a hang.
func TestShutdownCutsSlowMounts(t *testing.T) {
	shared(t)
	const drain = time.Second
	proxy := newSlowProxy(t, bed.vault.Addr)
	p := startProvider(t, "", "-vault-addr="+proxy.Addr, "-shutdown-timeout="+drain.String())
	pods := allPods(t, 1)
	warm(t, p, pods)

	proxy.setDelay(3 * mountTimeout)
	done := make(chan []result)
	go func() { done <- p.storm(context.Background(), t, flatten(pods)[:5]) }()
	time.Sleep(500 * time.Millisecond) // the mounts wait on Vault
	start := time.Now()
	if err := p.Terminate(); err != nil {
		t.Fatalf("provider did not stop cleanly: %v", err)
	}
	stopped := time.Since(start)
	if stopped > drain+2*time.Second {
		t.Errorf("provider took %s to stop, drain period %s", stopped, drain)
	}
	for _, r := range <-done {
		if r.err == nil {
			t.Error("a mount succeeded although Vault answered after the provider stopped")
			continue
		}
		if code, msg := codeOf(r.err); code != "Unavailable" && code != "Canceled" {
			t.Errorf("mount cut by shutdown: %s (%s), want Unavailable or Canceled", code, msg)
		}
	}
	t.Logf("SIGTERM with mounts stuck on a slow Vault: stopped in %s (drain %s)", stopped.Round(time.Millisecond), drain)
}
