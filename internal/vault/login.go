package vault

import (
	"context"
	"errors"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/okevault/vault-csi-provider/internal/redact"
)

// Login is a Vault token obtained for one identity.
type Login struct {
	Token     redact.Secret
	TTL       time.Duration // auth.lease_duration; 0 means no expiry
	Renewable bool
	// Expires is when the token ends unless renewed (zero: never). Leases
	// the token issues die with it, so the lease store bounds them by it.
	Expires time.Time
}

// LoginJWT logs in at auth/<mount>/login with {role, jwt}: the body both the
// Kubernetes and the JWT auth methods take. b is charged for the answer
// while it is read.
func LoginJWT(ctx context.Context, base *api.Client, mount, role string, jwt redact.Secret, b Budget) (Login, error) {
	path := "auth/" + mount + "/login"
	c, err := base.Clone()
	if err != nil {
		return Login{}, err
	}
	c.ClearToken()
	ch := &charge{b: b}
	defer ch.release()
	c = guard(c, maxLoginBody, ch)
	sent := time.Now()
	s, err := c.Logical().WriteWithContext(ctx, path, map[string]any{"role": role, "jwt": jwt.Reveal()})
	if err != nil {
		return Login{}, wrap("login", path, err)
	}
	if s == nil || s.Auth == nil || s.Auth.ClientToken == "" {
		return Login{}, &Error{Op: "login", Path: path, Msg: "response carries no token", Err: errors.New("no auth in login response")}
	}
	lg := Login{
		Token:     redact.New(s.Auth.ClientToken),
		TTL:       time.Duration(s.Auth.LeaseDuration) * time.Second,
		Renewable: s.Auth.Renewable,
	}
	if lg.TTL > 0 {
		// Counted from before the request, so never later than Vault's own
		// expiry.
		lg.Expires = sent.Add(lg.TTL)
	}
	return lg, nil
}
