package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	"github.com/okevault/vault-csi-provider/test/testbed"
)

const (
	phaseStorm = "storm"
	phaseFloor = "floor"
	// permission is what the driver sends: 0644 as JSON, decimal.
	permission = "420"
)

// progress reports the run's steps with the time since the start.
type progress struct {
	w     io.Writer
	start time.Time
}

func (p *progress) step(format string, args ...any) {
	_, _ = fmt.Fprintf(p.w, "[%6.1fs] %s\n", time.Since(p.start).Seconds(), fmt.Sprintf(format, args...))
}

// bench sets up the test bed for cfg, runs the phases and stops everything,
// also when ctx ends (Ctrl-C).
func bench(ctx context.Context, cfg Config, log io.Writer) (_ *Results, err error) {
	pr := &progress{w: log, start: time.Now()}
	res := &Results{Started: pr.start.UTC(), Config: cfg, Host: hostInfo()}
	p, err := newPlan(cfg)
	if err != nil {
		return nil, err
	}
	res.Plan = planInfo(cfg, p)

	work, err := os.MkdirTemp("", "vault-csi-bench-")
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, os.RemoveAll(work)) }()
	b := &bed{}
	defer func() {
		pr.step("stopping the test bed")
		err = errors.Join(err, b.Close())
	}()

	pr.step("starting etcd and kube-apiserver")
	if b.kube, err = testbed.NewKube(ctx, testbed.KubeOptions{}); err != nil {
		return nil, err
	}
	b.add(b.kube)
	pr.step("starting Vault")
	if b.vault, err = testbed.NewVault(ctx, testbed.VaultOptions{}); err != nil {
		return nil, err
	}
	b.add(b.vault)
	if b.audit, err = enableAudit(ctx, b.vault.Client, filepath.Join(work, "audit.log")); err != nil {
		return nil, err
	}
	pr.step("Vault: Kubernetes auth, %d roles and policies, %d KV v2 secrets", len(p.identities), len(p.secrets))
	if err := seedVault(ctx, b.vault, b.kube, p); err != nil {
		return nil, err
	}
	pr.step("Kubernetes: %d service accounts, %d pods and their tokens (audience %s)", len(p.identities), len(p.pods), audience)
	if err := createPods(ctx, b.kube, p, work); err != nil {
		return nil, err
	}

	socket := cfg.Socket
	switch {
	case socket != "":
		if socket, err = filepath.Abs(socket); err != nil {
			return nil, err
		}
		res.Provider.Started = "external"
		envPath, env, err := writeProviderKit(ctx, b, work)
		if err != nil {
			return nil, err
		}
		pr.step("test bed ready for the provider on %s (also in %s):\n%s", socket, envPath, env)
		pr.step("waiting up to %s for the provider to answer Version", cfg.SocketWait)
	case cfg.ProviderBin != "":
		res.Provider.Started = cfg.ProviderBin
	default:
		res.Provider.Started = "built from this repository"
	}
	if cfg.Socket == "" {
		pr.step("starting the provider (%s)", res.Provider.Started)
		if b.provider, err = startProvider(ctx, b, cfg.ProviderBin, strings.Fields(cfg.ProviderArgs), work); err != nil {
			return nil, err
		}
		b.add(b.provider)
		socket = b.provider.Socket
		cfg.PID = b.provider.PID()
	}
	res.Provider.Socket = socket
	conn, err := dial(socket)
	if err != nil {
		return nil, err
	}
	b.add(conn)
	client := v1alpha1.NewCSIDriverProviderClient(conn)
	v, err := waitVersion(ctx, client, cfg.SocketWait)
	if err != nil {
		return nil, err
	}
	res.Provider.Version, res.Provider.RuntimeName, res.Provider.RuntimeVersion = v.GetVersion(), v.GetRuntimeName(), v.GetRuntimeVersion()

	calls, err := mountCalls(p, b.vault.Addr, true, nil)
	if err != nil {
		return nil, err
	}
	pr.step("storm: %d mounts, %d in flight", len(calls), cfg.Concurrency)
	var last []outcome
	ph, err := withProc(cfg.PID, func() (Phase, error) {
		return b.measure(ctx, func() (Phase, error) {
			out, wall, err := runMounts(ctx, client, calls, cfg.Concurrency, cfg.MountTimeout)
			last = out
			return summarize(phaseStorm, len(calls), out, wall), err
		})
	})
	if err != nil {
		return nil, err
	}
	res.Phases = append(res.Phases, ph)

	for round := 1; round <= cfg.Rounds; round++ {
		// The rotation reconciler sends the object versions of the last mount.
		if calls, err = mountCalls(p, b.vault.Addr, false, last); err != nil {
			return nil, err
		}
		name := "rotation-" + strconv.Itoa(round)
		pr.step("%s: the same %d mounts, as the driver's rotation poll sends them", name, len(calls))
		ph, err := withProc(cfg.PID, func() (Phase, error) {
			return b.measure(ctx, func() (Phase, error) {
				out, wall, err := runMounts(ctx, client, calls, cfg.Concurrency, cfg.MountTimeout)
				last = out
				return summarize(name, len(calls), out, wall), err
			})
		})
		if err != nil {
			return nil, err
		}
		res.Phases = append(res.Phases, ph)
	}

	pr.step("floor: %d logins and %d reads with the Vault API, %d in flight", res.Plan.FloorLogins, res.Plan.FloorReads, cfg.Concurrency)
	ph, err = b.measure(ctx, func() (Phase, error) {
		out, wall, err := runFloor(ctx, b.vault.Addr, p, cfg.Concurrency)
		return summarize(phaseFloor, len(p.pods), out, wall), err
	})
	if err != nil {
		return nil, err
	}
	res.Phases = append(res.Phases, ph)

	if b.provider != nil && slices.ContainsFunc(res.Phases, func(ph Phase) bool { return len(ph.Errors) > 0 }) {
		pr.step("some mounts failed; the provider's log ends with:\n%s", b.provider.LogTail(20))
	}
	return res, nil
}

