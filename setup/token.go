package setup

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// The Vault token of a run when the user gives none: taken from the Secret
// where bank-vaults (v1.33.1, internal/vault/operator_client.go) keeps what
// Vault's init returned: the root token under "vault-root", the unseal keys
// under "vault-unseal-<i>" (recovery keys, with an auto-unseal, under
// "vault-recovery-<i>"). The token lives in memory only: never printed,
// never written anywhere.
const (
	keyRootToken      = "vault-root"
	keyUnsealPrefix   = "vault-unseal-"
	keyRecoveryPrefix = "vault-recovery-"
)

// errNoOperatorSecret: the operator has not initialised Vault yet.
var errNoOperatorSecret = fmt.Errorf("the operator has not stored Vault's keys yet (%w)", errNotYet)

// rootToken is a root token taken from, or generated with the keys in,
// the operator's Secret.
type rootToken struct {
	kube              kubernetes.Interface
	namespace, secret string
	// record keeps the accessors of the tokens generated and not revoked yet.
	record *tokenRecord
	// cancelOthers: cancel a generate-root attempt that setup did not start.
	cancelOthers bool

	token string
	// generated: made by this run from the unseal keys, revoked at its end.
	generated bool
	accessor  string // of a generated token
}

// acquire sets a root token on v: the stored one while Vault accepts it,
// else a new one generated from the unseal (or recovery) keys. Then it
// revokes what earlier runs generated and left.
func (t *rootToken) acquire(ctx context.Context, v *vaultapi.Client, logf func(string, ...any)) error {
	s, err := t.kube.CoreV1().Secrets(t.namespace).Get(ctx, t.secret, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("the Secret %s/%s: %w", t.namespace, t.secret, errNoOperatorSecret)
	}
	if err != nil {
		return fmt.Errorf("read the Secret %s/%s: %w", t.namespace, t.secret, err)
	}
	valid, err := t.storedValid(ctx, v, string(s.Data[keyRootToken]))
	if err != nil {
		return err
	}
	if valid {
		t.token, t.generated = string(s.Data[keyRootToken]), false
	} else if err := t.generate(ctx, v, unsealKeys(s.Data), logf); err != nil {
		return err
	}
	v.SetToken(t.token)
	return t.revokeLeftovers(ctx, v, logf)
}

// storedValid reports whether Vault accepts the stored root token; one
// revoked by an earlier run is not an error.
func (t *rootToken) storedValid(ctx context.Context, v *vaultapi.Client, stored string) (bool, error) {
	if stored == "" {
		return false, nil
	}
	c, err := v.Clone()
	if err != nil {
		return false, err
	}
	c.SetToken(stored)
	_, err = c.Auth().Token().LookupSelfWithContext(ctx)
	if isForbidden(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("look up the stored root token: %w", err)
	}
	return true, nil
}

// generate makes the run's token: a root token from the keys, traded at
// once for a short-lived one. Each is recorded before the next step, so a
// run dying anywhere after leaves only recorded tokens.
func (t *rootToken) generate(ctx context.Context, v *vaultapi.Client, keys []string, logf func(string, ...any)) error {
	if len(keys) == 0 {
		return fmt.Errorf("the Secret %s/%s holds neither a valid %s nor %s<i>/%s<i> keys", t.namespace, t.secret, keyRootToken, keyUnsealPrefix, keyRecoveryPrefix)
	}
	root, err := t.generateRoot(ctx, v.Sys(), keys, logf)
	if err != nil {
		return fmt.Errorf("generate a root token from the keys in the Secret %s/%s: %w", t.namespace, t.secret, err)
	}
	if err := t.shortLived(ctx, v, root); err != nil {
		return err
	}
	logf("vault: generated a root token from the keys in the Secret %s/%s for this run (it expires in %s and is revoked at the end)\n", t.namespace, t.secret, runTokenTTL)
	t.generated = true
	return nil
}

// runTokenTTL bounds the life of a token generated for a run, should the
// run die before revoking it.
const runTokenTTL = time.Hour

