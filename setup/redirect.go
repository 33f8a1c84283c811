package setup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// A Vault standby that does not forward a request answers 307 with the
// active node's api_addr, and vault/api follows one redirect wherever it
// points, token included. Setup's client follows one only to an address
// setup chose: the same server, or, through a port-forward, another pod of
// the deployed Vault (followToPod).

// followFunc returns where to send a request that Vault redirected from
// "from" to "to", or refuses to follow.
type followFunc func(ctx context.Context, from, to *url.URL) (*url.URL, error)

// errNotChosen: a redirect to an address setup did not choose.
var errNotChosen = errors.New("not an address setup chose: not followed, and no token sent there")

// sameServer follows a redirect only to the scheme, host and port of the
// request.
func sameServer(_ context.Context, from, to *url.URL) (*url.URL, error) {
	if to.Scheme != from.Scheme || to.Host != from.Host {
		return nil, errNotChosen
	}
	return to, nil
}

// redirectGuard is the transport of setup's Vault client: a redirect is
// sent on where follow says, once, or is an error. vault/api then never
// sees a redirect to follow itself.
type redirectGuard struct {
	next   http.RoundTripper
	follow followFunc
}

func (g *redirectGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := g.next.RoundTrip(req)
	if err != nil || !isRedirect(resp.StatusCode) {
		return resp, err
	}
	loc, err := resp.Location()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
	_ = resp.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("vault at %s redirected: %w", req.URL.Host, err)
	}
	to, err := g.follow(req.Context(), req.URL, loc)
	if err != nil {
		return nil, fmt.Errorf("vault at %s redirected to %s: %w", req.URL.Host, loc.Redacted(), err)
	}
	again := req.Clone(req.Context())
	again.URL, again.Host = to, ""
	if req.GetBody != nil {
		if again.Body, err = req.GetBody(); err != nil {
			return nil, err
		}
	}
	resp, err = g.next.RoundTrip(again)
	if err == nil && isRedirect(resp.StatusCode) {
		_ = resp.Body.Close()
		return nil, fmt.Errorf("vault at %s redirected again: setup follows one redirect", to.Host)
	}
	return resp, err
}

// isRedirect: the codes vault/api would follow.
func isRedirect(code int) bool {
	return code == http.StatusMovedPermanently || code == http.StatusFound || code == http.StatusTemporaryRedirect
}
