package setup

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
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

	token string
	// generated: made by this run from the unseal keys, revoked at its end.
	generated bool
}

// acquire sets a root token on v: the stored one while Vault accepts it,
// else a new one generated from the unseal (or recovery) keys.
func (t *rootToken) acquire(ctx context.Context, v *vaultapi.Client, logf func(string, ...any)) error {
	s, err := t.kube.CoreV1().Secrets(t.namespace).Get(ctx, t.secret, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("the Secret %s/%s: %w", t.namespace, t.secret, errNoOperatorSecret)
	}
	if err != nil {
		return fmt.Errorf("read the Secret %s/%s: %w", t.namespace, t.secret, err)
	}
	if stored := string(s.Data[keyRootToken]); stored != "" {
		c, err := v.Clone()
		if err != nil {
			return err
		}
		c.SetToken(stored)
		_, err = c.Auth().Token().LookupSelfWithContext(ctx)
		if err == nil {
			t.token, t.generated = stored, false
			v.SetToken(stored)
			return nil
		}
		if !isForbidden(err) {
			return fmt.Errorf("look up the stored root token: %w", err)
		}
		// Revoked by an earlier run: generate one below.
	}
	keys := unsealKeys(s.Data)
	if len(keys) == 0 {
		return fmt.Errorf("the Secret %s/%s holds neither a valid %s nor %s<i>/%s<i> keys", t.namespace, t.secret, keyRootToken, keyUnsealPrefix, keyRecoveryPrefix)
	}
	tok, err := generateRoot(ctx, v.Sys(), keys, logf)
	if err != nil {
		return fmt.Errorf("generate a root token from the keys in the Secret %s/%s: %w", t.namespace, t.secret, err)
	}
	short, err := shortLived(ctx, v, tok)
	if err != nil {
		return err
	}
	logf("vault: generated a root token from the keys in the Secret %s/%s for this run (it expires in %s and is revoked at the end)\n", t.namespace, t.secret, runTokenTTL)
	t.token, t.generated = short, true
	v.SetToken(short)
	return nil
}

// runTokenTTL bounds the life of a token generated for a run, should the
// run die before revoking it.
const runTokenTTL = time.Hour

// shortLived trades a generated root token, which never expires, for an
// orphan root-policy token with runTokenTTL, and revokes the former.
func shortLived(ctx context.Context, v *vaultapi.Client, root string) (string, error) {
	c, err := v.Clone()
	if err != nil {
		return "", err
	}
	c.SetToken(root)
	s, err := c.Auth().Token().CreateOrphanWithContext(ctx, &vaultapi.TokenCreateRequest{
		Policies:    []string{"root"},
		TTL:         runTokenTTL.String(),
		DisplayName: "vault-oke-setup-run",
	})
	var tok string
	if err == nil && s != nil && s.Auth != nil {
		tok = s.Auth.ClientToken
	} else if err == nil {
		err = errors.New("no token in the answer")
	}
	if rerr := c.Auth().Token().RevokeSelfWithContext(ctx, ""); rerr != nil {
		return "", errors.Join(fmt.Errorf("revoke the generated root token: %w", rerr), err)
	}
	if err != nil {
		return "", fmt.Errorf("create a short-lived token: %w", err)
	}
	return tok, nil
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
// attempt, give it keys until the threshold is met, decode the token.
func generateRoot(ctx context.Context, sys *vaultapi.Sys, keys []string, logf func(string, ...any)) (string, error) {
	st, err := sys.GenerateRootStatusWithContext(ctx)
	if err != nil {
		return "", err
	}
	if st.Started {
		// Only one attempt can run: most likely one an interrupted run left.
		logf("vault: cancelling a generate-root attempt left in progress (nonce %s)\n", st.Nonce)
		if err := sys.GenerateRootCancelWithContext(ctx); err != nil {
			return "", err
		}
	}
	st, err = sys.GenerateRootInitWithContext(ctx, "", "")
	if err != nil {
		return "", err
	}
	otp, nonce := st.OTP, st.Nonce
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
