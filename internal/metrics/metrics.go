// Package metrics is the provider's Prometheus registry. Labels are bounded
// sets (gRPC codes, operations, status classes): never a secret path, a role
// or a token.
package metrics

import (
	"errors"
	"net/http"
	"runtime"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/okevault/vault-csi-provider/internal/cache"
	"github.com/okevault/vault-csi-provider/internal/leases"
	"github.com/okevault/vault-csi-provider/internal/panics"
	"github.com/okevault/vault-csi-provider/internal/vault"
)

const namespace = "vault_csi_provider"

// Metrics records what the provider does. A nil *Metrics records nothing.
type Metrics struct {
	registry *prometheus.Registry
	mounts   *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inFlight prometheus.Gauge
	requests *prometheus.CounterVec
}

// New registers the provider's metrics, including the login cache's
// counters read from logins.
func New(version string, logins *cache.Logins) *Metrics {
	r := prometheus.NewRegistry()
	m := &Metrics{
		registry: r,
		mounts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "mounts_total",
			Help: "Mount requests by gRPC result code.",
		}, []string{"code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "mount_duration_seconds",
			Help:    "Time to answer a Mount request, by gRPC result code.",
			Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
		}, []string{"code"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "mounts_in_flight",
			Help: "Mount requests being answered.",
		}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "vault_requests_total",
			Help: "Requests to Vault by operation (login, read, write) and status class (2xx, 4xx, 5xx, error).",
		}, []string{"operation", "status"}),
	}
	stat := func(name, help string, pick func(cache.Stats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help},
			func() float64 { return float64(pick(logins.Stats())) })
	}
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "build_info", Help: "The provider's version and Go version.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
	})
	build.Set(1)
	r.MustRegister(m.mounts, m.duration, m.inFlight, m.requests, build,
		stat("login_cache_hits_total", "Mounts served by a cached Vault login.", func(s cache.Stats) uint64 { return s.Hits }),
		stat("login_cache_misses_total", "Mounts that needed a Vault login.", func(s cache.Stats) uint64 { return s.Misses }),
		stat("login_cache_evictions_total", "Cached logins dropped to stay within -cache-size.", func(s cache.Stats) uint64 { return s.Evictions }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: namespace, Name: "panics_total", Help: "Panics recovered: each failed only its own work (a mount, a shared call, a renewal, a deleted pod's revocation)."},
			func() float64 { return float64(panics.Count()) }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// WatchLeases registers the dynamic-secret store's counters (-dynamic-secrets-scope).
func (m *Metrics) WatchLeases(store *leases.Store) {
	if m == nil || store == nil {
		return
	}
	counter := func(name, help string, pick func(leases.Stats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help},
			func() float64 { return float64(pick(store.Stats())) })
	}
	m.registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: "dynamic_secrets_remembered", Help: "Dynamic secrets (responses with a lease) remembered now."},
			func() float64 { return float64(store.Stats().Remembered) }),
		counter("dynamic_secrets_reused_total", "Mounts served a remembered dynamic secret instead of issuing one.", func(s leases.Stats) uint64 { return s.Reused }),
		counter("dynamic_secrets_issued_total", "Dynamic secrets issued and remembered.", func(s leases.Stats) uint64 { return s.Issued }),
		counter("dynamic_secrets_renewals_total", "Leases and their tokens renewed in the background.", func(s leases.Stats) uint64 { return s.Renewed }),
		counter("dynamic_secrets_dropped_total", "Remembered dynamic secrets forgotten because Vault refused a renewal or no longer knew the lease.", func(s leases.Stats) uint64 { return s.Dropped }),
		counter("dynamic_secrets_revoked_total", "Dynamic secrets revoked because their pod was deleted (-revoke-on-pod-delete).", func(s leases.Stats) uint64 { return s.Revoked }),
	)
}

// MountStarted counts a mount in flight; call the returned func with the
// result code when it is answered.
func (m *Metrics) MountStarted() func(code string) {
	if m == nil {
		return func(string) {}
	}
	start := time.Now()
	m.inFlight.Inc()
	return func(code string) {
		m.inFlight.Dec()
		m.mounts.WithLabelValues(code).Inc()
		m.duration.WithLabelValues(code).Observe(time.Since(start).Seconds())
	}
}

// VaultRequest counts one request to Vault and its outcome.
func (m *Metrics) VaultRequest(operation string, err error) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(operation, statusClass(err)).Inc()
}

func statusClass(err error) string {
	if err == nil {
		return "2xx"
	}
	var ve *vault.Error
	if errors.As(err, &ve) && ve.Status > 0 {
		return strconv.Itoa(ve.Status/100) + "xx"
	}
	return "error"
}

// Handler serves the registry at /metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry})
}
