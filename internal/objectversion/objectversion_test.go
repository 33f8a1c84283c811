package objectversion

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func TestVersion(t *testing.T) {
	key := bytes.Repeat([]byte{1}, keyLen)
	other := bytes.Repeat([]byte{2}, keyLen)
	base := Version(key, []byte(`{"objectName":"a"}`), []byte("v1"))
	if base != Version(key, []byte(`{"objectName":"a"}`), []byte("v1")) {
		t.Fatal("version is not deterministic")
	}
	for name, v := range map[string]string{
		"content changes": Version(key, []byte(`{"objectName":"a"}`), []byte("v2")),
		"config changes":  Version(key, []byte(`{"objectName":"b"}`), []byte("v1")),
		"key changes":     Version(other, []byte(`{"objectName":"a"}`), []byte("v1")),
		"boundary moves":  Version(key, []byte(`{"objectName":"a"}v`), []byte("1")),
	} {
		if v == base {
			t.Errorf("%s: version did not change", name)
		}
	}
	if bytes.Contains([]byte(base), []byte("v1")) {
		t.Errorf("version %q shows the content", base)
	}
}

// The fake clientset stands in for the apiserver here to produce the
// creation race between nodes, which a single real apiserver can't stage
// deterministically; the real apiserver path is covered by the end-to-end tests.
func TestKeysCreatesOnceAndSurvivesTheRace(t *testing.T) {
	client := fake.NewSimpleClientset()
	var k1, k2 []byte
	var wg sync.WaitGroup
	for i, dst := range []*[]byte{&k1, &k2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key, err := NewKeys(client, "csi", "hmac").Key(context.Background())
			if err != nil {
				t.Errorf("node %d: %v", i, err)
			}
			*dst = key
		}()
	}
	wg.Wait()
	if len(k1) != keyLen || !bytes.Equal(k1, k2) {
		t.Fatalf("nodes disagree on the key: %x vs %x", k1, k2)
	}
	// A provider restart reads the same key.
	again, err := NewKeys(client, "csi", "hmac").Key(context.Background())
	if err != nil || !bytes.Equal(again, k1) {
		t.Fatalf("after restart: %x, %v; want %x", again, err, k1)
	}
}

func TestKeysLostRace(t *testing.T) {
	theirs := bytes.Repeat([]byte{7}, keyLen)
	client := fake.NewSimpleClientset()
	// Another node creates the secret between our Get and our Create.
	client.PrependReactor("create", "secrets", func(k8stesting.Action) (bool, runtime.Object, error) {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "hmac", Namespace: "csi"}, Data: map[string][]byte{keyField: theirs}}
		if err := client.Tracker().Add(s); err != nil {
			t.Fatal(err)
		}
		return false, nil, nil
	})
	key, err := NewKeys(client, "csi", "hmac").Key(context.Background())
	if err != nil || !bytes.Equal(key, theirs) {
		t.Fatalf("got %x, %v; want the other node's key", key, err)
	}
}

func TestKeysBadSecret(t *testing.T) {
	client := fake.NewSimpleClientset(&corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "hmac", Namespace: "csi"},
		Data:       map[string][]byte{keyField: []byte("short")},
	})
	if _, err := NewKeys(client, "csi", "hmac").Key(context.Background()); err == nil {
		t.Fatal("a 5-byte key was accepted")
	}
}

func TestKV2(t *testing.T) {
	if got := KV2("3", "abc"); got != "kv2:3:abc" {
		t.Errorf("KV2 = %q, want kv2:3:abc", got)
	}
	if got := KV2("3", ""); got != "kv2:3:" {
		t.Errorf("KV2 without an HMAC = %q, want kv2:3:", got)
	}
}

// TestVersionRevealsNothing: a version is a fixed-size MAC whatever the
// content, carries neither content nor key in any encoding, and cannot be
// recomputed without the key (so guessing a short secret needs the key).
func TestVersionRevealsNothing(t *testing.T) {
	key := bytes.Repeat([]byte{7}, keyLen)
	spec := []byte(`{"objectName":"pw"}`)
	for _, content := range [][]byte{nil, []byte("a"), []byte("hunter2-password"), bytes.Repeat([]byte("z"), 1<<20)} {
		v := Version(key, spec, content)
		if len(v) != 43 { // 32 bytes, unpadded base64url
			t.Errorf("version of %d bytes is %d characters: its length tells the content's", len(content), len(v))
		}
		for _, secret := range [][]byte{content, key} {
			if len(secret) < 4 {
				continue
			}
			for _, form := range []string{string(secret), base64.StdEncoding.EncodeToString(secret), base64.RawURLEncoding.EncodeToString(secret), hex.EncodeToString(secret)} {
				if strings.Contains(v, form[:min(len(form), 16)]) {
					t.Errorf("version %q shows content or key", v)
				}
			}
		}
		sum := sha256.Sum256(append(append([]byte{}, spec...), content...))
		if v == base64.RawURLEncoding.EncodeToString(sum[:]) {
			t.Error("the version is a plain hash: anyone could test guesses against it")
		}
	}
}

