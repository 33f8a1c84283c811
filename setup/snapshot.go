package setup

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// errNotRaft: the setup's Vault keeps its data in etcd, which Vault cannot
// snapshot.
var errNotRaft = errors.New("the storage here is etcd, which Vault cannot snapshot: take an etcd snapshot (docs/setup.md, \"Backup and restore\")")

// Snapshot writes a snapshot of Vault's Raft storage to w
// (sys/storage/raft/snapshot), reaching Vault as configure does. The
// snapshot holds every secret and token encrypted with Vault's barrier key:
// it is useless without the unseal (or recovery) keys, and whoever has both
// has all of Vault.
func (r *Runner) Snapshot(ctx context.Context, w io.Writer) error {
	if d := r.Prepared.Deploy; d != nil && d.Vault.Raft == nil {
		return fmt.Errorf("snapshot: %w", errNotRaft)
	}
	if err := r.connect(ctx); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	if err := r.Vault.Sys().RaftSnapshotWithContext(ctx, w); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	return nil
}

// Restore replaces all of Vault's data with the snapshot read from rd
// (sys/storage/raft/snapshot, refused by Vault when the snapshot was taken
// with other unseal keys). Without yes it only says what it would do. A
// token this run generated is not in the snapshot: it is gone with the
// restore (its recorded accessor is forgotten by the next run).
func (r *Runner) Restore(ctx context.Context, rd io.Reader, yes bool) error {
	if d := r.Prepared.Deploy; d != nil && d.Vault.Raft == nil {
		return fmt.Errorf("restore: %w", errNotRaft)
	}
	if !yes {
		r.printf("restore: would replace all of Vault's data (secrets, policies, auth, tokens, leases) with the snapshot's; run again with --yes\n")
		return nil
	}
	if err := r.connect(ctx); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if err := r.Vault.Sys().RaftSnapshotRestoreWithContext(ctx, rd, false); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	r.printf("restore: Vault's data is the snapshot's; tokens and leases made since it was taken are gone, and those revoked since are back until their TTL ends\n")
	if r.root == nil {
		return nil
	}
	return r.revokeRestoredRoot(ctx)
}

// revokeRestoredRoot revokes the root token bank-vaults stored when the
// snapshot brought it back valid: it never expires. The run's own token is
// not in the snapshot; the stored one, or a new one, takes its place.
func (r *Runner) revokeRestoredRoot(ctx context.Context) error {
	r.root.token, r.root.generated, r.root.accessor = "", false, ""
	if err := r.connect(ctx); err != nil {
		return fmt.Errorf("restore: a token after the restore: %w", err)
	}
	if r.root.generated || !r.Prepared.RevokeRootToken {
		return nil
	}
	if err := r.root.revoke(ctx, r.Vault); err != nil {
		return fmt.Errorf("restore: revoke the root token the snapshot brought back: %w", err)
	}
	r.printf("restore: the snapshot brought back the root token bank-vaults stored in Secret %s/%s, valid: revoked it again\n", r.root.namespace, r.root.secret)
	return nil
}
