// Package e2e drives the whole chain as a cluster does: the real Secrets
// Store CSI Driver (called by a kubelet stand-in) → this provider, run as its
// own process → a real Vault whose Kubernetes auth checks each pod's token
// with TokenReview on a real kube-apiserver.
package e2e

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/okevault/vault-csi-provider/test/testbed"
)

// bed holds the parts shared by the package's tests.
var bed struct {
	once     sync.Once
	err      error
	dir      string
	kube     *testbed.Kube
	vault    *testbed.Vault
	driver   *testbed.Driver
	provider *testbed.Provider
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if bed.kube != nil || bed.vault != nil {
		if err := closeBed(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: close:", err)
			if code == 0 {
				code = 1
			}
		}
	}
	os.Exit(code)
}

func closeBed() error {
	var errs []error
	if bed.provider != nil {
		errs = append(errs, bed.provider.Close())
	}
	if bed.driver != nil {
		errs = append(errs, bed.driver.Close())
	}
	if bed.vault != nil {
		errs = append(errs, bed.vault.Close())
	}
	if bed.kube != nil {
		errs = append(errs, bed.kube.Close())
	}
	if bed.dir != "" {
		errs = append(errs, os.RemoveAll(bed.dir))
	}
	return errors.Join(errs...)
}

// shared starts, once, kube + Vault (seeded with the user's scenario) + the
// driver (tokenRequests audience vault, rotation every 2s, sync on) + the
// provider on the driver's providers directory.
func shared(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end: needs the real parts; skipped under -short")
	}
	bed.once.Do(func() { bed.err = startBed() })
	if bed.err != nil {
		t.Fatal(bed.err)
	}
	testbed.LogOnFailure(t, bed.kube, bed.vault, bed.driver, bed.provider)
}

func startBed() (err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if bed.dir, err = os.MkdirTemp("", "e2e-"); err != nil {
		return err
	}
	if bed.kube, err = testbed.NewKube(ctx, testbed.KubeOptions{}); err != nil {
		return err
	}
	if bed.vault, err = testbed.NewVault(ctx, testbed.VaultOptions{}); err != nil {
		return err
	}
	if err = bed.vault.SeedScenario(ctx, bed.kube); err != nil {
		return err
	}
	providers := filepath.Join(bed.dir, "providers")
	if err = os.MkdirAll(providers, 0o700); err != nil {
		return err
	}
	if bed.driver, err = testbed.NewDriver(ctx, bed.kube, testbed.DriverOptions{
		ProvidersDir:         providers,
		RotationPollInterval: rotationPoll,
		SyncSecrets:          true,
		TokenAudiences:       []string{"vault", "custom"},
	}); err != nil {
		return err
	}
	bed.provider, err = testbed.NewProvider(ctx, testbed.ProviderOptions{
		ProvidersDir: providers,
		Kube:         bed.kube,
		Args:         []string{"-vault-addr=" + bed.vault.Addr},
	})
	return err
}

// rotationPoll is the driver's --rotation-poll-interval in these tests.
const rotationPoll = 2 * time.Second
