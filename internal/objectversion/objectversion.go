// Package objectversion computes the object versions the driver records in
// SecretProviderClassPodStatus and compares on rotation: an HMAC-SHA256 of
// the object's configuration and content, keyed by 32 random bytes kept in a
// Kubernetes Secret so that versions agree across restarts and nodes while
// revealing nothing about the content.
//
// A file read from a KV v2 secret also shows the secret's version, as
// "kv2:<metadata.version>:<HMAC>" (KV2), so that SecretProviderClassPodStatus
// tells which version a pod has. Such a version moves when the content
// changes and also when a write makes a new KV version, even of the same data.
package objectversion

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

const (
	keyField = "key"
	keyLen   = 32
)

// Keys fetches the HMAC key from its Secret, creating it on first use. Once
// had, the key is kept in memory; a failure is retried on the next call.
type Keys struct {
	client          kubernetes.Interface
	namespace, name string

	mu  sync.Mutex
	key []byte
}

// NewKeys reads or creates Secret namespace/name through client.
func NewKeys(client kubernetes.Interface, namespace, name string) *Keys {
	return &Keys{client: client, namespace: namespace, name: name}
}

// Key returns the HMAC key.
func (k *Keys) Key(ctx context.Context) ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.key != nil {
		return k.key, nil
	}
	key, err := k.get(ctx)
	if apierrors.IsNotFound(err) {
		key, err = k.create(ctx)
		if apierrors.IsAlreadyExists(err) {
			// Another node's provider created it first: use theirs.
			key, err = k.get(ctx)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("HMAC key secret %s/%s: %w", k.namespace, k.name, err)
	}
	k.key = key
	return key, nil
}

func (k *Keys) get(ctx context.Context) ([]byte, error) {
	s, err := k.client.CoreV1().Secrets(k.namespace).Get(ctx, k.name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	key := s.Data[keyField]
	if len(key) != keyLen {
		return nil, fmt.Errorf("field %q holds %d bytes, want %d", keyField, len(key), keyLen)
	}
	return key, nil
}

func (k *Keys) create(ctx context.Context) ([]byte, error) {
	key := make([]byte, keyLen)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	_, err := k.client.CoreV1().Secrets(k.namespace).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:      k.name,
			Namespace: k.namespace,
			Labels:    map[string]string{"app.kubernetes.io/managed-by": "vault-csi-provider"},
		},
		Immutable: ptr(true),
		Data:      map[string][]byte{keyField: key},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, err
	}
	return key, nil
}

func ptr[T any](v T) *T { return &v }

// Version is the object version of content produced by an object whose
// configuration serialises to spec. spec and content are length-prefixed so
// that no two (spec, content) pairs hash alike.
func Version(key, spec, content []byte) string {
	m := hmac.New(sha256.New, key)
	_, _ = fmt.Fprintf(m, "%d:", len(spec)) // hash writes never fail
	m.Write(spec)
	_, _ = fmt.Fprintf(m, "%d:", len(content))
	m.Write(content)
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// KV2 prefixes version, an HMAC from Version (or "" without a key), with
// the KV v2 version of the secret the content came from.
func KV2(kvVersion, version string) string {
	return "kv2:" + kvVersion + ":" + version
}
