package provider

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"golang.org/x/sync/errgroup"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	"github.com/hashicorp/vault/api"

	"github.com/okevault/vault-csi-provider/internal/auth"
	"github.com/okevault/vault-csi-provider/internal/cache"
	"github.com/okevault/vault-csi-provider/internal/config"
	"github.com/okevault/vault-csi-provider/internal/leases"
	"github.com/okevault/vault-csi-provider/internal/objectversion"
	"github.com/okevault/vault-csi-provider/internal/vault"
)

// mount runs the pipeline. It returns the parsed mount (nil when parsing
// failed) for the log line.
func (s *Server) mount(ctx context.Context, req *v1alpha1.MountRequest) (*config.Mount, *v1alpha1.MountResponse, error) {
	m, err := config.Parse(req.GetAttributes(), req.GetTargetPath(), req.GetPermission(), s.opts.Defaults)
	if err != nil {
		return nil, nil, err
	}
	if unknown := m.Unknown(); len(unknown) > 0 {
		s.opts.Logger.LogAttrs(ctx, slog.LevelDebug, "ignoring unknown parameters", slog.Any("keys", unknown))
	}

	jwt, err := auth.PodToken(ctx, m, s.opts.Tokens)
	if err != nil {
		return m, nil, err
	}
	key, err := auth.IdentityKey(m, jwt, s.now(), s.opts.LoginPerPod)
	if err != nil {
		return m, nil, err
	}
	base, err := s.opts.Clients.Client(m.VaultAddress, m.VaultNamespace, m.TLS)
	if err != nil {
		return m, nil, &config.Error{Param: "vaultAddress and TLS parameters", Reason: err.Error()}
	}
	sess := &session{
		logins: s.opts.Logins,
		key:    key,
		leases: s.leaseKey(m, jwt),
		login: func(ctx context.Context) (vault.Login, error) {
			lg, err := vault.LoginJWT(ctx, base, m.AuthMountPath, m.Role, jwt)
			s.opts.Metrics.VaultRequest("login", err)
			return lg, err
		},
	}
	responses, err := s.readAll(ctx, base, sess, m.Objects)
	if err != nil {
		return m, nil, err
	}

	resp := &v1alpha1.MountResponse{}
	contents := make([][]byte, len(m.Objects))
	for i, o := range m.Objects {
		if contents[i], err = content(o, responses[o.RequestKey()]); err != nil {
			return m, nil, fmt.Errorf("object %q (%s): %w", o.Name, o.Path, err)
		}
		// config caps modes at 0777, so the conversion cannot overflow.
		resp.Files = append(resp.Files, &v1alpha1.File{Path: o.Name, Mode: int32(o.Mode), Contents: contents[i]}) //nolint:gosec // G115: mode ≤ 0777

	}
	resp.ObjectVersion = s.versions(ctx, m.Objects, contents)
	return m, resp, nil
}

// session is one mount's view of the identity's cached login.
type session struct {
	logins *cache.Logins
	key    string
	// leases is the mount's part of lease-store keys; nil: not remembered.
	leases *leases.Key
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

// readBatch reads objects into out. It returns the objects Vault denied
// (403) with the first denial's error; any other failure is returned as err
// and stops the batch.
func (s *Server) readBatch(ctx context.Context, base *api.Client, sess *session, lg vault.Login, objects []config.Object, out map[string]*vault.Response) (denied []config.Object, deniedErr, err error) {
	results := make([]*vault.Response, len(objects))
	denials := make([]error, len(objects))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.opts.ReadConcurrency)
	for i, o := range objects {
		g.Go(func() error {
			r, err := s.readLeased(gctx, base, sess, lg, o)
			switch {
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
		out[o.RequestKey()] = results[i]
	}
	return denied, deniedErr, nil
}

// read makes o's request with lg's token. GETs made with one login (so by
// one identity) are shared through the read cache; keying by the login too
// means a read made with a token since revoked never answers for a newer one.
func (s *Server) read(ctx context.Context, base *api.Client, identity string, lg vault.Login, o config.Object) (*vault.Response, error) {
	do := func(ctx context.Context) (*vault.Response, error) {
		r, err := vault.Do(ctx, base, lg.Token, vault.Request{Method: o.Method, Path: o.Path, Query: o.Query, Args: o.Args})
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

// operation is the metrics label of a request method.
func operation(method string) string {
	if method == http.MethodGet || method == "" {
		return "read"
	}
	return "write"
}

// content is the file for o from its response.
func content(o config.Object, r *vault.Response) ([]byte, error) {
	var raw []byte
	switch {
	case o.Key != "":
		v, ok := r.Data[o.Key]
		if !ok {
			return nil, fmt.Errorf("%w: secretKey %q is not in the secret", errMissingKey, o.Key)
		}
		if str, isString := v.(string); isString {
			raw = []byte(str)
		} else {
			b, err := json.Marshal(v)
			if err != nil {
				return nil, fmt.Errorf("encode value of secretKey %q: %w", o.Key, err)
			}
			raw = b
		}
	case o.Format == config.FormatData:
		b, err := json.Marshal(r.Data)
		if err != nil {
			return nil, fmt.Errorf("encode secret data: %w", err)
		}
		raw = b
	default:
		// The peer writes Vault's whole response; drop-in users parse it.
		raw = r.Body
	}
	return decode(o.Encoding, raw)
}

func decode(enc config.Encoding, raw []byte) ([]byte, error) {
	switch enc {
	case config.EncodingBase64:
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(raw)))
		if err != nil {
			return nil, fmt.Errorf("%w: encoding is base64 but the value is not valid base64", errBadContent)
		}
		return b, nil
	case config.EncodingHex:
		b, err := hex.DecodeString(strings.TrimSpace(string(raw)))
		if err != nil {
			return nil, fmt.Errorf("%w: encoding is hex but the value is not valid hex", errBadContent)
		}
		return b, nil
	}
	return raw, nil
}

// versions are the object versions; without the HMAC key they are empty
// strings, as the peer does, so mounts still work.
func (s *Server) versions(ctx context.Context, objects []config.Object, contents [][]byte) []*v1alpha1.ObjectVersion {
	var key []byte
	if s.opts.Keys != nil {
		var err error
		if key, err = s.opts.Keys.Key(ctx); err != nil {
			s.opts.Logger.LogAttrs(ctx, slog.LevelWarn, "object versions disabled: no HMAC key", slog.String("error", err.Error()))
		}
	}
	out := make([]*v1alpha1.ObjectVersion, len(objects))
	for i, o := range objects {
		out[i] = &v1alpha1.ObjectVersion{Id: o.Name}
		if key != nil {
			spec, _ := json.Marshal(o) // plain data: cannot fail
			out[i].Version = objectversion.Version(key, spec, contents[i])
		}
	}
	return out
}
