package provider

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/okevault/vault-csi-provider/internal/auth"
	"github.com/okevault/vault-csi-provider/internal/config"
	"github.com/okevault/vault-csi-provider/internal/vault"
)

func TestCode(t *testing.T) {
	vaultErr := func(status int) error {
		return fmt.Errorf("object %q: %w", "a", &vault.Error{Op: "GET", Path: "p", Status: status})
	}
	for _, tc := range []struct {
		name string
		err  error
		want codes.Code
	}{
		{"bad parameter", &config.Error{Param: "roleName", Reason: "required"}, codes.InvalidArgument},
		{"bad content", fmt.Errorf("object: %w", errBadContent), codes.InvalidArgument},
		{"missing key", fmt.Errorf("object: %w", errMissingKey), codes.NotFound},
		{"response too large", fmt.Errorf("x: %w", errTooLarge), codes.ResourceExhausted},
		{"vault response too large", &vault.Error{Op: "GET", Path: "p", Status: 200, Err: vault.ErrTooLarge}, codes.ResourceExhausted},
		{"pod unreadable", fmt.Errorf("x: %w", errPodLookup), codes.Unavailable},
		{"no token", fmt.Errorf("x: %w", auth.ErrNoToken), codes.FailedPrecondition},
		{"token of another SA", fmt.Errorf("x: %w", auth.ErrTokenRejected), codes.PermissionDenied},
		{"deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
		{"deadline inside a vault error", &vault.Error{Err: fmt.Errorf("Put: %w", context.DeadlineExceeded)}, codes.DeadlineExceeded},
		{"cancelled", context.Canceled, codes.Canceled},
		{"vault unreachable", vaultErr(0), codes.Unavailable},
		{"vault 403", vaultErr(403), codes.PermissionDenied},
		{"vault 401", vaultErr(401), codes.PermissionDenied},
		{"vault 404", vaultErr(404), codes.NotFound},
		{"vault 400", vaultErr(400), codes.InvalidArgument},
		{"vault 405", vaultErr(405), codes.InvalidArgument},
		{"login for an unknown role", &vault.Error{Op: "login", Path: "auth/kubernetes/login", Status: 400, Msg: `invalid role name "r"`}, codes.PermissionDenied},
		{"vault 412", vaultErr(412), codes.Unavailable},
		{"vault 429 rate limit", vaultErr(429), codes.Unavailable},
		{"vault 500", vaultErr(500), codes.Unavailable},
		{"vault 501 not initialised", vaultErr(501), codes.Unavailable},
		{"vault 503 sealed", vaultErr(503), codes.Unavailable},
		{"vault 418", vaultErr(418), codes.Internal},
		{"anything else", errors.New("boom"), codes.Internal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := code(tc.err); got != tc.want {
				t.Errorf("code(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}
