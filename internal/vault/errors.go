package vault

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/hashicorp/vault/api"
)

// Error is a failed Vault call. Status is Vault's HTTP status, or 0 when no
// answer came (connection refused, timeout).
type Error struct {
	Op     string // "login" or the method, e.g. "GET"
	Path   string // the Vault API path, without /v1/
	Status int
	Msg    string
	Err    error
}

func (e *Error) Error() string {
	if e.Status == 0 {
		return fmt.Sprintf("vault %s %s: %s", e.Op, e.Path, e.Msg)
	}
	return fmt.Sprintf("vault %s %s: %d %s: %s", e.Op, e.Path, e.Status, http.StatusText(e.Status), e.Msg)
}

func (e *Error) Unwrap() error { return e.Err }

// Denied reports whether Vault refused the token or the login (403).
func Denied(err error) bool {
	var ve *Error
	return errors.As(err, &ve) && ve.Status == http.StatusForbidden
}

// NotFound reports whether Vault has nothing at the path (404), including a
// KV v2 secret whose version is deleted.
func NotFound(err error) bool {
	var ve *Error
	return errors.As(err, &ve) && ve.Status == http.StatusNotFound
}

// wrap turns an error from the api package into an *Error. Vault's error
// strings ("permission denied", "invalid role name") are kept; the request
// URL and body are not, since a body may hold a token.
func wrap(op, path string, err error) error {
	if err == nil {
		return nil
	}
	e := &Error{Op: op, Path: path, Err: err}
	var (
		re  *api.ResponseError
		cut *limitError
	)
	switch {
	case errors.As(err, &cut):
		e.Msg = cut.Error()
	case errors.Is(err, ErrRedirect):
		e.Msg = "the server redirected the request to an address this provider may not reach (-allowed-vault-addresses; without it, only the same scheme and host)"
	case errors.As(err, &re):
		e.Status = re.StatusCode
		e.Msg = summarize(re.Errors)
		if re.StatusCode == http.StatusNotFound && len(re.Errors) == 0 {
			e.Msg = "no secret at this path"
		}
	case headersTooLarge(err):
		e.Msg = fmt.Sprintf("the response's headers are larger than %d bytes", maxHeaderBytes)
		e.Err = fmt.Errorf("%w: %w", ErrTooLarge, err)
	case errors.Is(err, context.DeadlineExceeded):
		e.Msg = "deadline exceeded"
	case errors.Is(err, context.Canceled):
		e.Msg = "canceled"
	default:
		e.Msg = "unreachable: " + transportReason(err)
	}
	return e
}

func summarize(errs []string) string {
	if len(errs) == 0 {
		return "no error details"
	}
	s := strings.Join(errs, "; ")
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// headersTooLarge reports net/http's refusal of a response whose headers
// exceed the transport's MaxResponseHeaderBytes; net/http has no sentinel
// error for it, only this text.
func headersTooLarge(err error) bool {
	return err != nil && strings.Contains(err.Error(), "server response headers exceeded")
}

// transportReason keeps the last part of a transport error ("connection
// refused", "x509: ..."), dropping the wrapped URL.
func transportReason(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 && i+2 < len(s) {
		s = s[i+2:]
	}
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
