package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	"github.com/okevault/vault-csi-provider/internal/objectversion"
	"github.com/okevault/vault-csi-provider/test/testbed"
)

// keyBound is how long providers may disagree on the HMAC key after its
// Secret changes: the providers' resync period (the backstop for a stalled
// watch; a working watch takes seconds) and a margin for a loaded machine.
const keyBound = objectversion.Resync + 15*time.Second

// TestHMACKeyConverges runs three provider processes, as on three nodes,
// against one real apiserver, sharing a key Secret of their own (so the
// suite's other tests keep theirs). They report the same versions for the
// same secret; after the Secret is deleted, one recreates it and all report
// the same new versions within keyBound; after someone replaces it with
// another key, all take that one.
func TestHMACKeyConverges(t *testing.T) {
	shared(t)
	const secretName = "e2e-converge-hmac"
	bin, err := testbed.BuildProvider(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var providers []*testbed.Provider
	var clients []v1alpha1.CSIDriverProviderClient
	for range 3 {
		p := testbed.StartProvider(t, testbed.ProviderOptions{
			Binary: bin, ProvidersDir: t.TempDir(), Kube: bed.kube,
			Args: []string{"-vault-addr=" + bed.vault.Addr, "-hmac-secret-name=" + secretName},
		})
		conn, err := grpc.NewClient("unix://"+p.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		providers = append(providers, p)
		clients = append(clients, v1alpha1.NewCSIDriverProviderClient(conn))
	}
	req := keyMountRequest(t)

	// versions mounts through every provider: their versions, in order.
	versions := func() ([]map[string]string, error) {
		out := make([]map[string]string, len(clients))
		for i, c := range clients {
			resp, err := c.Mount(t.Context(), req)
			if err != nil {
				return nil, fmt.Errorf("provider %d: %w", i, err)
			}
			out[i] = map[string]string{}
			for _, v := range resp.GetObjectVersion() {
				out[i][v.GetId()] = v.GetVersion()
			}
		}
		return out, nil
	}
	// agreeOn waits until every provider reports the same versions, not
	// those of before, and returns them.
	agreeOn := func(what string, before map[string]string) map[string]string {
		t.Helper()
		start := time.Now()
		var got []map[string]string
		eventually(t, keyBound, what, func() (bool, string) {
			var err error
			if got, err = versions(); err != nil {
				return false, err.Error()
			}
			for _, v := range got {
				if !maps.Equal(v, got[0]) || maps.Equal(v, before) || len(v) != 2 || v["username"] == "" {
					return false, fmt.Sprintf("versions %v, before %v", got, before)
				}
			}
			return true, ""
		})
		t.Logf("HMAC key: %s in %s", what, time.Since(start).Round(100*time.Millisecond))
		return got[0]
	}
	first := agreeOn("three providers agree", nil)

	secrets := bed.kube.Client.CoreV1().Secrets(testbed.ProviderNamespace)
	old, err := secrets.Get(t.Context(), secretName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := secrets.Delete(t.Context(), secretName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	second := agreeOn("after the Secret's delete, all providers agree on a new key", first)
	recreated, err := secrets.Get(t.Context(), secretName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the Secret was not recreated: %v", err)
	}
	if bytes.Equal(recreated.Data["key"], old.Data["key"]) {
		t.Fatal("the recreated Secret holds the old key")
	}

	theirs := bytes.Repeat([]byte{0x5a}, 32)
	if err := secrets.Delete(t.Context(), secretName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := secrets.Create(t.Context(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: secretName},
		Data:       map[string][]byte{"key": theirs},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	agreeOn("after the Secret's replacement, all providers take its key", second)
	if got, err := secrets.Get(t.Context(), secretName, metav1.GetOptions{}); err != nil || !bytes.Equal(got.Data["key"], theirs) {
		t.Fatalf("the replaced Secret: %v, %v; want it kept as written", got, err)
	}

	keys := []string{string(old.Data["key"]), string(recreated.Data["key"]), string(theirs)}
	for i, p := range providers {
		if leaks := testbed.FindLeaks(map[string]string{fmt.Sprintf("provider %d log", i): p.Logs()}, keys); len(leaks) > 0 {
			t.Errorf("an HMAC key in a provider's log: %v", leaks)
		}
	}
}

// keyMountRequest is the MountRequest the driver sends for a pod of the e2e
// service account reading two keys of secret/data/e2e/app.
func keyMountRequest(t *testing.T) *v1alpha1.MountRequest {
	t.Helper()
	name := fmt.Sprintf("hmac-%d", time.Now().UnixNano()%100000)
	pod, err := bed.kube.CreatePod(t.Context(), e2eNS, name, e2eSA)
	if err != nil {
		t.Fatal(err)
	}
	token, err := bed.kube.Token(t.Context(), e2eNS, e2eSA, "vault", pod, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := json.Marshal(map[string]any{"vault": map[string]string{
		"token": token, "expirationTimestamp": time.Now().Add(time.Hour).UTC().Format(time.RFC3339),
	}})
	if err != nil {
		t.Fatal(err)
	}
	attrs, err := json.Marshal(map[string]string{
		"roleName": "e2e",
		"objects": "- {objectName: username, secretPath: secret/data/e2e/app, secretKey: username}\n" +
			"- {objectName: password, secretPath: secret/data/e2e/app, secretKey: password}\n",
		"secretProviderClass":                      "hmac",
		"csi.storage.k8s.io/pod.name":              pod.Name,
		"csi.storage.k8s.io/pod.namespace":         e2eNS,
		"csi.storage.k8s.io/pod.uid":               string(pod.UID),
		"csi.storage.k8s.io/serviceAccount.name":   e2eSA,
		"csi.storage.k8s.io/ephemeral":             "true",
		"csi.storage.k8s.io/serviceAccount.tokens": string(tokens),
	})
	if err != nil {
		t.Fatal(err)
	}
	return &v1alpha1.MountRequest{Attributes: string(attrs), TargetPath: "/var/lib/kubelet/pods/" + string(pod.UID) + "/volumes/hmac", Permission: "420", Secrets: "null"}
}
