package vault

import (
	"bytes"
	"context"
	"errors"
	"io"
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
	if errors.Is(err, ErrRedirect) || headersTooLarge(err) {
		return false, nil // asking again gets the same answer
	}
	if resp != nil {
		closeRedirectBody(resp)
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

// maxRedirectBody is what is kept of a redirect's body. The api package
// follows a redirect by its Location header and never reads or closes the
// body, so a server streaming one without end would keep the connection,
// and the transport's goroutine reading it, until the client's timeout.
// checkRetry sees every response before the api package does.
const maxRedirectBody = 4 << 10

// closeRedirectBody replaces a redirect's body by its first bytes (what the
// api package reads if it does not follow it) and closes the connection's
// stream at once.
func closeRedirectBody(resp *http.Response) {
	switch resp.StatusCode {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusTemporaryRedirect:
	default:
		return
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxRedirectBody))
	_ = resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(b))
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
