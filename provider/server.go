package provider

import (
	"context"
	"log/slog"
	"time"

	"golang.org/x/sync/semaphore"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	"github.com/okevault/vault-csi-provider/internal/auth"
	"github.com/okevault/vault-csi-provider/internal/budget"
	"github.com/okevault/vault-csi-provider/internal/cache"
	"github.com/okevault/vault-csi-provider/internal/config"
	"github.com/okevault/vault-csi-provider/internal/leases"
	"github.com/okevault/vault-csi-provider/internal/metrics"
	"github.com/okevault/vault-csi-provider/internal/vault"
)

// RuntimeName is what Version reports as the provider's runtime.
const RuntimeName = "vault-csi-provider"

// Keys supplies the HMAC key for object versions.
type Keys interface {
	Key(ctx context.Context) ([]byte, error)
}

// Options wire a Server.
type Options struct {
	Defaults config.Defaults
	Clients  *vault.Clients
	Logins   *cache.Logins
	// Reads shares GET responses between mounts of one identity; nil: none.
	Reads *cache.Reads
	// Leases remembers responses that carry a lease, so rotation polls get
	// the same dynamic secret; nil: every mount issues anew. Its Run must
	// be running for the leases to be renewed.
	Leases *leases.Store
	// LeaseScope says who shares a remembered lease (pod or identity).
	LeaseScope leases.Scope
	// Keys may be nil: object versions are then empty, as the peer does
	// when it can't have its key.
	Keys Keys
	// Tokens requests pod tokens when the driver sends none; nil disables
	// the fallback.
	Tokens *auth.TokenRequester
	Logger *slog.Logger
	// Metrics may be nil: nothing is recorded.
	Metrics *metrics.Metrics
	// Version is the build's version, reported by Version.
	Version string
	// LoginPerPod gives every pod its own Vault login instead of one per
	// service-account identity.
	LoginPerPod bool
	// ShareJWTLogins lets the pods of one service account share a JWT-auth
	// login (and read cache entries, and dynamic secrets of scope
	// identity), as they do under Kubernetes auth. Off: JWT roles can bind
	// claims of one pod (bound_claims, claim_mappings), so only roles that
	// bind nothing finer than the service account may share.
	ShareJWTLogins bool
	// Budget bounds the bytes all mounts hold together; nil: no bound.
	Budget *budget.Pool
	// MaxMountBytes bounds the bytes one mount holds: Vault's answers as
	// they arrive, their decoded form and the files made from them.
	MaxMountBytes int64
	// MountTimeout bounds a whole Mount, well inside kubelet's deadline.
	MountTimeout time.Duration
	// ReadConcurrency bounds the Vault requests one Mount has in flight.
	ReadConcurrency int
	// PodAttributes, when set, refuses parameters pods set through their
	// volumeAttributes other than the allowed ones; nil: pods may set any.
	PodAttributes *PodAttributes
	// MaxResponseSize is the largest MountResponse sent, in bytes; it must
	// match the driver's --max-call-recv-msg-size. 0: DefaultMaxResponseSize.
	MaxResponseSize int
}

// Server implements v1alpha1.CSIDriverProviderServer.
type Server struct {
	v1alpha1.UnimplementedCSIDriverProviderServer
	opts Options
	now  func() time.Time
	// parsing bounds what parses hold together (nil: no budget).
	parsing *semaphore.Weighted
}

// New returns a Server; opts.Clients and opts.Logins are required.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MountTimeout <= 0 {
		opts.MountTimeout = 30 * time.Second
	}
	if opts.ReadConcurrency <= 0 {
		opts.ReadConcurrency = 8
	}
	if opts.MaxResponseSize <= 0 {
		opts.MaxResponseSize = DefaultMaxResponseSize
	}
	srv := &Server{opts: opts, now: time.Now}
	if opts.Budget != nil {
		srv.parsing = semaphore.NewWeighted(opts.MaxMountBytes)
	}
	return srv
}

// Version answers the driver's health check.
func (s *Server) Version(context.Context, *v1alpha1.VersionRequest) (*v1alpha1.VersionResponse, error) {
	return &v1alpha1.VersionResponse{Version: "v1alpha1", RuntimeName: RuntimeName, RuntimeVersion: s.opts.Version}, nil
}

// Mount returns every object of the SecretProviderClass as a file, or an
// error and no files.
func (s *Server) Mount(ctx context.Context, req *v1alpha1.MountRequest) (*v1alpha1.MountResponse, error) {
	start := s.now()
	done := s.opts.Metrics.MountStarted()
	ctx, cancel := context.WithTimeout(ctx, s.opts.MountTimeout)
	defer cancel()

	m, resp, err := s.mount(ctx, req)
	if err == nil {
		err = fits(resp, s.opts.MaxResponseSize)
	}
	done(code(err).String())
	attrs := []slog.Attr{
		slog.String("code", code(err).String()),
		slog.Duration("duration", s.now().Sub(start)),
	}
	if m != nil {
		attrs = append(attrs,
			slog.String("namespace", m.Pod.Namespace),
			slog.String("pod", m.Pod.Name),
			slog.String("secretProviderClass", m.SecretProviderClass),
			slog.Int("objects", len(m.Objects)))
	}
	if err != nil {
		attrs = append(attrs, slog.String("error", err.Error()))
		s.opts.Logger.LogAttrs(ctx, slog.LevelWarn, "mount failed", attrs...)
		return nil, toStatus(err)
	}
	s.opts.Logger.LogAttrs(ctx, slog.LevelInfo, "mount", attrs...)
	return resp, nil
}
