package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Results are what a run measured; -json writes them as JSON.
type Results struct {
	Started  time.Time    `json:"started"`
	Config   Config       `json:"config"`
	Provider ProviderInfo `json:"provider"`
	Plan     PlanInfo     `json:"plan"`
	Host     HostInfo     `json:"host"`
	Phases   []Phase      `json:"phases"`
}

// ProviderInfo is the provider under test, as its Version RPC describes it.
type ProviderInfo struct {
	Socket         string `json:"socket"`
	Started        string `json:"started"` // "built from this repository", the -provider-bin path, or "external"
	Version        string `json:"version"`
	RuntimeName    string `json:"runtimeName"`
	RuntimeVersion string `json:"runtimeVersion"`
}

// PlanInfo summarises the workload and the Vault work it calls for.
type PlanInfo struct {
	ServiceAccounts int `json:"serviceAccounts"`
	Pods            int `json:"pods"`
	ObjectsPerMount int `json:"objectsPerMount"`
	// PathsPerMount is the distinct secret paths of one mount (per class;
	// every class has as many).
	PathsPerMount int `json:"pathsPerMount"`
	SharedSecrets int `json:"sharedSecrets"`
	OwnSecrets    int `json:"ownSecrets"`
	SecretBytes   int `json:"secretBytes"` // the values of one secret
	// FloorLogins and FloorReads are the least Vault work for one pass:
	// a login per identity, a read per distinct path per identity.
	FloorLogins int `json:"floorLogins"`
	FloorReads  int `json:"floorReads"`
	// MountReads is one pass's reads when every mount reads its distinct
	// paths once and nothing is shared across mounts.
	MountReads int `json:"mountReads"`
}

// HostInfo is where the run happened; every part shared these CPUs.
type HostInfo struct {
	GOOS      string `json:"goos"`
	GOARCH    string `json:"goarch"`
	CPUs      int    `json:"cpus"`
	GoVersion string `json:"goVersion"`
}

// Phase is one phase's measurements.
type Phase struct {
	Name string `json:"name"` // storm, rotation-N, floor
	// Mounts is the pods served: the Mount calls sent, or, for the floor, the
	// pods whose objects its requests fetch.
	Mounts int `json:"mounts"`
	// Calls is the calls timed: Mount calls, or the floor's Vault requests.
	Calls int `json:"calls"`
	// Errors counts failed calls by gRPC code ("provider:<code>" for an error
	// in MountResponse, "BadResponse" for wrong files; HTTP status for the floor).
	Errors map[string]int `json:"errors"`
	// ErrorSamples is the message of the first error of each code.
	ErrorSamples    map[string]string `json:"errorSamples,omitempty"`
	WallSeconds     float64           `json:"wallSeconds"`
	MountsPerSecond float64           `json:"mountsPerSecond"`
	// Latency is of one call: a Mount, or one Vault request for the floor.
	Latency Latency `json:"latencyMs"`
	// Provider is the provider process's CPU and peak RSS (with -pid, or
	// when the bench started it); nil for the floor.
	Provider *ProcStats  `json:"provider,omitempty"`
	Vault    VaultCounts `json:"vault"`
	// TokenReviews is the apiserver's count of TokenReview requests, nil
	// when its /metrics could not be read.
	TokenReviews *int `json:"tokenReviews"`
	// APIServer is every apiserver request counted in the phase, by resource.
	APIServer map[string]int `json:"apiserverRequests,omitempty"`
}

