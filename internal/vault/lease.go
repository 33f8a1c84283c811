package vault

import (
	"encoding/json"
	"time"
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
