// Package auth finds the pod's service-account token for a mount and derives
// the identity a Vault login belongs to.
package auth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/okevault/vault-csi-provider/internal/config"
	"github.com/okevault/vault-csi-provider/internal/redact"
)

// ErrNoToken means the driver sent no token for the audience and the
// TokenRequest fallback is off.
var ErrNoToken = errors.New("no service-account token")

// ErrTokenRejected means the token can't be used for this pod: it has
// expired, or it belongs to another service account.
var ErrTokenRejected = errors.New("service-account token rejected")

// fallbackTTL is the lifetime of tokens the provider requests itself: long
// enough for one login, the shortest the API allows.
const fallbackTTL = 10 * time.Minute

// TokenRequester creates pod-bound service-account tokens with the
// TokenRequest API, for drivers whose CSIDriver object has no tokenRequests.
type TokenRequester struct{ Client kubernetes.Interface }

// PodToken returns the pod's token for m.Audience: the one the driver sent,
// else one from req when req is not nil.
func PodToken(ctx context.Context, m *config.Mount, req *TokenRequester) (redact.Secret, error) {
	if t, ok := m.Tokens[m.Audience]; ok && !t.Value.Empty() {
		return t.Value, nil
	}
	if req == nil {
		return redact.Secret{}, fmt.Errorf("%w for audience %q: set tokenRequests with audience %q on the CSIDriver secrets-store.csi.k8s.io, or start the provider with -token-request-fallback", ErrNoToken, m.Audience, m.Audience)
	}
	return req.Request(ctx, m.Pod, m.Audience)
}

// Request creates a token for pod's service account, bound to the pod so it
// dies with it.
func (r *TokenRequester) Request(ctx context.Context, pod config.Pod, audience string) (redact.Secret, error) {
	if pod.ServiceAccount == "" || pod.UID == "" {
		return redact.Secret{}, fmt.Errorf("%w: the request lacks the pod's service account or UID for a TokenRequest", ErrNoToken)
	}
	ttl := int64(fallbackTTL / time.Second)
	tr, err := r.Client.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, pod.ServiceAccount, &authv1.TokenRequest{
		Spec: authv1.TokenRequestSpec{
			Audiences:         []string{audience},
			ExpirationSeconds: &ttl,
			BoundObjectRef:    &authv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: types.UID(pod.UID)},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return redact.Secret{}, fmt.Errorf("TokenRequest for service account %s/%s: %w", pod.Namespace, pod.ServiceAccount, err)
	}
	return redact.New(tr.Status.Token), nil
}

// Claims are the identity claims of a Kubernetes service-account token.
// PodUID is the pod the token is bound to, "" for a token bound to none.
type Claims struct {
	Namespace, ServiceAccount, UID string
	PodUID                         string
	Expiry                         time.Time
}

// ParseClaims reads a service-account JWT's payload without verifying it:
// Vault verifies every token on login. The claims only choose which cached
// login a token may reuse.
func ParseClaims(jwt redact.Secret) (Claims, error) {
	parts := strings.Split(jwt.Reveal(), ".")
	if len(parts) != 3 {
		return Claims{}, errors.New("service-account token is not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return Claims{}, errors.New("service-account token payload is not base64url")
	}
	var c struct {
		Exp int64 `json:"exp"`
		K8s struct {
			Namespace      string `json:"namespace"`
			ServiceAccount struct {
				Name string `json:"name"`
				UID  string `json:"uid"`
			} `json:"serviceaccount"`
			Pod struct {
				UID string `json:"uid"`
			} `json:"pod"`
		} `json:"kubernetes.io"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return Claims{}, errors.New("service-account token payload is not JSON")
	}
	if c.K8s.Namespace == "" || c.K8s.ServiceAccount.Name == "" || c.K8s.ServiceAccount.UID == "" {
		return Claims{}, errors.New("service-account token lacks the kubernetes.io claims")
	}
	cl := Claims{Namespace: c.K8s.Namespace, ServiceAccount: c.K8s.ServiceAccount.Name, UID: c.K8s.ServiceAccount.UID, PodUID: c.K8s.Pod.UID}
	if c.Exp > 0 {
		cl.Expiry = time.Unix(c.Exp, 0)
	}
	return cl, nil
}

// IdentityKey names the Vault identity a mount logs in as: the Vault server
// and how it is reached (every TLS setting: a class that skips verification
// never shares with one that verifies), namespace, auth type and mount, role
// and audience, and the service account the token belongs to (by UID, so a
// re-created account is a new identity). Pods that share all of these get
// the same Vault policies under Kubernetes auth, so they may share one login.
// perPod keys by the pod's own token instead, for operators who want one
// Vault token per pod.
//
// The token must be the mount's pod's: its claims must name the namespace,
// service account and pod UID kubelet sent, or it is refused before any
// login. A token bound to no pod is refused too: the driver and the
// TokenRequest fallback only ever get tokens bound to the pod, so one
// without the pod claim did not come from them for this mount, and nothing
// ties it to the pod. So is one whose claims cannot be read (not a
// Kubernetes service-account token).
func IdentityKey(m *config.Mount, jwt redact.Secret, now time.Time, perPod bool) (string, error) {
	c, err := ParseClaims(jwt)
	switch {
	case err != nil:
		return "", fmt.Errorf("%w: %w", ErrTokenRejected, err)
	case !c.Expiry.IsZero() && now.After(c.Expiry):
		return "", fmt.Errorf("%w: the token for %s/%s expired at %s", ErrTokenRejected, c.Namespace, c.ServiceAccount, c.Expiry.UTC().Format(time.RFC3339))
	case m.Pod.ServiceAccount == "" || c.Namespace != m.Pod.Namespace || c.ServiceAccount != m.Pod.ServiceAccount:
		return "", fmt.Errorf("%w: the token is for %s/%s, not the pod's service account %s/%s", ErrTokenRejected, c.Namespace, c.ServiceAccount, m.Pod.Namespace, m.Pod.ServiceAccount)
	case c.PodUID == "":
		return "", fmt.Errorf("%w: the token for %s/%s is bound to no pod; the driver's tokens are bound to theirs", ErrTokenRejected, c.Namespace, c.ServiceAccount)
	case c.PodUID != m.Pod.UID:
		return "", fmt.Errorf("%w: the token is bound to pod UID %s, not the mount's pod %s/%s (UID %s)", ErrTokenRejected, c.PodUID, m.Pod.Namespace, m.Pod.Name, m.Pod.UID)
	}
	h := sha256.New()
	_, _ = fmt.Fprintf(h, "%q %q %q %q %q %q\x00", m.VaultAddress, m.VaultNamespace, m.AuthType, m.AuthMountPath, m.Role, m.Audience)
	_, _ = fmt.Fprintf(h, "tls %q %q %q %q %q %t\x00", m.TLS.CACert, m.TLS.CADirectory, m.TLS.ServerName, m.TLS.ClientCert, m.TLS.ClientKey, m.TLS.SkipVerify)
	switch {
	case perPod:
		_, _ = fmt.Fprintf(h, "pod %q token %x", m.Pod.UID, sha256.Sum256([]byte(jwt.Reveal())))
	default:
		_, _ = fmt.Fprintf(h, "sa %q %q %q", c.Namespace, c.ServiceAccount, c.UID)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