// Latency percentiles in milliseconds (nearest rank).
type Latency struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P95  float64 `json:"p95"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

func hostInfo() HostInfo {
	return HostInfo{GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
}

func planInfo(cfg Config, p *plan) PlanInfo {
	info := PlanInfo{
		ServiceAccounts: cfg.ServiceAccounts,
		Pods:            cfg.Pods,
		ObjectsPerMount: cfg.Objects,
		PathsPerMount:   len(p.identities[0].paths),
		SharedSecrets:   cfg.Secrets,
		OwnSecrets:      cfg.ServiceAccounts,
		SecretBytes:     secretKeys * 2 * valueBytes,
		FloorLogins:     len(p.identities),
		FloorReads:      p.floorReads(),
		MountReads:      p.mountReads(),
	}
	return info
}

// summarize fills the call statistics of a phase from its outcomes.
func summarize(name string, mounts int, out []outcome, wall time.Duration) Phase {
	ph := Phase{Name: name, Mounts: mounts, Calls: len(out), Errors: map[string]int{}, ErrorSamples: map[string]string{}}
	ph.WallSeconds = wall.Seconds()
	if wall > 0 {
		ph.MountsPerSecond = float64(mounts) / wall.Seconds()
	}
	lat := make([]time.Duration, 0, len(out))
	for _, o := range out {
		lat = append(lat, o.latency)
		if o.code == "OK" {
			continue
		}
		ph.Errors[o.code]++
		if _, ok := ph.ErrorSamples[o.code]; !ok {
			ph.ErrorSamples[o.code] = truncate(o.detail, 300)
		}
	}
	ph.Latency = latency(lat)
	return ph
}

func latency(d []time.Duration) Latency {
	if len(d) == 0 {
		return Latency{}
	}
	slices.Sort(d)
	rank := func(q float64) float64 {
		i := max(int(math.Ceil(q*float64(len(d))))-1, 0)
		return ms(d[i])
	}
	var sum time.Duration
	for _, v := range d {
		sum += v
	}
	return Latency{P50: rank(0.50), P90: rank(0.90), P95: rank(0.95), P99: rank(0.99), Max: ms(d[len(d)-1]), Mean: ms(sum / time.Duration(len(d)))}
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/float64(time.Microsecond)) / 1000 }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// errorCount is the phase's failed calls.
func (ph Phase) errorCount() int {
	n := 0
	for _, v := range ph.Errors {
		n += v
	}
	return n
}

// writeTable prints the results for a terminal.
func writeTable(w io.Writer, r *Results) error {
	var b strings.Builder
	pl := r.Plan
	fmt.Fprintf(&b, "provider: %s %s (%s, socket %s)\n", r.Provider.RuntimeName, r.Provider.RuntimeVersion, r.Provider.Started, r.Provider.Socket)
	fmt.Fprintf(&b, "workload: S=%d service accounts, P=%d pods, O=%d objects (%d paths) per mount, K=%d shared + %d own secrets of %d B, C=%d in flight; %d CPUs shared by every part\n",
		pl.ServiceAccounts, pl.Pods, pl.ObjectsPerMount, pl.PathsPerMount, pl.SharedSecrets, pl.OwnSecrets, pl.SecretBytes, r.Config.Concurrency, r.Host.CPUs)
	fmt.Fprintf(&b, "least Vault work per pass: %d logins (storm; 0 within the token TTL), %d reads; per-mount reads without sharing across pods: %d\n\n",
		pl.FloorLogins, pl.FloorReads, pl.MountReads)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	row := func(cells ...string) { _, _ = io.WriteString(tw, strings.Join(cells, "\t")+"\t\n") }
	row("phase", "mounts", "errors", "wall", "mounts/s", "p50", "p90", "p99", "max", "logins", "reads", "leases", "other", "tokenreviews", "cpu", "peak rss")
	for _, ph := range r.Phases {
		name := ph.Name
		if name == phaseFloor {
			name += " *"
		}
		tr := "?"
		if ph.TokenReviews != nil {
			tr = strconv.Itoa(*ph.TokenReviews)
		}
		cpu, rss := "-", "-"
		if ph.Provider != nil {
			cpu, rss = fmt.Sprintf("%.2fs", ph.Provider.CPUSeconds), fmt.Sprintf("%.0fMiB", ph.Provider.PeakRSSMiB)
		}
		row(name, strconv.Itoa(ph.Mounts), strconv.Itoa(ph.errorCount()),
			fmt.Sprintf("%.2fs", ph.WallSeconds), fmt.Sprintf("%.1f", ph.MountsPerSecond),
			fmt.Sprintf("%.1fms", ph.Latency.P50), fmt.Sprintf("%.1fms", ph.Latency.P90), fmt.Sprintf("%.1fms", ph.Latency.P99),
			fmt.Sprintf("%.1fms", ph.Latency.Max),
			strconv.Itoa(ph.Vault.Logins), strconv.Itoa(ph.Vault.Reads), strconv.Itoa(ph.Vault.Leases), strconv.Itoa(ph.Vault.Other), tr, cpu, rss)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	b.WriteString("* floor: the least Vault work for the storm, done directly with the Vault API; its latencies are of single Vault requests\n")
	if r.Config.Dynamic {
		fmt.Fprintf(&b, "leases: certificates issued from %s (generate_lease), one object of every class (-dynamic); the floor issues none, a rotation pass should issue 0\n", pkiIssue)
	}
	for _, ph := range r.Phases {
		if len(ph.Errors) == 0 {
			continue
		}
		keys := slices.Sorted(maps.Keys(ph.Errors))
		parts := make([]string, 0, len(keys))
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s=%d (%s)", k, ph.Errors[k], ph.ErrorSamples[k]))
		}
		fmt.Fprintf(&b, "%s errors: %s\n", ph.Name, strings.Join(parts, "; "))
	}
	for _, ph := range r.Phases {
		if ph.Vault.Other > 0 {
			fmt.Fprintf(&b, "%s other Vault requests: %v\n", ph.Name, ph.Vault.OtherPaths)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeJSON writes the results to path.
func writeJSON(path string, r *Results) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o600) //nolint:gosec // G703: -json names the file the user wants written
}