// shortLived trades a generated root token, which never expires, for an
// orphan root-policy token with runTokenTTL, and revokes the former.
func (t *rootToken) shortLived(ctx context.Context, v *vaultapi.Client, root string) error {
	c, err := v.Clone()
	if err != nil {
		return err
	}
	c.SetToken(root)
	self, err := c.Auth().Token().LookupSelfWithContext(ctx)
	if err != nil {
		return fmt.Errorf("look up the generated root token: %w", err)
	}
	rootAcc, _ := self.TokenAccessor()
	if err := t.remember(ctx, rootAcc, "generated root token"); err != nil {
		return err
	}
	s, err := c.Auth().Token().CreateOrphanWithContext(ctx, &vaultapi.TokenCreateRequest{
		Policies:    []string{"root"},
		TTL:         runTokenTTL.String(),
		DisplayName: "vault-oke-setup-run",
	})
	if err == nil && (s == nil || s.Auth == nil) {
		err = errors.New("no token in the answer")
	}
	if err == nil {
		t.token, t.accessor = s.Auth.ClientToken, s.Auth.Accessor
		err = t.remember(ctx, t.accessor, "run token")
	}
	if rerr := c.Auth().Token().RevokeSelfWithContext(ctx, ""); rerr != nil {
		return errors.Join(fmt.Errorf("revoke the generated root token (the next run revokes it by its recorded accessor): %w", rerr), err)
	}
	if err != nil {
		return fmt.Errorf("create a short-lived token: %w", err)
	}
	return t.remember(ctx, rootAcc, "")
}

// remember records a generated token's accessor (what it is), or forgets it ("").
func (t *rootToken) remember(ctx context.Context, accessor, what string) error {
	if err := t.record.set(ctx, recordAccessor+accessor, what); err != nil {
		return fmt.Errorf("record the accessor of a generated token in the Secret %s/%s: %w", t.record.namespace, t.record.name, err)
	}
	return nil
}

// revokeLeftovers revokes the recorded tokens other than this run's, which
// a run that died or failed to revoke left, and forgets them.
func (t *rootToken) revokeLeftovers(ctx context.Context, v *vaultapi.Client, logf func(string, ...any)) error {
	accs, err := t.record.accessors(ctx)
	if err != nil {
		return fmt.Errorf("read the Secret %s/%s: %w", t.record.namespace, t.record.name, err)
	}
	revoked := 0
	for _, acc := range accs {
		if acc == t.accessor {
			continue
		}
		s, err := v.Logical().WriteWithContext(ctx, "auth/token/revoke-accessor", map[string]any{"accessor": acc})
		switch {
		case err == nil && !gone(s):
			revoked++
		case err != nil && !isBadRequest(err): // 400: no such token (older Vaults)
			return fmt.Errorf("revoke a token an earlier run left (accessor %s): %w", acc, err)
		}
		if err := t.remember(ctx, acc, ""); err != nil {
			return err
		}
	}
	if revoked > 0 {
		logf("vault: revoked %d token(s) that earlier runs generated and left (their accessors are recorded in the Secret %s/%s)\n", revoked, t.record.namespace, t.record.name)
	}
	return nil
}

// gone: Vault 1.21 answers a revoke-accessor of no token 200 with this warning.
func gone(s *vaultapi.Secret) bool {
	return s != nil && slices.ContainsFunc(s.Warnings, func(w string) bool { return strings.Contains(w, "No token found") })
}

// revoke revokes the token in use: the token, not its children.
func (t *rootToken) revoke(ctx context.Context, v *vaultapi.Client) error {
	if t.token == "" {
		return nil
	}
	c, err := v.Clone()
	if err != nil {
		return err
	}
	c.SetToken(t.token)
	if err := c.Auth().Token().RevokeSelfWithContext(ctx, ""); err != nil {
		return err
	}
	t.token = ""
	if t.generated {
		return t.remember(ctx, t.accessor, "")
	}
	return nil
}

