package vaultconfig

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	vaultapi "github.com/hashicorp/vault/api"
)

// TokenFunc returns a fresh service-account token for namespace/name with
// the given audience (the TokenRequest API). A nil error with an empty token
// is not allowed.
type TokenFunc func(ctx context.Context, namespace, name, audience string) (string, error)

// Probe is what Verify checks for one role.
type Probe struct {
	AuthPath       string // e.g. "kubernetes"
	Role           string
	Namespace      string // the service account that logs in
	ServiceAccount string
	Audience       string
	Policies       []string // must be attached to the token
	Read           []string // API paths the role must be able to read
	DeniedWrite    []string // API paths the role must not be able to write
	// Outsider is a service account (namespace/name) not bound to the role;
	// its login must fail. Empty: no such check.
	OutsiderNamespace, Outsider string
}

// Check is one line of the verify table.
type Check struct {
	Role   string
	Check  string
	Pass   bool
	Skip   bool
	Detail string
}

// Verify logs in as each probe's service account and checks what it may do.
// Errors of individual checks are in the result; the error return is for
// nothing to check at all.
func Verify(ctx context.Context, base *vaultapi.Client, token TokenFunc, probes []Probe) ([]Check, error) {
	if len(probes) == 0 {
		return nil, errors.New("no roles to verify")
	}
	var out []Check
	for _, pr := range probes {
		out = append(out, verifyOne(ctx, base, token, pr)...)
	}
	return out, nil
}

func verifyOne(ctx context.Context, base *vaultapi.Client, token TokenFunc, pr Probe) []Check {
	role := pr.AuthPath + "/" + pr.Role
	who := pr.Namespace + "/" + pr.ServiceAccount
	login := Check{Role: role, Check: "login as " + who}
	c, err := loginAs(ctx, base, token, pr, pr.Namespace, pr.ServiceAccount)
	if err != nil {
		login.Detail = err.Error()
		return []Check{login}
	}
	login.Pass = true
	out := []Check{login}

	pol := Check{Role: role, Check: "policies " + strings.Join(pr.Policies, ",")}
	if self, err := c.Auth().Token().LookupSelfWithContext(ctx); err != nil {
		pol.Detail = "lookup-self: " + err.Error()
	} else {
		got, _ := self.TokenPolicies()
		var missing []string
		for _, p := range pr.Policies {
			if !slices.Contains(got, p) {
				missing = append(missing, p)
			}
		}
		pol.Pass = len(missing) == 0
		if !pol.Pass {
			pol.Detail = fmt.Sprintf("missing %s (token has %s)", strings.Join(missing, ","), strings.Join(got, ","))
		}
	}
	out = append(out, pol)

	for _, path := range pr.Read {
		ch := Check{Role: role, Check: "read " + path}
		s, err := c.Logical().ReadWithContext(ctx, path)
		switch {
		case err != nil:
			ch.Detail = err.Error()
		case s == nil:
			ch.Detail = "not found"
		default:
			ch.Pass = true
		}
		out = append(out, ch)
	}
	for _, path := range pr.DeniedWrite {
		out = append(out, deniedWrite(ctx, base, c.Token(), role, path))
	}
	if pr.Outsider != "" {
		ch := Check{Role: role, Check: "login as " + pr.OutsiderNamespace + "/" + pr.Outsider + " denied"}
		_, err := loginAs(ctx, base, token, pr, pr.OutsiderNamespace, pr.Outsider)
		var tokErr *tokenError
		switch {
		case errors.As(err, &tokErr):
			ch.Skip, ch.Detail = true, err.Error()
		case err == nil:
			ch.Detail = "login succeeded"
		default:
			ch.Pass = isForbidden(err) || isBadRequest(err)
			if !ch.Pass {
				ch.Detail = err.Error()
			}
		}
		out = append(out, ch)
	}
	return out
}

// deniedWrite checks that the role's token may not write path by asking
// Vault for its capabilities there (sys/capabilities, with the base
// client's token), not by writing: the path may hold a real secret, which a
// wrongly allowed write would overwrite.
func deniedWrite(ctx context.Context, base *vaultapi.Client, token, role, path string) Check {
	ch := Check{Role: role, Check: "write " + path + " denied"}
	caps, err := base.Sys().CapabilitiesWithContext(ctx, token, path)
	switch {
	case err != nil:
		ch.Detail = err.Error()
	case slices.ContainsFunc(caps, func(c string) bool { return c == "create" || c == "update" || c == "patch" || c == "root" }):
		ch.Detail = "the token may write there (capabilities " + strings.Join(caps, ",") + ")"
	default:
		ch.Pass = true
	}
	return ch
}

// tokenError is a failure to get a service-account token, as opposed to
// Vault refusing the login.
type tokenError struct{ err error }

func (e *tokenError) Error() string { return "token request: " + e.err.Error() }
func (e *tokenError) Unwrap() error { return e.err }

// loginAs returns a client holding a Vault token of ns/sa for pr's role.
func loginAs(ctx context.Context, base *vaultapi.Client, token TokenFunc, pr Probe, ns, sa string) (*vaultapi.Client, error) {
	jwt, err := token(ctx, ns, sa, pr.Audience)
	if err != nil {
		return nil, &tokenError{err}
	}
	c, err := base.Clone()
	if err != nil {
		return nil, err
	}
	c.ClearToken()
	s, err := c.Logical().WriteWithContext(ctx, "auth/"+pr.AuthPath+"/login", map[string]any{"role": pr.Role, "jwt": jwt})
	if err != nil {
		return nil, fmt.Errorf("login: %w", err)
	}
	if s == nil || s.Auth == nil || s.Auth.ClientToken == "" {
		return nil, errors.New("login: no token in the response")
	}
	c.SetToken(s.Auth.ClientToken)
	return c, nil
}

func isForbidden(err error) bool {
	var re *vaultapi.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusForbidden
}

// isBadRequest: Vault's Kubernetes auth answers a service account that the
// role does not bind with 400 ("service account name not authorized"), not 403.
func isBadRequest(err error) bool {
	var re *vaultapi.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusBadRequest
}
