// Command vault-oke-setup stands up and configures Vault on a Kubernetes
// cluster (first of all OKE) from a VaultSetup file: plan shows what would
// change, apply converges, verify logs in as the declared service accounts.
//
// Exit codes: 0 converged (or verify passed), 2 changes pending (plan, or
// --dry-run), 1 error.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
