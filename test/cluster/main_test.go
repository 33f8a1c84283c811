// Package cluster proves the product the way users run it: a real
// single-node Kubernetes cluster (test/testbed.Cluster: kubelet, containerd,
// kube-proxy, CoreDNS), the Secrets Store CSI Driver installed with its own
// Helm chart, this project's chart installed with helm, Vault as a pod, and
// application pods started by kubelet that see their secrets as files.
package cluster

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/okevault/vault-csi-provider/test/testbed"
)

// rotationPoll is the driver's rotation poll interval on this bed.
const rotationPoll = 5 * time.Second

// bed holds the parts shared by the package's tests.
var bed struct {
	once    sync.Once
	err     error
	cluster *testbed.Cluster
	vault   *testbed.Vault
}

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(testbed.RunThen(m, "cluster: close", func() error { return bed.cluster.Close() }))
}

// shared starts, once: the cluster, Vault (seeded with the user's scenario),
// the driver's chart and this project's chart (metrics on).
func shared(t testing.TB) *testbed.Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a real cluster; skipped under -short")
	}
	bed.once.Do(func() {
		// InstallProvider builds the provider's image: with a cold Go build
		// cache (a fresh machine) that compiles for minutes on 2 cores.
		ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
		defer cancel()
		start := time.Now()
		c, err := testbed.NewCluster(ctx, testbed.ClusterOptions{})
		if err != nil {
			bed.err = err
			return
		}
		bed.cluster = c
		fmt.Fprintf(os.Stderr, "cluster: node Ready and DNS up in %s\n", time.Since(start).Round(time.Second))
		if bed.vault, err = c.InstallVault(ctx); err != nil {
			bed.err = err
			return
		}
		if err := bed.vault.SeedScenario(ctx, c.Kube); err != nil {
			bed.err = err
			return
		}
		if err := c.InstallDriver(ctx, rotationPoll); err != nil {
			bed.err = err
			return
		}
		if err := c.InstallProvider(ctx, providerSets()...); err != nil {
			bed.err = err
			return
		}
		fmt.Fprintf(os.Stderr, "cluster: Vault, driver and provider installed in %s\n", time.Since(start).Round(time.Second))
	})
	if bed.err != nil {
		if bed.cluster != nil {
			t.Log(bed.cluster.LogTail(60))
		}
		t.Fatalf("cluster bed: %v", bed.err)
	}
	if bed.cluster == nil {
		t.Fatal(errors.New("cluster bed: not started"))
	}
	testbed.LogOnFailure(t, bed.cluster)
	return bed.cluster
}

// providerSets are the suite's chart values: metrics on, and Vault's address
// and the slow proxy TestProviderDeletedMidMount names as the only Vault
// addresses a class may name.
func providerSets() []string {
	return []string{"metrics.enabled=true",
		"allowedVaultAddresses={" + testbed.VaultClusterAddr + ",http://" + slowProxyAddr + "}"}
}
