// Package seed runs the user's seed scenario on the bed's cluster the way
// docs/setup.md tells a user to: vault-oke-setup deploys the bank-vaults
// vault-operator and the etcd operator, which run from their images and
// bring up an HA Vault on etcd that bank-vaults initialises and unseals;
// setup configures it; the provider's chart is installed as documented and a
// pod started by kubelet mounts the seed's secret. Then the faults: the
// active Vault pod and an etcd member are deleted under load.
package seed

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/okevault/vault-csi-provider/test/testbed"
)

// The seed file's names (examples/setup/seed.yaml).
const (
	vaultNS   = "vault"
	vaultName = "vault"
	etcdName  = "vault-etcd"
	appNS     = "default"
	appSA     = "testapp"
)

var bed struct {
	once     sync.Once
	err      error
	cluster  *testbed.Cluster
	setupBin string // vault-oke-setup, built from this module
	chart    string // the vault-operator chart of the pinned module
	root     string // the module root: commands run there, as in the docs
	// stormRole: the failover load's role is in Vault; storm: its pods.
	stormRole bool
	storm     []gatedPod
}

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(testbed.RunThen(m, "seed: close", func() error {
		err := bed.cluster.Close()
		if bed.setupBin != "" {
			err = errors.Join(err, os.RemoveAll(filepath.Dir(bed.setupBin)))
		}
		return err
	}))
}

// shared starts the cluster once, with volumes for etcd's and Vault's
// claims, and builds the setup command.
func shared(t testing.TB) *testbed.Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a real cluster and the operators; skipped under -short")
	}
	bed.once.Do(func() { bed.err = start() })
	if bed.err != nil {
		if bed.cluster != nil {
			t.Log(bed.cluster.LogTail(60))
		}
		t.Fatalf("seed bed: %v", bed.err)
	}
	testbed.LogOnFailure(t, bed.cluster)
	return bed.cluster
}

func start() error {
	root, err := testbed.ModuleRoot()
	if err != nil {
		return err
	}
	bed.root = root
	// The build comes first, under a deadline of its own: with a cold Go
	// build cache (a fresh machine) it compiles helm and client-go for
	// minutes, which must not eat the cluster's start deadline (it did).
	buildCtx, cancelBuild := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancelBuild()
	binDir, err := os.MkdirTemp("", "seed-setup-")
	if err != nil {
		return err
	}
	bed.setupBin = filepath.Join(binDir, "vault-oke-setup")
	build := exec.CommandContext(buildCtx, "go", "build", "-o", bed.setupBin, "./cmd/vault-oke-setup")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build vault-oke-setup: %w\n%s", err, out)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c, err := testbed.NewCluster(ctx, testbed.ClusterOptions{})
	if err != nil {
		return err
	}
	bed.cluster = c
	// 3 etcd members and 3 Vault pods (Raft) claim one volume each.
	if err := c.AddVolumes(ctx, 8, "100Gi"); err != nil {
		return err
	}
	// The operator's chart from the module setup pins (the bed cannot reach
	// ghcr.io): what --operator-chart is for.
	list := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}", "github.com/bank-vaults/vault-operator")
	list.Dir = root
	out, err := list.Output()
	if err != nil {
		return fmt.Errorf("find the vault-operator module: %w", err)
	}
	bed.chart = filepath.Join(strings.TrimSpace(string(out)), "deploy", "charts", "vault-operator")
	if _, err := os.Stat(bed.chart); err != nil {
		return errors.Join(errors.New("vault-operator chart"), err)
	}
	return nil
}
