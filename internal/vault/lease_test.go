package vault

import (
	"testing"
	"time"
)

func TestLeaseOf(t *testing.T) {
	for _, tt := range []struct {
		body string
		want Lease
		ok   bool
	}{
		{`{"lease_id":"database/creds/app/x","lease_duration":3600,"renewable":true,"data":{}}`, Lease{ID: "database/creds/app/x", TTL: time.Hour, Renewable: true}, true},
		{`{"lease_id":"","lease_duration":2764800,"data":{"k":"v"}}`, Lease{}, false}, // KV's refresh interval is no lease
		{`not json`, Lease{}, false},
	} {
		if got, ok := LeaseOf([]byte(tt.body)); got != tt.want || ok != tt.ok {
			t.Errorf("LeaseOf(%s) = %+v, %v; want %+v, %v", tt.body, got, ok, tt.want, tt.ok)
		}
	}
}
