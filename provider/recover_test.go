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
)

func TestRecoverUnary(t *testing.T) {
	var logs bytes.Buffer
	intercept := RecoverUnary(slog.New(slog.NewJSONHandler(&logs, nil)))
	info := &grpc.UnaryServerInfo{FullMethod: "/v1alpha1.CSIDriverProvider/Mount"}

	resp, err := intercept(context.Background(), "secret-bearing request", info, func(context.Context, any) (any, error) {
		panic("boom")
	})
	if resp != nil || status.Code(err) != codes.Internal {
		t.Fatalf("after a panic: %v, %v; want no response and Internal", resp, err)
	}
	if !strings.Contains(logs.String(), "handler panicked") || strings.Contains(logs.String(), "secret-bearing request") {
		t.Errorf("log should report the panic without the request: %s", logs.String())
	}

	resp, err = intercept(context.Background(), nil, info, func(context.Context, any) (any, error) { return "ok", nil })
	if resp != "ok" || err != nil {
		t.Errorf("a normal call became %v, %v", resp, err)
	}
}
