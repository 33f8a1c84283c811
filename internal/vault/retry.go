package vault

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/hashicorp/vault/api"
)

// maxRetries is how many times one request is retried after a 5xx, a 412 or
// a 429: enough to ride out a leader election or a rate-limit window, few
// enough that a thousand mounts against a struggling Vault cannot multiply
// into a retry storm.
const maxRetries = 2

// checkRetry is Vault's default retry policy, except that a refused
// redirect is not retried, and a retry the server says not to make before
// the mount's deadline is not made: waiting out a Retry-After that ends after the deadline only turns a clear
// Unavailable ("429 rate limit quota exceeded") into a bare
// DeadlineExceeded.
func checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if errors.Is(err, ErrRedirect) {
		return false, nil // asking again gets the same answer
	}
	retry, err := api.DefaultRetryPolicy(ctx, resp, err)
	if !retry || err != nil || resp == nil {
		return retry, err
	}
	after, ok := retryAfter(resp.Header.Get("Retry-After"))
	if !ok {
		return true, nil
	}
	if deadline, has := ctx.Deadline(); has && time.Now().Add(after).After(deadline) {
		return false, nil
	}
	return true, nil
}

// retryAfter parses the delta-seconds form of Retry-After, the one Vault
// sends with 429s.
func retryAfter(v string) (time.Duration, bool) {
	s, err := strconv.Atoi(v)
	if err != nil || s < 0 {
		return 0, false
	}
	return time.Duration(s) * time.Second, true
}