// measure runs a phase and adds what Vault's audit log and the apiserver's
// metrics counted meanwhile.
func (b *bed) measure(ctx context.Context, run func() (Phase, error)) (Phase, error) {
	off, err := b.audit.offset()
	if err != nil {
		return Phase{}, err
	}
	before, berr := apiserverRequests(ctx, b.kube.Client)
	ph, err := run()
	if err != nil {
		return Phase{}, err
	}
	if ph.Vault, err = b.audit.countSince(off); err != nil {
		return Phase{}, err
	}
	after, aerr := apiserverRequests(ctx, b.kube.Client)
	if berr == nil && aerr == nil {
		ph.APIServer = delta(before, after)
		n := ph.APIServer["tokenreviews"]
		ph.TokenReviews = &n
	}
	return ph, nil
}

// mountCalls builds the Mount requests of one pass: as NodePublishVolume
// sends them (publish), or as the rotation reconciler does, with the object
// versions of the previous pass (prev, by pod).
func mountCalls(p *plan, vaultAddr string, publish bool, prev []outcome) ([]mountCall, error) {
	params := make(map[*identity]map[string]string, len(p.identities))
	wants := make(map[*identity]map[string]string, len(p.identities))
	for _, id := range p.identities {
		var err error
		if params[id], err = id.classParameters(vaultAddr); err != nil {
			return nil, err
		}
		wants[id] = p.want(id)
	}
	calls := make([]mountCall, len(p.pods))
	for i, pd := range p.pods {
		attrs, err := pd.attributes(params[pd.id], publish)
		if err != nil {
			return nil, err
		}
		req := &v1alpha1.MountRequest{Attributes: attrs, TargetPath: pd.targetPath, Permission: permission}
		if publish {
			req.Secrets = "null" // kubelet sends no nodePublishSecretRef secrets: a nil map
		} else {
			req.Secrets = "{}"
			if prev != nil {
				req.CurrentObjectVersion = prev[i].resp.GetObjectVersion()
			}
		}
		calls[i] = mountCall{pod: pd, req: req, want: wants[pd.id]}
	}
	return calls, nil
}
