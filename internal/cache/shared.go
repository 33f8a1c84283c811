package cache

import (
	"context"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/okevault/vault-csi-provider/internal/panics"
)

// sharedTimeout bounds a call shared by several mounts (a login, a read)
// when the mount that starts it has no deadline.
const sharedTimeout = 30 * time.Second

// Shared runs fn once across concurrent callers with the same key, then
// keep stores its result; each caller stops waiting when its own ctx ends.
// Logins, reads and the lease store (internal/leases) go through it.
//
// fn runs detached from the starting mount's cancellation, so one cancelled
// mount does not fail the others waiting on it, but keeps that mount's
// deadline: against a Vault slower than the deadline, a call outliving it
// would only hold every mount that joins it until it ends, and delay
// recovery by as much once Vault is fast again.
func Shared[T any](ctx context.Context, g *singleflight.Group, key string, fn func(context.Context) (T, error), keep func(T)) (T, error) {
	v, _, err := share(ctx, g, key, fn, keep)
	return v, err
}

// share is Shared that also reports whether the result went to more than
// one caller.
func share[T any](ctx context.Context, g *singleflight.Group, key string, fn func(context.Context) (T, error), keep func(T)) (_ T, shared bool, _ error) {
	ch := g.DoChan(key, func() (_ any, err error) {
		// singleflight re-raises a panic in a goroutine of its own, which
		// nothing can recover: the process would end.
		defer panics.Recover(ctx, nil, "a call shared by mounts", &err)
		deadline, ok := ctx.Deadline()
		if !ok {
			deadline = time.Now().Add(sharedTimeout)
		}
		sctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
		defer cancel()
		v, err := fn(sctx)
		if err != nil {
			return nil, err
		}
		keep(v)
		return v, nil
	})
	var zero T
	select {
	case <-ctx.Done():
		return zero, false, ctx.Err()
	case r := <-ch:
		if r.Err != nil {
			return zero, r.Shared, r.Err
		}
		return r.Val.(T), r.Shared, nil
	}
}
