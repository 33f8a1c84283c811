package vault

import (
	"context"
	"net/http"
	"testing"
	"time"
)

func TestCheckRetry(t *testing.T) {
	resp := func(status int, retryAfter string) *http.Response {
		r := &http.Response{StatusCode: status, Header: http.Header{}}
		if retryAfter != "" {
			r.Header.Set("Retry-After", retryAfter)
		}
		return r
	}
	within, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		resp *http.Response
		want bool
	}{
		{"rate limited, retry fits the deadline", within, resp(http.StatusTooManyRequests, "1"), true},
		{"rate limited, retry after the deadline", within, resp(http.StatusTooManyRequests, "60"), false},
		{"rate limited, no deadline", context.Background(), resp(http.StatusTooManyRequests, "60"), true},
		{"rate limited, unparseable Retry-After", within, resp(http.StatusTooManyRequests, "soon"), true},
		{"sealed", within, resp(http.StatusServiceUnavailable, ""), true},
		{"index not yet replicated", within, resp(http.StatusPreconditionFailed, ""), true},
		{"denied", within, resp(http.StatusForbidden, ""), false},
		{"not found", within, resp(http.StatusNotFound, ""), false},
		{"ok", within, resp(http.StatusOK, ""), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := checkRetry(tc.ctx, tc.resp, nil)
			if err != nil || got != tc.want {
				t.Errorf("checkRetry = %t, %v; want %t, nil", got, err, tc.want)
			}
		})
	}
}
