// Package panics keeps a panic in one piece of work (a mount's read, a
// login or read shared by several mounts, a lease renewal, a deleted pod's
// revocation) from taking down the daemon that serves every pod on the
// node. The work fails with ErrPanic instead; the panic is logged with its
// stack, never its value (which may hold a secret), and counted for the
// provider's metrics.
//
// Go's recover works only in the goroutine that panics, so every goroutine
// that runs such work defers Recover itself: the gRPC server's own recovery
// does not reach the goroutines a mount starts, and a panic in a
// singleflight call is re-raised in a goroutine of its own that nothing can
// recover.
package panics
