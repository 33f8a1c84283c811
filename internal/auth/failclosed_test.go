package auth

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/okevault/vault-csi-provider/internal/redact"
)

// podJWT is an unsigned token with the claims a token the driver requests
// for a pod carries: namespace, service account and the pod it is bound to.
// withPod false leaves the pod claim out.
func podJWT(t *testing.T, ns, sa, podUID string, withPod bool) redact.Secret {
	t.Helper()
	k8s := map[string]any{"namespace": ns, "serviceaccount": map[string]any{"name": sa, "uid": "sa-uid"}}
	if withPod {
		k8s["pod"] = map[string]any{"name": "p", "uid": podUID}
	}
	b, err := json.Marshal(map[string]any{"exp": time.Now().Add(time.Hour).Unix(), "kubernetes.io": k8s})
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	return redact.New(enc([]byte(`{"alg":"RS256"}`)) + "." + enc(b) + ".sig")
}

// TestIdentityFailsClosed: a token is used only when its claims name the
// namespace, service account and pod UID kubelet sent for the mount; what
// cannot be matched (no service account sent, no claims, no pod claim) is
// refused, before any login.
func TestIdentityFailsClosed(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		name   string
		sa     string // the mount's service account, as kubelet sent it
		token  redact.Secret
		refuse bool
	}{
		{"claims match", "testapp", podJWT(t, "default", "testapp", "pod-uid", true), false},
		{"another pod's token", "testapp", podJWT(t, "default", "testapp", "other-pod-uid", true), true},
		{"no service account sent", "", podJWT(t, "default", "testapp", "pod-uid", true), true},
		{"another service account", "testapp", podJWT(t, "default", "intruder", "pod-uid", true), true},
		{"another namespace", "testapp", podJWT(t, "kube-system", "testapp", "pod-uid", true), true},
		{"no pod claim", "testapp", podJWT(t, "default", "testapp", "", false), true},
		{"not a JWT", "testapp", redact.New("not-a-jwt"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, perPod := range []bool{false, true} {
				_, err := IdentityKey(mount("default", tc.sa), tc.token, now, perPod)
				if tc.refuse != errors.Is(err, ErrTokenRejected) || !tc.refuse && err != nil {
					t.Errorf("perPod %v: IdentityKey = %v; refused want %v", perPod, err, tc.refuse)
				}
			}
		})
	}
}
