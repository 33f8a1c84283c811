package migration

import (
	"context"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/okevault/vault-csi-provider/test/testbed"
)

// phase is the churn pods created in [from, to): under the peer, from the
// switch's first command to the rollback's, and from then to the end.
type phase struct {
	name     string
	from, to time.Time
	// commands is how long the guide's commands of this phase took.
	commands time.Duration
	pods     int
	// failedStarts: pods with a FailedMount event, or not Ready within
	// startBound; failedMounts: their FailedMount events.
	failedStarts, failedMounts int
	neverReady                 int
	slowest                    time.Duration
	// gap is the longest time in the phase in which no churn pod became
	// Ready (a pod is started every churnEvery).
	gap time.Duration
	// noSocket is how long the providers' socket path was absent.
	noSocket time.Duration
	// sets counts the pods of each version set.
	sets map[string]int
}

type report struct {
	phases   []*phase
	versions [3]string // steady pods: under the peer, after the switch, after the rollback
	marks    map[string]time.Time
}

// report sorts the churn pods into phases and measures each.
func (ch *churn) report(t *testing.T, marks map[string]time.Time, switchTook, rollbackTook time.Duration) *report {
	t.Helper()
	ch.mu.Lock()
	defer ch.mu.Unlock()
	r := &report{marks: marks, phases: []*phase{
		{name: "under the peer", from: marks["start"], to: marks["switch"]},
		{name: "switch", from: marks["switch"], to: marks["rollback"], commands: switchTook},
		{name: "rollback", from: marks["rollback"], to: marks["end"], commands: rollbackTook},
	}}
	var readyTimes []time.Time
	for _, rec := range ch.pods {
		if !rec.ready.IsZero() {
			readyTimes = append(readyTimes, rec.ready)
		}
	}
	sort.Slice(readyTimes, func(i, j int) bool { return readyTimes[i].Before(readyTimes[j]) })
	for _, ph := range r.phases {
		ph.sets = map[string]int{}
		for _, rec := range ch.pods {
			// Creation times have second resolution: compare in seconds.
			if rec.created.Before(ph.from.Truncate(time.Second)) || !rec.created.Before(ph.to.Truncate(time.Second)) {
				continue
			}
			ph.pods++
			ph.sets[rec.versions]++
			took := rec.ready.Sub(rec.created)
			switch {
			case rec.ready.IsZero():
				ph.neverReady++
				ph.failedStarts++
			case rec.failed > 0 || took > startBound:
				ph.failedStarts++
			}
			ph.failedMounts += rec.failed
			if !rec.ready.IsZero() && took > ph.slowest {
				ph.slowest = took
			}
		}
		last := ph.from
		for _, at := range readyTimes {
			if at.Before(ph.from) {
				continue
			}
			if at.After(ph.to) {
				break
			}
			if d := at.Sub(last); d > ph.gap {
				ph.gap = d
			}
			last = at
		}
		if d := ph.to.Sub(last); d > ph.gap {
			ph.gap = d
		}
	}
	return r
}

// absences adds to each phase the time the socket was absent in it.
func (r *report) absences(gone [][2]time.Time) {
	for _, ph := range r.phases {
		for _, g := range gone {
			from, to := g[0], g[1]
			if from.Before(ph.from) {
				from = ph.from
			}
			if to.After(ph.to) {
				to = ph.to
			}
			if to.After(from) {
				ph.noSocket += to.Sub(from)
			}
		}
	}
}

// check asserts what the guide states: the commands work as written (they
// did, or the test stopped), every pod starts in the end, versions change
// once at the switch, are the same for every pod after it and stable.
func (r *report) check(t *testing.T) {
	t.Helper()
	peer, switched, back := r.versions[0], r.versions[1], r.versions[2]
	if peer == switched {
		t.Errorf("versions unchanged by the switch: %s", peer)
	}
	for _, ph := range r.phases {
		if ph.neverReady > 0 {
			t.Errorf("%s: %d of %d pods never became Ready", ph.name, ph.neverReady, ph.pods)
		}
	}
	// docs/migration.md states none: a mount waits for the socket (the
	// driver's gRPC calls wait for a ready connection, up to kubelet's 2
	// minutes), and the guide's commands leave it absent for seconds.
	for _, ph := range r.phases {
		if ph.failedStarts > 0 {
			t.Errorf("%s: %d failed starts of %d pods (%d FailedMount events, slowest start %s)",
				ph.name, ph.failedStarts, ph.pods, ph.failedMounts, ph.slowest)
		}
	}
	// Pods started well after the commands (their files from one provider
	// only) carry that provider's one version set.
	for i, want := range []string{peer, switched, back} {
		ph := r.phases[i]
		for set, n := range ph.sets {
			if set != want && set != r.versions[max(i-1, 0)] {
				t.Errorf("%s: %d pods have versions %q, neither the steady pods' before (%s) nor after (%s)",
					ph.name, n, set, r.versions[max(i-1, 0)], want)
			}
		}
	}
}

// summary is the figures as docs/migration.md quotes them.
func (r *report) summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "migration figures (a new pod every %s; failed start: a FailedMount event or not Ready within %s):\n", churnEvery, startBound)
	for _, ph := range r.phases {
		fmt.Fprintf(&b, "  %-15s %3d pods started, %d failed starts, %d FailedMount events, slowest start %s, longest time without a new pod Ready %s",
			ph.name+":", ph.pods, ph.failedStarts, ph.failedMounts, ph.slowest.Round(time.Second), ph.gap.Round(time.Second))
		if ph.commands > 0 {
			fmt.Fprintf(&b, "; the guide's commands took %s, the socket was absent for %s",
				ph.commands.Round(time.Second), ph.noSocket.Round(100*time.Millisecond))
		}
		fmt.Fprintf(&b, "; version sets (pods): %s\n", setCounts(ph.sets, r.versions))
	}
	fmt.Fprintf(&b, "  versions of the steady pods: under the peer %s; after the switch %s; after the rollback %s (same as under the peer: %t)\n",
		r.versions[0], r.versions[1], r.versions[2], r.versions[0] == r.versions[2])
	return b.String()
}

// kubectlQuiet runs the bed's kubectl for diagnostics, returning its
// output or the error as text.
func kubectlQuiet(c *testbed.Cluster, args ...string) string {
	bin, err := testbed.Bin("kubectl")
	if err != nil {
		return err.Error()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, append([]string{"--kubeconfig", c.KubeconfigPath}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("kubectl %s: %v: %s\n", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// setCounts names the version sets of a phase by whose they are.
func setCounts(sets map[string]int, steady [3]string) string {
	var parts []string
	for set, n := range sets {
		name := "other"
		switch set {
		case "":
			name = "none recorded"
		case steady[0]:
			name = "the peer's"
		case steady[1]:
			name = "this provider's"
		}
		parts = append(parts, fmt.Sprintf("%s %d", name, n))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}
