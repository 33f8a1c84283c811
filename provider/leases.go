package provider

import (
	"context"
	"crypto/sha256"
	"encoding/hex"

	"github.com/hashicorp/vault/api"

	"github.com/okevault/vault-csi-provider/internal/auth"
	"github.com/okevault/vault-csi-provider/internal/config"
	"github.com/okevault/vault-csi-provider/internal/leases"
	"github.com/okevault/vault-csi-provider/internal/redact"
	"github.com/okevault/vault-csi-provider/internal/vault"
)

// leaseKey is m's part of the lease store's keys: who shares, by the scope.
// The identity is the service account's even with -login-per-pod, whose
// keys change with every pod token. nil when nothing is remembered.
func (s *Server) leaseKey(m *config.Mount, jwt redact.Secret) *leases.Key {
	if s.opts.Leases == nil {
		return nil
	}
	identity, err := auth.IdentityKey(m, jwt, s.now(), false)
	if err != nil {
		return nil // the login identity was derived already; this cannot fail after it
	}
	scope := s.opts.LeaseScope
	if scope == leases.ScopeIdentity && s.jwtPerPod(m) {
		scope = leases.ScopePod // pods that may not share a login share no lease
	}
	k, ok := scope.Key(identity, m.Pod.UID)
	if !ok {
		return nil
	}
	return &k
}

// readLeased reads o, through the lease store when the mount has a key: a
// response that carries a lease is then served again until the lease can no
// longer be kept.
func (s *Server) readLeased(ctx context.Context, base *api.Client, sess *session, lg vault.Login, o config.Object) (*vault.Response, error) {
	read := func(ctx context.Context) (*vault.Response, error) { return s.read(ctx, base, sess, lg, o) }
	if sess.leases == nil {
		return read(ctx)
	}
	k := *sess.leases
	k.Request = o.RequestKey()
	digest := sha256.Sum256([]byte(lg.Token.Reveal()))
	iss := leases.Issuer{
		Vault:     leases.Client{Base: base, Token: lg.Token},
		Token:     hex.EncodeToString(digest[:]),
		TTL:       lg.TTL,
		Renewable: lg.Renewable,
		Expires:   lg.Expires,
		Target:    sess.target,
		Role:      sess.role,
	}
	return s.opts.Leases.Get(ctx, k, iss, read)
}
