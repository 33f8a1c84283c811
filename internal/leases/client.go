package leases

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/okevault/vault-csi-provider/internal/redact"
	"github.com/okevault/vault-csi-provider/internal/vault"
)

// Vault is what the store needs of the client and token that issued a
// lease.
type Vault interface {
	// LookupLease returns the lease as Vault knows it now.
	LookupLease(ctx context.Context, id string) (vault.Lease, error)
	// RenewLease asks for increment more; the answer holds what Vault granted.
	RenewLease(ctx context.Context, id string, increment time.Duration) (vault.Lease, error)
	// RenewToken renews the issuing token and returns its new TTL.
	RenewToken(ctx context.Context, increment time.Duration) (time.Duration, error)
	// RevokeLease ends the lease now.
	RevokeLease(ctx context.Context, id string) error
}

// Client is Vault as a token sees it: the token that issued the leases.
type Client struct {
	Base  *api.Client
	Token redact.Secret
}

// LookupLease calls sys/leases/lookup, which the default policy allows.
func (c Client) LookupLease(ctx context.Context, id string) (vault.Lease, error) {
	r, err := vault.Do(ctx, c.Base, c.Token, vault.Request{Method: http.MethodPut, Path: "sys/leases/lookup", Args: map[string]any{"lease_id": id}})
	if err != nil {
		return vault.Lease{}, err
	}
	ttl, err := seconds(r.Data["ttl"])
	if err != nil {
		return vault.Lease{}, fmt.Errorf("sys/leases/lookup: ttl: %w", err)
	}
	renewable, _ := r.Data["renewable"].(bool)
	return vault.Lease{ID: id, TTL: ttl, Renewable: renewable}, nil
}

// RenewLease calls sys/leases/renew.
func (c Client) RenewLease(ctx context.Context, id string, increment time.Duration) (vault.Lease, error) {
	r, err := vault.Do(ctx, c.Base, c.Token, vault.Request{Method: http.MethodPut, Path: "sys/leases/renew", Args: map[string]any{"lease_id": id, "increment": int64(increment / time.Second)}})
	if err != nil {
		return vault.Lease{}, err
	}
	l, ok := vault.LeaseOf(r.Body)
	if !ok {
		return vault.Lease{}, errors.New("sys/leases/renew: the answer carries no lease")
	}
	return l, nil
}

// RenewToken calls auth/token/renew-self, which the default policy allows.
func (c Client) RenewToken(ctx context.Context, increment time.Duration) (time.Duration, error) {
	r, err := vault.Do(ctx, c.Base, c.Token, vault.Request{Method: http.MethodPut, Path: "auth/token/renew-self", Args: map[string]any{"increment": int64(increment / time.Second)}})
	if err != nil {
		return 0, err
	}
	var answer struct {
		Auth *struct {
			LeaseDuration int64 `json:"lease_duration"`
		} `json:"auth"`
	}
	if err := json.Unmarshal(r.Body, &answer); err != nil || answer.Auth == nil {
		return 0, errors.New("auth/token/renew-self: the answer carries no auth")
	}
	return time.Duration(answer.Auth.LeaseDuration) * time.Second, nil
}

// RevokeLease calls sys/leases/revoke, which the default policy does not
// allow: -revoke-on-pod-delete needs it in the role's policy.
func (c Client) RevokeLease(ctx context.Context, id string) error {
	return vault.RevokeLease(ctx, c.Base, c.Token, id)
}

// seconds reads a JSON number of seconds (vault.Do decodes with UseNumber).
func seconds(v any) (time.Duration, error) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, fmt.Errorf("%v is not a number", v)
	}
	s, err := n.Int64()
	if err != nil {
		return 0, err
	}
	return time.Duration(s) * time.Second, nil
}

// refused reports whether Vault answered no for good (4xx: unknown lease,
// revoked token, not renewable) rather than not answering (no reply, 5xx,
// 429), which is worth another try.
func refused(err error) bool {
	var ve *vault.Error
	return errors.As(err, &ve) && ve.Status >= 400 && ve.Status < 500 && ve.Status != http.StatusTooManyRequests
}
