package setup

import (
	"context"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

// tokenRecord is the Secret <vault>-setup-tokens next to the operator's: the
// accessors (never the tokens) of the tokens a run generated and has not
// revoked yet, and the nonce of a generate-root attempt it started, so that
// the next run finds what a run that died, or failed to revoke, left. A
// Secret in the cluster, not a local file, because the next run may be a
// colleague's on another machine, and setup already reads Secrets in that
// namespace; not the operator's own Secret, which bank-vaults owns. An
// accessor only names a token (to look it up or revoke it); it cannot be
// used as one. Not labelled for the setup: prune must not delete it.
type tokenRecord struct {
	kube            kubernetes.Interface
	namespace, name string
}

const (
	recordNonce    = "generate-root-nonce"
	recordAccessor = "accessor." // + the accessor; the value says what the token is
)

// read returns the record, empty when there is none.
func (r *tokenRecord) read(ctx context.Context) (map[string][]byte, error) {
	s, err := r.kube.CoreV1().Secrets(r.namespace).Get(ctx, r.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return map[string][]byte{}, nil
	}
	if err != nil {
		return nil, err
	}
	return s.Data, nil
}

// accessors returns the recorded accessors.
func (r *tokenRecord) accessors(ctx context.Context) ([]string, error) {
	data, err := r.read(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for k := range data {
		if acc, ok := strings.CutPrefix(k, recordAccessor); ok {
			out = append(out, acc)
		}
	}
	return out, nil
}

// set records key = value; an empty value removes key.
func (r *tokenRecord) set(ctx context.Context, key, value string) error {
	secrets := r.kube.CoreV1().Secrets(r.namespace)
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		s, err := secrets.Get(ctx, r.name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			if value == "" {
				return nil
			}
			s = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: r.name, Namespace: r.namespace}, Data: map[string][]byte{key: []byte(value)}}
			_, err = secrets.Create(ctx, s, metav1.CreateOptions{FieldManager: FieldManager})
			return err
		}
		if err != nil {
			return err
		}
		if s.Data == nil {
			s.Data = map[string][]byte{}
		}
		if value == "" {
			delete(s.Data, key)
		} else {
			s.Data[key] = []byte(value)
		}
		_, err = secrets.Update(ctx, s, metav1.UpdateOptions{FieldManager: FieldManager})
		return err
	})
}
