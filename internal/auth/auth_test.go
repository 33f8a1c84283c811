package auth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/okevault/vault-csi-provider/internal/config"
	"github.com/okevault/vault-csi-provider/internal/redact"
)

// jwt builds an unsigned token with service-account claims; signatures are
// Vault's business, the claims only pick a cache slot.
func jwt(t *testing.T, ns, sa, uid string, exp time.Time) redact.Secret {
	t.Helper()
	claims := map[string]any{"kubernetes.io": map[string]any{"namespace": ns, "serviceaccount": map[string]any{"name": sa, "uid": uid}, "pod": map[string]any{"name": "p", "uid": "pod-uid"}}}
	if !exp.IsZero() {
		claims["exp"] = exp.Unix()
	}
	b, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	return redact.New(enc([]byte(`{"alg":"RS256"}`)) + "." + enc(b) + ".sig")
}

func mount(ns, sa string) *config.Mount {
	return &config.Mount{
		Role: "app", VaultAddress: "https://vault:8200", AuthType: config.AuthKubernetes, AuthMountPath: "kubernetes", Audience: "vault",
		Pod:    config.Pod{Namespace: ns, Name: "p", UID: "pod-uid", ServiceAccount: sa},
		Tokens: map[string]config.Token{},
	}
}

func TestPodToken(t *testing.T) {
	m := mount("default", "testapp")
	m.Tokens["vault"] = config.Token{Value: redact.New("driver-token")}
	m.Tokens["other"] = config.Token{Value: redact.New("other-token")}
	got, err := PodToken(t.Context(), m, nil)
	if err != nil || got.Reveal() != "driver-token" {
		t.Fatalf("PodToken = %q, %v; want the token for audience vault", got.Reveal(), err)
	}

	m.Audience = "custom"
	_, err = PodToken(t.Context(), m, nil)
	if !errors.Is(err, ErrNoToken) || !strings.Contains(err.Error(), "tokenRequests") || !strings.Contains(err.Error(), `"custom"`) {
		t.Fatalf("without a token for the audience: %v; want ErrNoToken telling to set tokenRequests", err)
	}
}

func TestTokenRequestFallback(t *testing.T) {
	// The fake clientset records the TokenRequest; the real TokenRequest API
	// is exercised on the test bed.
	client := fake.NewSimpleClientset()
	var got *authv1.TokenRequest
	client.PrependReactor("create", "serviceaccounts", func(a k8stesting.Action) (bool, runtime.Object, error) {
		got = a.(k8stesting.CreateAction).GetObject().(*authv1.TokenRequest)
		return true, &authv1.TokenRequest{Status: authv1.TokenRequestStatus{Token: "requested"}}, nil
	})
	m := mount("default", "testapp")
	tok, err := PodToken(t.Context(), m, &TokenRequester{Client: client})
	if err != nil || tok.Reveal() != "requested" {
		t.Fatalf("PodToken = %q, %v", tok.Reveal(), err)
	}
	if got.Spec.Audiences[0] != "vault" || got.Spec.BoundObjectRef.Name != "p" || got.Spec.BoundObjectRef.UID != "pod-uid" || *got.Spec.ExpirationSeconds != 600 {
		t.Errorf("TokenRequest = %+v; want audience vault, bound to the pod, 10 minutes", got.Spec)
	}

	m.Pod.UID = ""
	if _, err := PodToken(context.Background(), m, &TokenRequester{Client: client}); !errors.Is(err, ErrNoToken) {
		t.Errorf("without the pod's UID: %v, want ErrNoToken", err)
	}
}

func TestIdentityKey(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	later := now.Add(time.Hour)
	m := mount("default", "testapp")
	keyOf := func(m *config.Mount, tok redact.Secret) string {
		t.Helper()
		k, err := IdentityKey(m, tok, now, false)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	podA := jwt(t, "default", "testapp", "sa-uid-1", later)
	podB := jwt(t, "default", "testapp", "sa-uid-1", later.Add(time.Minute)) // another pod, same SA
	if keyOf(m, podA) != keyOf(m, podB) {
		t.Error("two pods of one service account should share a login")
	}
	recreated := jwt(t, "default", "testapp", "sa-uid-2", later)
	if keyOf(m, podA) == keyOf(m, recreated) {
		t.Error("a re-created service account (new UID) shares the old one's login")
	}
	for name, change := range map[string]func(*config.Mount){
		"role":      func(m *config.Mount) { m.Role = "admin" },
		"address":   func(m *config.Mount) { m.VaultAddress = "https://other:8200" },
		"namespace": func(m *config.Mount) { m.VaultNamespace = "team-a" },
		"mount":     func(m *config.Mount) { m.AuthMountPath = "k8s-2" },
		"audience":  func(m *config.Mount) { m.Audience = "custom" },
		"auth type": func(m *config.Mount) { m.AuthType = config.AuthJWT },
	} {
		other := mount("default", "testapp")
		change(other)
		if keyOf(m, podA) == keyOf(other, podA) {
			t.Errorf("changing the %s keeps the same identity", name)
		}
	}
	// Every TLS setting, present and future, changes how Vault is reached:
	// a class that skips verification (or trusts another CA, or presents
	// another client certificate) never shares a login with one that does
	// not.
	tlsType := reflect.TypeFor[config.TLS]()
	for i := range tlsType.NumField() {
		other := mount("default", "testapp")
		f := reflect.ValueOf(&other.TLS).Elem().Field(i)
		switch f.Kind() {
		case reflect.String:
			f.SetString("/other")
		case reflect.Bool:
			f.SetBool(true)
		default:
			t.Fatalf("TLS.%s is a %s: teach this test to change it", tlsType.Field(i).Name, f.Kind())
		}
		if keyOf(m, podA) == keyOf(other, podA) {
			t.Errorf("changing TLS.%s keeps the same identity", tlsType.Field(i).Name)
		}
	}
	perPodA, err := IdentityKey(m, podA, now, true)
	if err != nil {
		t.Fatal(err)
	}
	if perPodB, _ := IdentityKey(m, podB, now, true); perPodA == perPodB || perPodA == keyOf(m, podA) {
		t.Error("with perPod, two pods of one service account must not share a login")
	}
	if _, err := IdentityKey(m, jwt(t, "default", "intruder", "u", later), now, true); !errors.Is(err, ErrTokenRejected) {
		t.Errorf("perPod must still refuse another service account's token: %v", err)
	}
	if _, err := IdentityKey(m, redact.New("not-a-jwt"), now, false); !errors.Is(err, ErrTokenRejected) {
		t.Errorf("an unparseable token: %v, want ErrTokenRejected (TestIdentityFailsClosed)", err)
	}

	if _, err := IdentityKey(m, jwt(t, "default", "testapp", "u", now.Add(-time.Second)), now, false); !errors.Is(err, ErrTokenRejected) {
		t.Errorf("expired token: %v, want ErrTokenRejected", err)
	}
	if _, err := IdentityKey(m, jwt(t, "default", "intruder", "u", later), now, false); !errors.Is(err, ErrTokenRejected) {
		t.Errorf("token of another service account: %v, want ErrTokenRejected", err)
	}
	if _, err := IdentityKey(m, jwt(t, "kube-system", "testapp", "u", later), now, false); !errors.Is(err, ErrTokenRejected) {
		t.Errorf("token of another namespace: %v, want ErrTokenRejected", err)
	}
}
