package vault

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/okevault/vault-csi-provider/internal/redact"
)

// Lease is the lease a response carries: dynamic secrets (database, PKI
// with generate_lease, cloud credentials) have one; KV reads do not.
type Lease struct {
	ID        string
	TTL       time.Duration
	Renewable bool
}

// LeaseOf reads the lease from a response body; ok is false when it carries
// none (lease_id empty; KV's lease_duration is only a refresh hint).
func LeaseOf(body []byte) (_ Lease, ok bool) {
	var r struct {
		LeaseID       string `json:"lease_id"`
		LeaseDuration int64  `json:"lease_duration"`
		Renewable     bool   `json:"renewable"`
	}
	if json.Unmarshal(body, &r) != nil || r.LeaseID == "" {
		return Lease{}, false
	}
	return Lease{ID: r.LeaseID, TTL: time.Duration(r.LeaseDuration) * time.Second, Renewable: r.Renewable}, true
}

// RevokeLease ends a lease now (sys/leases/revoke), with token, whose
// policy must allow it: the default policy does not.
func RevokeLease(ctx context.Context, base *api.Client, token redact.Secret, id string) error {
	c, err := base.Clone()
	if err != nil {
		return err
	}
	c.SetToken(token.Reveal())
	// The body, not the URL, carries the ID, so it stays out of errors.
	return wrap(http.MethodPut, "sys/leases/revoke", c.Sys().RevokeWithContext(ctx, id))
}
