package provider

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/okevault/vault-csi-provider/internal/panics"
)

// RecoverUnary turns a panic in a handler into codes.Internal, so one bad
// request can never take down the daemon that serves every pod on the node.
// The request is not logged: it carries tokens. Goroutines a handler starts
// recover their own panics (internal/panics): this does not reach them.
func RecoverUnary(logger *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		defer func() {
			if errors.Is(err, panics.ErrPanic) {
				resp, err = nil, status.Error(codes.Internal, "internal error in the provider; see its log")
			}
		}()
		defer panics.Recover(ctx, logger, "the handler of "+info.FullMethod, &err)
		return handler(ctx, req)
	}
}