// unsealKeys returns the keys vault-unseal-0, -1, … (or vault-recovery-…)
// in order, up to the first missing one.
func unsealKeys(data map[string][]byte) []string {
	for _, prefix := range []string{keyUnsealPrefix, keyRecoveryPrefix} {
		var keys []string
		for i := 0; ; i++ {
			k := data[prefix+strconv.Itoa(i)]
			if len(k) == 0 {
				break
			}
			keys = append(keys, string(k))
		}
		if len(keys) > 0 {
			return keys
		}
	}
	return nil
}

// generateRoot runs Vault's generate-root flow with an OTP: start an
// attempt, give it keys until the threshold is met, decode the token. The
// attempt's nonce is recorded while it runs, so that the next run can tell
// an attempt an interrupted run left from someone else's.
func (t *rootToken) generateRoot(ctx context.Context, sys *vaultapi.Sys, keys []string, logf func(string, ...any)) (string, error) {
	if err := t.cancelLeftAttempt(ctx, sys, logf); err != nil {
		return "", err
	}
	st, err := sys.GenerateRootInitWithContext(ctx, "", "")
	if err != nil {
		return "", err
	}
	otp, nonce := st.OTP, st.Nonce
	if err := t.record.set(ctx, recordNonce, nonce); err != nil {
		_ = sys.GenerateRootCancelWithContext(ctx)
		return "", err
	}
	// Forgotten however the attempt ends; a nonce left behind matches no later attempt.
	defer func() { _ = t.record.set(ctx, recordNonce, "") }()
	for _, k := range keys {
		if st, err = sys.GenerateRootUpdateWithContext(ctx, k, nonce); err != nil {
			_ = sys.GenerateRootCancelWithContext(ctx) // leave no half-done attempt
			return "", err
		}
		if st.Complete {
			return decodeRootToken(st.EncodedToken, otp)
		}
	}
	_ = sys.GenerateRootCancelWithContext(ctx)
	return "", fmt.Errorf("%d keys given, %d required", len(keys), st.Required)
}

// cancelLeftAttempt cancels a generate-root attempt in progress (only one
// can run) when setup started it, or when told to cancel others'.
func (t *rootToken) cancelLeftAttempt(ctx context.Context, sys *vaultapi.Sys, logf func(string, ...any)) error {
	st, err := sys.GenerateRootStatusWithContext(ctx)
	if err != nil || !st.Started {
		return err
	}
	data, err := t.record.read(ctx)
	if err != nil {
		return err
	}
	switch {
	case string(data[recordNonce]) == st.Nonce:
		logf("vault: cancelling the generate-root attempt an interrupted run left (nonce %s)\n", st.Nonce)
	case t.cancelOthers:
		logf("vault: cancelling a generate-root attempt setup did not start (nonce %s), as --cancel-generate-root asks\n", st.Nonce)
	default:
		return fmt.Errorf("a generate-root attempt setup did not start is in progress (nonce %s): someone may be generating a root token, and cancelling it would end theirs; run again when it is done, or with --cancel-generate-root", st.Nonce)
	}
	return sys.GenerateRootCancelWithContext(ctx)
}

// decodeRootToken undoes the OTP: the token is base64(token XOR otp), as in
// Vault's sdk/helper/roottoken (OTP length > 0, Vault 1.10 and later).
func decodeRootToken(encoded, otp string) (string, error) {
	b, err := base64.RawStdEncoding.DecodeString(encoded)
	if err != nil {
		return "", fmt.Errorf("decode the generated token: %w", err)
	}
	if len(b) != len(otp) {
		return "", fmt.Errorf("decode the generated token: %d bytes, OTP of %d", len(b), len(otp))
	}
	for i := range b {
		b[i] ^= otp[i]
	}
	return string(b), nil
}

func isForbidden(err error) bool {
	var re *vaultapi.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusForbidden
}

func isBadRequest(err error) bool {
	var re *vaultapi.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusBadRequest
}
