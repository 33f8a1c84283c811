package provider

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"maps"
	"net/http"

	"golang.org/x/sync/errgroup"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	"github.com/hashicorp/vault/api"

	"github.com/okevault/vault-csi-provider/internal/auth"
	"github.com/okevault/vault-csi-provider/internal/budget"
	"github.com/okevault/vault-csi-provider/internal/cache"
	"github.com/okevault/vault-csi-provider/internal/config"
	"github.com/okevault/vault-csi-provider/internal/leases"
	"github.com/okevault/vault-csi-provider/internal/objectversion"
	"github.com/okevault/vault-csi-provider/internal/panics"
	"github.com/okevault/vault-csi-provider/internal/vault"
)

// parseCost bounds the bytes parsing holds per byte of attributes: 84 for
// a YAML flow list of one-letter scalars and 76 for a template of empty
// actions, the worst shapes measured (go.yaml.in/yaml/v3, text/template).
// smallParse is what a parse may hold without waiting its turn.
const (
	parseCost  = 100
	smallParse = 1 << 20
)

// parse parses the request. Parsing builds the objects' YAML tree and the
// templates' parse trees, up to parseCost bytes per byte of the attributes
// while it runs: a class that could take more than a mount may hold is
// refused, and large ones (over 1 MiB of parsing, classes over ~10 KiB)
// wait their turn for a process-wide allowance of one mount's bytes.
// Small ones, nearly all, parse at once: a storm of ordinary mounts is
// never queued behind a large class.
func (s *Server) parse(ctx context.Context, req *v1alpha1.MountRequest) (*config.Mount, error) {
	if cost := int64(len(req.GetAttributes())) * parseCost; s.parsing != nil && cost > smallParse {
		if cost > s.opts.MaxMountBytes {
			return nil, fmt.Errorf("%w: the attributes are %d bytes, which may take %d to parse, more than a mount may hold (-max-mount-bytes %d); a SecretProviderClass should list objects, not hold data",
				budget.ErrExhausted, len(req.GetAttributes()), cost, s.opts.MaxMountBytes)
		}
		if err := s.parsing.Acquire(ctx, cost); err != nil {
			return nil, fmt.Errorf("waiting to parse the attributes: %w", err)
		}
		defer s.parsing.Release(cost)
	}
	return config.Parse(req.GetAttributes(), req.GetTargetPath(), req.GetPermission(), s.opts.Defaults)
}

// mount runs the pipeline. It returns the parsed mount (nil when parsing
// failed) for the log line.
func (s *Server) mount(ctx context.Context, req *v1alpha1.MountRequest) (*config.Mount, *v1alpha1.MountResponse, error) {
	m, err := s.parse(ctx, req)
	if err != nil {
		return nil, nil, err
	}
	if err := s.opts.PodAttributes.check(ctx, m, req.GetTargetPath()); err != nil {
		return m, nil, err
	}
	if unknown := m.Unknown(); len(unknown) > 0 {
		s.opts.Logger.LogAttrs(ctx, slog.LevelDebug, "ignoring unknown parameters", slog.Any("keys", unknown))
	}

	jwt, err := auth.PodToken(ctx, m, s.opts.Tokens)
	if err != nil {
		return m, nil, err
	}
	key, err := auth.IdentityKey(m, jwt, s.now(), s.opts.LoginPerPod || s.jwtPerPod(m))
	if err != nil {
		return m, nil, err
	}
	base, err := s.opts.Clients.Client(ctx, m.VaultAddress, m.VaultNamespace, m.TLS)
	if err != nil {
		// A *config.Error naming the parameter, or the mount's deadline.
		return m, nil, err
	}
	mb := s.opts.Budget.Mount(m.Pod.Namespace, s.opts.MaxMountBytes)
	defer mb.Close() // on success too: the files are the gRPC server's now
	sess := &session{
		logins: s.opts.Logins,
		key:    key,
		leases: s.leaseKey(m, jwt),
		target: m.VaultAddress + " " + m.VaultNamespace,
		role:   "auth/" + m.AuthMountPath + "/role/" + m.Role,
		budget: mb,
		login: func(ctx context.Context) (vault.Login, error) {
			lg, err := vault.LoginJWT(ctx, base, m.AuthMountPath, m.Role, jwt, mb)
			s.opts.Metrics.VaultRequest("login", err)
			return lg, err
		},
	}
	responses, err := s.readAll(ctx, base, sess, m.Requests())
	if err != nil {
		return m, nil, err
	}
	// expand: tree reads the secrets its listings name: a second batch.
	more, err := treeReads(m.Objects, responses)
	if err != nil {
		return m, nil, err
	}
	if len(more) > 0 {
		read, err := s.readAll(ctx, base, sess, more)
		if err != nil {
			return m, nil, err
		}
		maps.Copy(responses, read)
	}

	out, err := outputs(ctx, m.Objects, responses, mb)
	if err != nil {
		return m, nil, err
	}
	resp := &v1alpha1.MountResponse{ObjectVersion: s.versions(ctx, out)}
	for _, f := range out {
		// config caps modes at 0777, so the conversion cannot overflow.
		resp.Files = append(resp.Files, &v1alpha1.File{Path: f.path, Mode: int32(f.mode), Contents: f.contents}) //nolint:gosec // G115: mode ≤ 0777
	}
	return m, resp, nil
}

