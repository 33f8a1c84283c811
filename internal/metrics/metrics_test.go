package metrics

import (
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/okevault/vault-csi-provider/internal/cache"
	"github.com/okevault/vault-csi-provider/internal/leases"
	"github.com/okevault/vault-csi-provider/internal/redact"
	"github.com/okevault/vault-csi-provider/internal/vault"
)

func TestMetrics(t *testing.T) {
	logins, err := cache.New(10)
	if err != nil {
		t.Fatal(err)
	}
	m := New("v1.2.3", logins)
	store, err := leases.New(10, 64<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	m.WatchLeases(store)

	done := m.MountStarted()
	if got := testutil.ToFloat64(m.inFlight); got != 1 {
		t.Errorf("in flight = %v, want 1", got)
	}
	done("OK")
	m.MountStarted()("PermissionDenied")
	m.VaultRequest("login", nil)
	m.VaultRequest("read", &vault.Error{Status: 403})
	m.VaultRequest("read", &vault.Error{Status: 503})
	m.VaultRequest("read", errors.New("connection refused"))
	login := func(context.Context) (vault.Login, error) {
		return vault.Login{Token: redact.New("t"), TTL: time.Hour}, nil
	}
	_, _, _ = logins.Get(t.Context(), "id", login)
	_, _, _ = logins.Get(t.Context(), "id", login)

	for name, tc := range map[string]struct {
		got  float64
		want float64
	}{
		"mounts OK":       {testutil.ToFloat64(m.mounts.WithLabelValues("OK")), 1},
		"mounts denied":   {testutil.ToFloat64(m.mounts.WithLabelValues("PermissionDenied")), 1},
		"in flight after": {testutil.ToFloat64(m.inFlight), 0},
		"login 2xx":       {testutil.ToFloat64(m.requests.WithLabelValues("login", "2xx")), 1},
		"read 4xx":        {testutil.ToFloat64(m.requests.WithLabelValues("read", "4xx")), 1},
		"read 5xx":        {testutil.ToFloat64(m.requests.WithLabelValues("read", "5xx")), 1},
		"read error":      {testutil.ToFloat64(m.requests.WithLabelValues("read", "error")), 1},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %v, want %v", name, tc.got, tc.want)
		}
	}

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		"vault_csi_provider_login_cache_hits_total 1",
		"vault_csi_provider_login_cache_misses_total 1",
		`vault_csi_provider_build_info{goversion="`,
		`vault_csi_provider_mount_duration_seconds_count{code="OK"} 1`,
		"vault_csi_provider_dynamic_secrets_remembered 0",
		"vault_csi_provider_dynamic_secrets_reused_total 0",
		"vault_csi_provider_dynamic_secrets_issued_total 0",
		"vault_csi_provider_dynamic_secrets_renewals_total 0",
		"vault_csi_provider_dynamic_secrets_dropped_total 0",
		"vault_csi_provider_dynamic_secrets_revoked_total 0",
		"vault_csi_provider_panics_total 0",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	var nilMetrics *Metrics // a provider without -metrics-addr
	nilMetrics.MountStarted()("OK")
	nilMetrics.VaultRequest("read", nil)
	nilMetrics.WatchLeases(store)
}