// follow runs k.Run until the test ends and returns a poll of k.Key, once
// Run's watch is open: the fake clientset, unlike an apiserver, does not
// replay to a watch the events since the list it follows.
func follow(t *testing.T, client *fake.Clientset, k *Keys) func() []byte {
	t.Helper()
	watching := make(chan struct{})
	var once sync.Once
	client.PrependWatchReactor("secrets", func(k8stesting.Action) (bool, watch.Interface, error) {
		once.Do(func() { close(watching) })
		return false, nil, nil // handled by the next reactor
	})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- k.Run(ctx) }()
	select {
	case <-watching:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not watch within 10s")
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return func() []byte {
		key, err := k.Key(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return key
	}
}

// waitKey polls key until it returns want (or, with want nil, anything but
// not) within 10 s.
func waitKey(t *testing.T, key func() []byte, want, not []byte) []byte {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := key()
		if (want != nil && bytes.Equal(got, want)) || (want == nil && !bytes.Equal(got, not)) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("key %x: want %x (or not %x) within 10s", got, want, not)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func secretKey(t *testing.T, client *fake.Clientset) []byte {
	t.Helper()
	s, err := client.CoreV1().Secrets("csi").Get(t.Context(), "hmac", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s.Data[keyField]
}

func replaceSecret(t *testing.T, client *fake.Clientset, key []byte) {
	t.Helper()
	secrets := client.CoreV1().Secrets("csi")
	if err := secrets.Delete(t.Context(), "hmac", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := secrets.Create(t.Context(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "hmac"}, Data: map[string][]byte{keyField: key}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestKeysFollowTheSecret: the key's life follows its Secret. Deleted, the
// next Key recreates it with a new key; replaced by someone else, their key
// is taken; another Secret in the namespace changes nothing. The fake
// clientset (client-go's, with a working watch) stands in for the apiserver;
// test/e2e TestHMACKeyConverges checks the same with provider processes on
// a real one.
func TestKeysFollowTheSecret(t *testing.T) {
	client := fake.NewClientset()
	key := follow(t, client, NewKeys(client, "csi", "hmac"))
	first := key()
	if !bytes.Equal(secretKey(t, client), first) {
		t.Fatal("the key is not the Secret's")
	}

	if err := client.CoreV1().Secrets("csi").Delete(t.Context(), "hmac", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	second := waitKey(t, key, nil, first)
	if !bytes.Equal(secretKey(t, client), second) {
		t.Fatal("after the delete, the new key is not in a recreated Secret")
	}

	theirs := bytes.Repeat([]byte{9}, keyLen)
	replaceSecret(t, client, theirs)
	waitKey(t, key, theirs, nil)

	other := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "other"}, Data: map[string][]byte{keyField: bytes.Repeat([]byte{1}, keyLen)}}
	if _, err := client.CoreV1().Secrets("csi").Create(t.Context(), other, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // give a wrong handler its chance: nothing to poll for
	if got := key(); !bytes.Equal(got, theirs) {
		t.Fatalf("another Secret changed the key to %x", got)
	}
}

// TestKeysResyncWithoutWatch: with a watch that never delivers (a broken
// connection the client has not noticed, staged with the fake clientset's
// watch reactor), a replaced Secret is still taken within the resync period.
func TestKeysResyncWithoutWatch(t *testing.T) {
	client := fake.NewClientset()
	client.PrependWatchReactor("secrets", func(k8stesting.Action) (bool, watch.Interface, error) {
		return true, watch.NewFake(), nil
	})
	k := NewKeys(client, "csi", "hmac")
	k.resync = 50 * time.Millisecond
	key := follow(t, client, k)
	first := key()
	theirs := bytes.Repeat([]byte{9}, keyLen)
	replaceSecret(t, client, theirs)
	waitKey(t, key, theirs, first)

	// Deleted and not yet recreated by anyone: the next Key makes a new one.
	if err := client.CoreV1().Secrets("csi").Delete(t.Context(), "hmac", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	fresh := waitKey(t, key, nil, theirs)
	if !bytes.Equal(secretKey(t, client), fresh) {
		t.Fatal("the new key is not in a recreated Secret")
	}
}
