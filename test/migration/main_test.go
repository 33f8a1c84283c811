// Package migration switches a running cluster from the provider this one
// replaces, hashicorp/vault-csi-provider v1.7.4, to this provider and back,
// with the commands of docs/migration.md, while pods keep starting: the
// "drop-in" claim tried as a user would (issue #20).
//
// The bed is the cluster bed (test/testbed.Cluster): the driver v1.6.0
// installed with its own chart as csi-secrets-store in kube-system (audience
// vault, secret sync and rotation on), the bed's dev Vault in namespace
// vault with the scenario's role and secret (testbed.SeedScenario). The
// peer is built from its source archive by test/tools/build.sh (image
// okevault.test/peer-vault-csi-provider:1.7.4) and installed as its users
// do: vault-helm v0.34.1, read from the third-party archive at test time and
// written below the cluster's folder, release vault in namespace vault,
// server.enabled=false, injector.enabled=false, csi.enabled=true,
// csi.agent.enabled=false (its agent wants a Vault image the bed does not
// have), csi.image pointed at the bed's image with pullPolicy Never, and
// server.serviceAccount.create=false and server.authDelegator.enabled=false
// (the bed's Vault already has a service account "vault" in that namespace;
// with the server disabled the chart would still render one). The peer
// derives its address, http://vault.vault.svc:8200, from the release.
//
// The workload: a SecretProviderClass of the scenario (two keys of one KV v2
// secret) in namespace default, a Deployment "steady" of two pods that run
// through the whole test, and a Deployment "churn" that starts a new pod
// every two seconds (each tick deletes its oldest Ready pod, or, if none is
// Ready, scales it up by one, up to a bound).
//
// The commands are the doc's own: every fenced sh block of
// docs/migration.md that the test names by a line it contains (the class
// inventories, the namespace, the switch, the rollback), run with bash
// -eo pipefail as written, changing only chart references and paths: the
// chart hashicorp/vault is the extracted vault-helm folder and its example
// --version 0.29.1 is the installed 0.34.1 (helm ignores --version for a
// chart folder), charts/vault-csi-provider is this clone's chart, and
// my-values.yaml is a file the test writes as the doc's values mapping
// says: vault.address written out, the image the bed's (step 3, "the image
// is pullable").
//
// What it measures, through the switch and through the rollback: failed
// starts (a FailedMount event for the pod, or the pod not Ready within 60 s
// of its creation), FailedMount events, the longest start and the longest
// time in which no new pod became Ready (the gap), and the object versions
// in the SecretProviderClassPodStatus objects before, after the switch
// and after the rollback. It prints them as a summary; docs/migration.md
// quotes a run's figures.
package migration

import (
	"flag"
	"os"
	"sync"
	"testing"

	"github.com/okevault/vault-csi-provider/test/testbed"
)

// bed is the cluster the test starts, closed after the package's tests.
var bed struct {
	once    sync.Once
	err     error
	cluster *testbed.Cluster
}

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(testbed.RunThen(m, "migration: close", func() error { return bed.cluster.Close() }))
}
