package provider

import (
	"context"
	"errors"
	"net/http"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/okevault/vault-csi-provider/internal/auth"
	"github.com/okevault/vault-csi-provider/internal/budget"
	"github.com/okevault/vault-csi-provider/internal/config"
	"github.com/okevault/vault-csi-provider/internal/vault"
)

var (
	// errMissingKey: the secret exists but has no such key.
	errMissingKey = errors.New("key not found")
	// errBadContent: the value does not decode with the object's encoding.
	errBadContent = errors.New("value does not match the encoding")
	// errUnfit: what Vault returned cannot be written the way the object
	// asks: a key that is not a file name, more keys or secrets than
	// maxObjects, a PEM format for a response without a certificate.
	errUnfit = errors.New("the secret does not fit the object")
)

// code maps an error from the mount pipeline to the gRPC code the driver
// and kubelet see. Only Unavailable is retried by the driver.
func code(err error) codes.Code {
	var (
		ce *config.Error
		ve *vault.Error
	)
	switch {
	case err == nil:
		return codes.OK
	case errors.As(err, &ce), errors.Is(err, errBadContent), errors.Is(err, errUnfit):
		return codes.InvalidArgument
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	case errors.Is(err, auth.ErrNoToken):
		return codes.FailedPrecondition
	case errors.Is(err, auth.ErrTokenRejected):
		return codes.PermissionDenied
	case errors.Is(err, errMissingKey):
		return codes.NotFound
	case errors.As(err, &ve) && ve.Op == "login" && ve.Status == http.StatusBadRequest:
		// Vault answers a login for a role it does not know (deleted, or
		// never made) with 400 "invalid role name": the pod is refused.
		return codes.PermissionDenied
	case errors.Is(err, errTooLarge), errors.Is(err, vault.ErrTooLarge), errors.Is(err, budget.ErrExhausted):
		return codes.ResourceExhausted
	case errors.Is(err, vault.ErrRedirect):
		// The operator's allowlist refuses where the server sent the
		// request: retrying gets the same redirect.
		return codes.PermissionDenied
	case errors.Is(err, errPodLookup):
		// Usually the apiserver is briefly unreachable: let the driver retry.
		return codes.Unavailable
	case errors.As(err, &ve):
		return vaultCode(ve.Status)
	}
	return codes.Internal
}

func vaultCode(statusCode int) codes.Code {
	switch {
	case statusCode == 0, statusCode == http.StatusTooManyRequests, statusCode == http.StatusPreconditionFailed, statusCode >= 500:
		// Unreachable, rate-limited, sealed, uninitialised, standby
		// without an active node: all pass, and the driver retries.
		return codes.Unavailable
	case statusCode == http.StatusForbidden, statusCode == http.StatusUnauthorized:
		return codes.PermissionDenied
	case statusCode == http.StatusNotFound:
		return codes.NotFound
	case statusCode == http.StatusBadRequest, statusCode == http.StatusMethodNotAllowed:
		return codes.InvalidArgument
	}
	return codes.Internal
}

// toStatus is the gRPC error for err. The message is err's text, which the
// pipeline keeps free of tokens and values: it ends up in pod events.
func toStatus(err error) error {
	return status.Error(code(err), err.Error())
}
