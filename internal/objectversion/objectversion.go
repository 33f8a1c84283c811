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
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

const (
	keyField = "key"
	keyLen   = 32
)

// Resync is how often Run re-reads the Secret even when its watch is quiet,
// so a replaced or deleted key is noticed within this period should the
// watch break unnoticed; a working watch brings the change within seconds.
// It bounds how long two providers can report different versions.
const Resync = 30 * time.Second

// Keys holds the HMAC key of its Secret, creating the Secret when it is
// missing (on first use, and again after a delete). With Run, the key
// follows the Secret: replaced by someone else, theirs is taken; deleted,
// the next Key makes a new one, or takes the one another node made first.
type Keys struct {
	client          kubernetes.Interface
	namespace, name string
	resync          time.Duration

	// mu is held across the API calls that fill key, so a Get's answer can
	// never overwrite a newer one a watch event brought in the meantime.
	mu  sync.Mutex
	key []byte // nil: not known, or the Secret is gone
}

// NewKeys reads or creates Secret namespace/name through client.
func NewKeys(client kubernetes.Interface, namespace, name string) *Keys {
	return &Keys{client: client, namespace: namespace, name: name, resync: Resync}
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

// Run follows the Secret until ctx ends: a watch on it alone (a field
// selector on its name, which the Role's resourceNames allow), and a Get
// every resync period as the backstop for a watch that stalls. It needs
// get, list and watch on that Secret.
func (k *Keys) Run(ctx context.Context) error {
	factory := informers.NewSharedInformerFactoryWithOptions(k.client, 0,
		informers.WithNamespace(k.namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", k.name).String()
		}))
	defer factory.Shutdown() // waits for the watch, which stops when ctx ends
	if _, err := factory.Core().V1().Secrets().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    k.observe,
		UpdateFunc: func(_, obj any) { k.observe(obj) },
		DeleteFunc: k.forget,
	}); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	tick := time.NewTicker(k.resync)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			k.refresh(ctx)
		}
	}
}

// observe takes the key of the Secret as a watch event shows it. An invalid
// one is dropped, so the next Key reports why.
func (k *Keys) observe(obj any) {
	s, ok := obj.(*corev1.Secret)
	if !ok || s.Name != k.name {
		return
	}
	key, err := keyOf(s)
	k.mu.Lock()
	defer k.mu.Unlock()
	if err != nil {
		key = nil
	}
	k.key = key
}

// forget drops the key of a deleted Secret: the next Key recreates it.
func (k *Keys) forget(obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj // deleted while the watch was down
	}
	if s, ok := obj.(*corev1.Secret); !ok || s.Name != k.name {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.key = nil
}

// refresh re-reads the Secret. Gone or invalid, the key is dropped; an
// apiserver that does not answer leaves the key as it is, so mounts keep
// their versions through an apiserver outage.
func (k *Keys) refresh(ctx context.Context) {
	k.mu.Lock()
	defer k.mu.Unlock()
	key, err := k.get(ctx)
	switch {
	case err == nil:
		k.key = key
	case apierrors.IsNotFound(err), errors.Is(err, errBadKey):
		k.key = nil
	}
}

// errBadKey: the Secret's key field is not a key.
var errBadKey = errors.New("not a 32-byte key")

func (k *Keys) get(ctx context.Context) ([]byte, error) {
	s, err := k.client.CoreV1().Secrets(k.namespace).Get(ctx, k.name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	return keyOf(s)
}

func keyOf(s *corev1.Secret) ([]byte, error) {
	key := s.Data[keyField]
	if len(key) != keyLen {
		return nil, fmt.Errorf("field %q holds %d bytes: %w", keyField, len(key), errBadKey)
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
