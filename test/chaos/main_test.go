// Package chaos injects the faults a node-wide secrets provider must
// survive — Vault crashed, sealed, rate-limited or slow, tokens revoked,
// rights withdrawn, the apiserver gone, the provider itself restarted under
// load — into the real parts of the test bed, and checks what the driver
// would see: the right gRPC code, fast, no partial files, and recovery
// within a measured bound once the fault ends.
//
// Each test starts its own provider process (built once) so its goroutines
// can be counted through pprof; Vault and the apiserver are shared and every
// test leaves them healthy.
package chaos

import (
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/okevault/vault-csi-provider/test/testbed"
)

// load runs TestLoad's 1,000 concurrent mounts; off by default, as it is a
// measurement rather than a check the suite needs every time.
var load = flag.Bool("load", false, "run the 1,000-mount load test")

// mountTimeout is the providers' -mount-timeout here: short, so that faults
// show their effect quickly, yet above Vault's two retries (~2.5 s).
const mountTimeout = 5 * time.Second

var bed struct {
	once  sync.Once
	err   error
	dir   string
	bin   string
	kube  *testbed.Kube
	vault *testbed.Vault
}

func TestMain(m *testing.M) {
	flag.Parse()
	goleak.VerifyTestMain(&closer{m})
}

// closer tears the shared bed down after the tests and before goleak looks.
type closer struct{ m *testing.M }

func (c *closer) Run() int {
	return testbed.RunThen(c.m, "chaos: close", func() error {
		errs := []error{bed.vault.Close(), bed.kube.Close()}
		if bed.dir != "" {
			errs = append(errs, os.RemoveAll(bed.dir))
		}
		return errors.Join(errs...)
	})
}

// shared starts kube and a configured Vault once, and builds the provider.
func shared(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("chaos: needs the real parts; skipped under -short")
	}
	bed.once.Do(func() { bed.err = startBed() })
	if bed.err != nil {
		t.Fatal(bed.err)
	}
	testbed.LogOnFailure(t, bed.kube, bed.vault)
}

func startBed() (err error) {
	// The provider is built here: with a cold Go build cache (a fresh
	// machine) that compiles for minutes on 2 cores.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	if bed.dir, err = os.MkdirTemp("", "chaos-"); err != nil {
		return err
	}
	if bed.bin, err = testbed.BuildProvider(ctx, bed.dir); err != nil {
		return err
	}
	if bed.kube, err = testbed.NewKube(ctx, testbed.KubeOptions{}); err != nil {
		return err
	}
	if bed.vault, err = testbed.NewVault(ctx, testbed.VaultOptions{Dir: filepath.Join(bed.dir, "vault")}); err != nil {
		return err
	}
	return configure(ctx)
}