// session is one mount's view of the identity's cached login.
type session struct {
	logins *cache.Logins
	key    string
	// leases is the mount's part of lease-store keys; nil: not remembered.
	leases *leases.Key
	// target (Vault address and namespace) and role are what the lease
	// store bounds renewals by and names in warnings.
	target, role string
	// budget is charged for every response the mount holds.
	budget *budget.Mount
	login  func(context.Context) (vault.Login, error)
}

// readAll makes each distinct request once, a bounded number at a time. A
// 403 with a cached token may mean the token was revoked: log in again once
// and retry what was denied. A 403 with a fresh login is final.
func (s *Server) readAll(ctx context.Context, base *api.Client, sess *session, objects []config.Object) (map[string]*vault.Response, error) {
	lg, fresh, err := sess.logins.Get(ctx, sess.key, sess.login)
	if err != nil {
		return nil, err
	}
	var todo []config.Object
	seen := map[string]bool{}
	for _, o := range objects {
		if k := o.RequestKey(); !seen[k] {
			seen[k] = true
			todo = append(todo, o)
		}
	}
	out := make(map[string]*vault.Response, len(todo))
	denied, deniedErr, err := s.readBatch(ctx, base, sess, lg, todo, out)
	if err == nil && len(denied) > 0 && !fresh {
		sess.logins.Invalidate(sess.key, lg)
		if lg, _, err = sess.logins.Get(ctx, sess.key, sess.login); err != nil {
			return nil, err
		}
		denied, deniedErr, err = s.readBatch(ctx, base, sess, lg, denied, out)
	}
	if err == nil && len(denied) > 0 {
		err = deniedErr
	}
	return out, err
}

// readBatch reads objects into out (Optional ones Vault has not are left
// out). It returns the objects Vault denied
// (403) with the first denial's error; any other failure is returned as err
// and stops the batch.
func (s *Server) readBatch(ctx context.Context, base *api.Client, sess *session, lg vault.Login, objects []config.Object, out map[string]*vault.Response) (denied []config.Object, deniedErr, err error) {
	results := make([]*vault.Response, len(objects))
	denials := make([]error, len(objects))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.opts.ReadConcurrency)
	for i, o := range objects {
		g.Go(func() (err error) {
			// errgroup does not recover: a panic here would end the process.
			defer panics.Recover(gctx, s.opts.Logger, "reading object "+o.Name, &err)
			r, err := s.readLeased(gctx, base, sess, lg, o)
			if err == nil {
				// Held until the mount ends, whether read now or shared.
				err = sess.budget.Take(r.Size)
			}
			switch {
			case o.Optional && vault.NotFound(err):
				return nil // left out: no response
			case vault.Denied(err):
				denials[i] = fmt.Errorf("object %q: %w", o.Name, err)
			case err != nil:
				return fmt.Errorf("object %q: %w", o.Name, err)
			}
			results[i] = r
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}
	for i, o := range objects {
		if denials[i] != nil {
			denied = append(denied, o)
			if deniedErr == nil {
				deniedErr = denials[i]
			}
			continue
		}
		if results[i] != nil {
			out[o.RequestKey()] = results[i]
		}
	}
	return denied, deniedErr, nil
}

// read makes o's request with lg's token. GETs made with one login (so by
// one identity) are shared through the read cache; keying by the login too
// means a read made with a token since revoked never answers for a newer one.
func (s *Server) read(ctx context.Context, base *api.Client, sess *session, lg vault.Login, o config.Object) (*vault.Response, error) {
	identity := sess.key
	do := func(ctx context.Context) (*vault.Response, error) {
		r, err := vault.Do(ctx, base, lg.Token, vault.Request{Method: o.Method, Path: o.Path, Query: o.Query, Args: o.Args, Budget: sess.budget})
		s.opts.Metrics.VaultRequest(operation(o.Method), err)
		return r, err
	}
	if s.opts.Reads == nil || operation(o.Method) != "read" {
		return do(ctx)
	}
	token := sha256.Sum256([]byte(lg.Token.Reveal()))
	key := identity + "\x00" + hex.EncodeToString(token[:]) + "\x00" + o.RequestKey()
	return s.opts.Reads.Get(ctx, key, do)
}

// jwtPerPod reports whether m's logins are the pod's own because it uses
// JWT auth and the operator has not said its roles may be shared.
func (s *Server) jwtPerPod(m *config.Mount) bool {
	return m.AuthType == config.AuthJWT && !s.opts.ShareJWTLogins
}

// operation is the metrics label of a request method.
func operation(method string) string {
	if method == http.MethodGet || method == "" {
		return "read"
	}
	return "write"
}

// versions are the files' object versions: an HMAC of the object's
// configuration (and the file's path, for objects that write several) and
// the content, prefixed with the KV v2 version where the file has one.
// Without the HMAC key the HMAC part is empty, as the peer's versions are,
// so mounts still work.
func (s *Server) versions(ctx context.Context, files []file) []*v1alpha1.ObjectVersion {
	var key []byte
	if s.opts.Keys != nil {
		var err error
		if key, err = s.opts.Keys.Key(ctx); err != nil {
			s.opts.Logger.LogAttrs(ctx, slog.LevelWarn, "object versions disabled: no HMAC key", slog.String("error", err.Error()))
		}
	}
	out := make([]*v1alpha1.ObjectVersion, len(files))
	for i, f := range files {
		var v string
		if key != nil {
			v = objectversion.Version(key, f.versionSpec(), f.contents)
		}
		if f.kv2 != "" {
			v = objectversion.KV2(f.kv2, v)
		}
		out[i] = &v1alpha1.ObjectVersion{Id: f.path, Version: v}
	}
	return out
}
