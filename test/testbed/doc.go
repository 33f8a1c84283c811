// Package testbed starts the real parts the provider works with — etcd and
// kube-apiserver, a Vault dev server, the Secrets Store CSI Driver — on
// 127.0.0.1 with free ports and temporary directories, for integration and
// end-to-end tests. The binaries come from `make testbin` (bin/ at the module
// root, or $OKEVAULT_TESTBIN). Under -short the Start helpers skip (the quick
// loop, make test-unit, has no real parts); otherwise a missing binary fails
// the test with the command that builds it.
//
// In a test:
//
//	kube := testbed.StartKube(t)
//	vault := testbed.StartVault(t)
//	if err := vault.SeedScenario(t.Context(), kube); err != nil { // secret/testapp, role testapp, ...
//		t.Fatal(err)
//	}
//	driver := testbed.StartDriver(t, kube, testbed.DriverOptions{ProvidersDir: dir})
//	pod, err := kube.CreatePod(t.Context(), "default", "app-0", "testapp")
//	// ... apply a SecretProviderClass, start the provider on dir/vault.sock ...
//	vol, err := driver.Publish(t.Context(), testbed.PublishRequest{Pod: pod, SecretProviderClass: "app"})
//	files, err := vol.Files()
//
// Each Start helper stops its part at cleanup and, when the test failed,
// logs the tail of the part's log. To share parts across a package's tests,
// call NewKube/NewVault/NewDriver from TestMain (after flag.Parse), Close
// them after m.Run, and call LogOnFailure(t, parts...) in each test.
//
// Driver.Publish plays kubelet: it requests pod-bound tokens for the
// CSIDriver's tokenRequests audiences and calls NodePublishVolume on the
// driver's socket; the driver (running as root) mounts a real tmpfs, calls
// the provider and writes the files. Driver.Close unpublishes what is left
// and unmounts any leftover, so no mount outlives the test.
//
// The parts run with the identities they have on a cluster: the driver uses
// its own service account and the RBAC of its deploy manifests; Vault's
// Kubernetes auth uses a reviewer service account bound to
// system:auth-delegator.
package testbed
