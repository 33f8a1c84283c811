// Package peer runs the public end-to-end suite of the provider this one
// replaces, hashicorp/vault-csi-provider v1.7.4 (test/bats/provider.bats and
// test/bats/configs/), against this provider on the cluster bed: a
// conformance test of the "drop-in replacement" claim.
//
// The suite's files are read at test time from the third-party archive
// (testbed.ThirdPartyDir, vault-csi-provider-v1.7.4.tar.gz), never copied
// into the project: its SecretProviderClasses, Vault policies, the nginx
// chart, the workload manifests, postgres.yaml and the creation statements
// are applied as the archive has them, each @test is a subtest of TestSuite
// asserting what the @test asserts, and setup()/teardown() run around each
// as in the bats file.
//
// Adaptations, each because the bed differs from the suite's kind cluster:
//
//   - Images: the workloads' nginx-unprivileged image is the bed's testapp
//     image (busybox: sleep, cat, stat; and a printenv of the bed's own,
//     test/tools/printenv, which Debian's busybox lacks), and postgres.yaml's
//     postgres:13-alpine is okevault.test/postgres:15, assembled from
//     Debian's PostgreSQL 15 (test/tools/build.sh); nothing is pulled. The
//     image is replaced in the YAML text, nothing else in those files.
//   - Driver: installed with its own chart (the bed's build, v1.6.0) into
//     namespace csi as the suite's Makefile does, syncSecret on and
//     rotation off as there, with the bed's kubelet root and never-pull
//     images; and tokenRequests for the audiences vault AND custom-audience:
//     the migration guide adds every class's audience to the driver's
//     tokenRequests, and this provider does not create tokens itself by
//     default (issue #20).
//   - Provider: this project's chart (not vault-helm's csi: values) in
//     namespace csi, with the suite's arguments through extraArgs
//     (-vault-addr=https://vault:8200 and the mTLS files) and the suite's
//     vault-client-tls Secret mounted at /mnt/tls through volumes.
//   - Vault: the suite's TLS Secrets come from its own vault chart
//     (configs/vault, installed with helm as the Makefile does), but Vault
//     itself is the bed's build as a pod vault-0 behind Service vault in
//     csi, a dev server (-dev-no-kv, root token "root") with the suite's TLS
//     listener (server cert, client CA) on 8200 instead of vault-helm's
//     standalone server with init/unseal; the test reaches it on its pod IP
//     with the suite's CA (server name vault). Its
//     configuration is written through the Vault API, call for call as the
//     bats setup() and setup_postgres do with the vault CLI in vault-0;
//     kubernetes_host is the kubernetes Service's IP, as
//     $KUBERNETES_PORT_443_TCP_ADDR is in the pod, and the JWT method's
//     oidc_discovery_ca_pem is the csi namespace's kube-root-ca.crt, the
//     file the suite names in the pod.
//   - helm uninstall waits (--wait) and case 11 then waits for the old
//     SecretProviderClassPodStatus to be gone, so reinstalling "nginx" does
//     not race the old pod; kubectl wait on a label selector is a poll until
//     the selected pods exist and are Ready.
//   - Vault Enterprise namespaces (case 9) are skipped as the suite skips
//     them without a license: the bed has no Vault Enterprise.
package peer

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/okevault/vault-csi-provider/test/testbed"
)

// archive is the peer's source archive in the third-party folder.
const archive = "vault-csi-provider-v1.7.4.tar.gz"

// bed holds the parts the cases share.
var bed struct {
	once    sync.Once
	err     error
	cluster *testbed.Cluster
	vault   *vaultapi.Client
	// suite is the archive's test/bats/ folder, by path below it.
	suite map[string][]byte
	// charts holds the suite's helm charts as adapted, written at test time
	// into the cluster's folder (Close removes it).
	charts string
}

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(testbed.RunThen(m, "peer: close", func() error { return bed.cluster.Close() }))
}

// shared starts, once: the cluster, the driver, the suite's TLS Secrets and
// Vault, and this provider, as the suite's Makefile e2e-setup does.
func shared(t *testing.T) *testbed.Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a real cluster; skipped under -short")
	}
	bed.once.Do(func() {
		// The provider's image build can take minutes with a cold Go cache.
		ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
		defer cancel()
		bed.err = start(ctx)
	})
	if bed.err != nil {
		if bed.cluster != nil {
			t.Log(bed.cluster.LogTail(60))
		}
		t.Fatalf("peer bed: %v", bed.err)
	}
	if bed.cluster == nil {
		t.Fatal(errors.New("peer bed: not started"))
	}
	testbed.LogOnFailure(t, bed.cluster)
	return bed.cluster
}

func start(ctx context.Context) error {
	var err error
	if bed.suite, err = testbed.ReadArchive(archive, "test/bats/"); err != nil {
		return err
	}
	begin := time.Now()
	c, err := testbed.NewCluster(ctx, testbed.ClusterOptions{})
	if err != nil {
		return err
	}
	bed.cluster = c
	fmt.Fprintf(os.Stderr, "peer: node Ready and DNS up in %s\n", time.Since(begin).Round(time.Second))
	if bed.charts, err = writeCharts(c.Dir); err != nil {
		return err
	}
	// e2e-setup-driver and e2e-setup-provider.
	if err := c.Apply(ctx, suiteFile("configs/cluster-resources.yaml")); err != nil {
		return err
	}
	if err := installDriver(ctx, c); err != nil {
		return err
	}
	if _, err := c.Helm(ctx, "install", "vault-bootstrap", bed.charts+"/vault", "--namespace="+csiNamespace); err != nil {
		return err
	}
	if bed.vault, err = installVault(ctx, c); err != nil {
		return err
	}
	if err := installProvider(ctx, c); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "peer: driver, Vault and provider installed in %s\n", time.Since(begin).Round(time.Second))
	return nil
}

// suiteFile is a file of the archive's test/bats/ folder; a missing one is
// a programming error (TestSuiteFiles checks the archive has them all).
func suiteFile(path string) []byte {
	b, ok := bed.suite[path]
	if !ok {
		panic("peer suite: no " + path + " in " + archive)
	}
	return b
}
