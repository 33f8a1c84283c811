package chaos

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestLoad sends 1,000 concurrent mounts (20 identities, 50 pods each)
// through the real socket, then a second pass as the driver's rotation
// would: zero errors, no new logins on the second pass, and the provider's
// goroutines back to their baseline afterwards. Peak RSS is reported.
// Run it with: make load (go test ./test/chaos/ -run TestLoad -v -args -load)
func TestLoad(t *testing.T) {
	if !*load {
		t.Skip("a measurement: run with -load")
	}
	shared(t)
	p := startProvider(t, "", "-mount-timeout=30s")
	pods := allPods(t, 1000/identities)
	all := flatten(pods)
	baseline := p.goroutines(t)
	before, err := bed.vault.AuditCount("auth/kubernetes/login")
	if err != nil {
		t.Fatal(err)
	}

	pass := func(name string) {
		start := time.Now()
		rs := p.storm(t.Context(), t, all)
		wall := time.Since(start)
		var failed int
		var slowest time.Duration
		for _, r := range rs {
			slowest = max(slowest, r.took)
			if r.err != nil {
				failed++
				if failed <= 3 {
					t.Errorf("%s: %v", name, r.err)
				}
			}
		}
		if failed > 0 {
			t.Errorf("%s: %d of %d mounts failed", name, failed, len(rs))
		}
		t.Logf("LOAD %s: %d mounts in %s, slowest %s, %d failed", name, len(rs), wall.Round(time.Millisecond), slowest.Round(time.Millisecond), failed)
	}
	pass("first pass")
	mid, err := bed.vault.AuditCount("auth/kubernetes/login")
	if err != nil {
		t.Fatal(err)
	}
	pass("second pass")
	after, err := bed.vault.AuditCount("auth/kubernetes/login")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("LOAD logins: first pass %d (one per identity: %d), second pass %d", mid-before, identities, after-mid)
	if mid-before > identities {
		t.Errorf("first pass: %d logins for %d identities", mid-before, identities)
	}
	if after != mid {
		t.Errorf("second pass: %d logins, want 0 (served from the login cache)", after-mid)
	}
	rss, err := peakRSS(p.PID())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("LOAD provider peak RSS: %s", rss)
	p.noLeak(t, baseline)
}

// peakRSS is the process's VmHWM from /proc.
func peakRSS(pid int) (string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}
