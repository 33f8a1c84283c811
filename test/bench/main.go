// Command bench is `make bench`: the performance benchmark of a Secrets Store
// CSI Driver provider for Vault. It starts a real kube-apiserver and Vault
// (test/testbed), creates S service accounts with a Vault role each and P
// pods with pod-bound tokens, and drives any v1alpha1 provider through its
// unix socket exactly as the driver does:
//
//   - storm: P Mount calls, as NodePublishVolume sends them, C in flight;
//   - rotation-N: the same P mounts again, as the rotation reconciler sends them;
//   - floor: the least Vault work for the storm (a login per service account,
//     a read per distinct path per service account), with the Vault API.
//
// Each phase reports wall time, mounts/s, latency percentiles, errors by gRPC
// code, and the logins and reads Vault's audit log counted, with the
// apiserver's TokenReview count. Without -socket it builds and starts this
// repository's provider; it never imports the provider's packages, so any
// provider (or version) can be compared on the same workload. See
// docs/benchmark.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second Ctrl-C ends the program at once; the parts die with it
	}()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
	case err != nil && ctx.Err() != nil:
		fmt.Fprintln(os.Stderr, "bench: interrupted:", err)
		os.Exit(130)
	case err != nil:
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// run parses args, runs the benchmark with progress on stderr, and prints
// the table on stdout (and the JSON to -json).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	res, err := bench(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	if err := writeTable(stdout, res); err != nil {
		return err
	}
	if cfg.Out != "" {
		if err := writeJSON(cfg.Out, res); err != nil {
			return err
		}
		_, _ = fmt.Fprintf(stderr, "results written to %s\n", cfg.Out)
	}
	return nil
}
