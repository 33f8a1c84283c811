package provider

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/okevault/vault-csi-provider/internal/panics"
)

func TestRecoverUnary(t *testing.T) {
	var logs bytes.Buffer
	intercept := RecoverUnary(slog.New(slog.NewJSONHandler(&logs, nil)))
	info := &grpc.UnaryServerInfo{FullMethod: "/v1alpha1.CSIDriverProvider/Mount"}
	before := panics.Count()

	resp, err := intercept(context.Background(), "secret-bearing request", info, func(context.Context, any) (any, error) {
		panic("boom")
	})
	if resp != nil || status.Code(err) != codes.Internal {
		t.Fatalf("after a panic: %v, %v; want no response and Internal", resp, err)
	}
	if !strings.Contains(logs.String(), "panicked") || !strings.Contains(logs.String(), info.FullMethod) || strings.Contains(logs.String(), "secret-bearing request") {
		t.Errorf("log should report the panic and the method without the request: %s", logs.String())
	}
	if got := panics.Count() - before; got != 1 {
		t.Errorf("%d panics counted, want 1", got)
	}

	resp, err = intercept(context.Background(), nil, info, func(context.Context, any) (any, error) { return "ok", nil })
	if resp != "ok" || err != nil {
		t.Errorf("a normal call became %v, %v", resp, err)
	}
}
