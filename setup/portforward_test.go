package setup

import (
	"bytes"
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/streaming/pkg/httpstream"

	"github.com/okevault/vault-csi-provider/setup/deploy"
	"github.com/okevault/vault-csi-provider/test/testbed"
)

// vaultPod is a pod of Vault CR "vault" with the labels Vault's Kubernetes
// service registration sets, as a kubelet would leave its status.
func vaultPod(name string, running, ready bool, active string) corev1.Pod {
	p := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "vault", Labels: map[string]string{
		"app.kubernetes.io/name": "vault", "vault_cr": "vault",
		"vault-initialized": "true", "vault-sealed": "false",
	}}}
	if active != "" {
		p.Labels["vault-active"] = active
	}
	if running {
		p.Status.Phase = corev1.PodRunning
	}
	if ready {
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	}
	return p
}

func TestChoosePod(t *testing.T) {
	tests := []struct {
		name string
		pods []corev1.Pod
		want string
	}{
		{"active over ready", []corev1.Pod{vaultPod("vault-0", true, true, "false"), vaultPod("vault-1", true, true, "true")}, "vault-1"},
		{"ready over running", []corev1.Pod{vaultPod("vault-0", true, false, ""), vaultPod("vault-2", true, true, "false")}, "vault-2"},
		{"running sealed pod when nothing is ready", []corev1.Pod{vaultPod("vault-1", true, false, ""), vaultPod("vault-0", false, false, "")}, "vault-1"},
		{"first by name among equals", []corev1.Pod{vaultPod("vault-2", true, true, ""), vaultPod("vault-0", true, true, "")}, "vault-0"},
		{"none running", []corev1.Pod{vaultPod("vault-0", false, false, "")}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := choosePod(tt.pods)
			switch {
			case tt.want == "" && !errors.Is(err, errNotYet):
				t.Fatalf("got %v, %v; want errNotYet", p, err)
			case tt.want != "" && (err != nil || p.Name != tt.want):
				t.Fatalf("got %v, %v; want %s", p, err, tt.want)
			}
		})
	}
}

// TestForwardAndWait against a real apiserver (no kubelet, so no stream
// reaches a pod): the forward goes to the pod the labels say is active,
// through the injected dialer, and a dial failure names the pod; the Vault
// wait reports pods ready, unsealed and active, and its timeout names what
// never became ready.
func TestForwardAndWait(t *testing.T) {
	kube := testbed.StartKube(t)
	ctx := t.Context()
	if err := kube.CreateServiceAccount(ctx, "vault", "default"); err != nil { // no controller-manager makes it
		t.Fatal(err)
	}
	var dialed []string
	dial := func(ns, pod string) (httpstream.Dialer, error) {
		dialed = append(dialed, ns+"/"+pod)
		return nil, errors.New("no kubelet in this bed")
	}
	f := &forward{kube: kube.Client, dial: dial, namespace: "vault", vault: "vault", scheme: "https"}
	if err := f.open(ctx); !errors.Is(err, errNotYet) {
		t.Fatalf("no pods: %v, want errNotYet", err)
	}
	createPods(t, kube, vaultPod("vault-0", true, true, "false"), vaultPod("vault-1", true, true, "true"), vaultPod("vault-2", true, false, "false"))
	err := f.open(ctx)
	if err == nil || !strings.Contains(err.Error(), "port-forward to pod vault/vault-1") || len(dialed) != 1 || dialed[0] != "vault/vault-1" {
		t.Fatalf("open: %v, dialed %v; want a dial of the active pod vault/vault-1", err, dialed)
	}

	out := &bytes.Buffer{}
	r := &Runner{Out: out}
	v := &deploy.Vault{Name: "vault", Size: 3}
	ctx2, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err = r.waitUntil(ctx2, "Vault vault/vault", time.Now().Add(3*time.Second), time.Second, vaultReady(kube.Client, "vault", v))
	want := "timed out after 3s waiting for Vault vault/vault: 2/3 pods ready, 3 initialised, 3 unsealed, 1 active"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("wait: %v\nwant %q", err, want)
	}
	if !strings.Contains(out.String(), "waiting for Vault vault/vault: 2/3 pods ready") {
		t.Fatalf("no progress line:\n%s", out)
	}
}

// createPods makes the pods with their status, as a kubelet would report it.
func createPods(t *testing.T, kube *testbed.Kube, pods ...corev1.Pod) {
	t.Helper()
	ctx := t.Context()
	for _, p := range pods {
		status := p.Status
		automount := false
		p.Spec = corev1.PodSpec{AutomountServiceAccountToken: &automount, Containers: []corev1.Container{{Name: "vault", Image: "hashicorp/vault:1.20.4"}}}
		created, err := kube.Client.CoreV1().Pods(p.Namespace).Create(ctx, &p, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		created.Status = status
		if _, err := kube.Client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFollowToPod against a real apiserver: through a port-forward, a
// standby's redirect is followed only to a pod of the deployed Vault named
// as its api_addr names it (a forward to that pod is dialled); any other
// address, scheme, port or pod is refused without a dial.
func TestFollowToPod(t *testing.T) {
	kube := testbed.StartKube(t)
	ctx := t.Context()
	if err := kube.CreateServiceAccount(ctx, "vault", "default"); err != nil {
		t.Fatal(err)
	}
	other := vaultPod("postgres-0", true, true, "")
	other.Labels = map[string]string{"app": "postgres"}
	createPods(t, kube, vaultPod("vault-0", true, true, "false"), vaultPod("vault-1", true, true, "true"), other)

	var dialed []string
	dial := func(ns, pod string) (httpstream.Dialer, error) {
		dialed = append(dialed, ns+"/"+pod)
		return nil, errors.New("no kubelet in this bed")
	}
	r := &Runner{Out: &bytes.Buffer{}, fwd: &forward{kube: kube.Client, dial: dial, namespace: "vault", vault: "vault", scheme: "https", pod: "vault-0", port: 40000}}
	from, _ := url.Parse("https://127.0.0.1:40000/v1/sys/storage/raft/snapshot")
	tests := []struct {
		to, dial string
	}{
		{"https://vault-1.vault:8200/v1/sys/storage/raft/snapshot", "vault/vault-1"},
		{"https://vault-1.vault.svc.cluster.local:8200/v1/x", "vault/vault-1"},
		{"https://127.0.0.1:40000/v1/x", ""}, // the same forward: followed, no new dial
		{"https://evil.example:8200/v1/x", ""},
		{"https://vault-1.other:8200/v1/x", ""},
		{"http://vault-1.vault:8200/v1/x", ""},
		{"https://vault-1.vault:8201/v1/x", ""},
		{"https://postgres-0.vault:8200/v1/x", ""},
	}
	for _, tt := range tests {
		t.Run(tt.to, func(t *testing.T) {
			dialed = nil
			to, _ := url.Parse(tt.to)
			u, err := r.followToPod(ctx, from, to)
			switch {
			case tt.dial != "":
				if len(dialed) != 1 || dialed[0] != tt.dial || err == nil || !strings.Contains(err.Error(), "port-forward to pod "+tt.dial) {
					t.Errorf("got %v, %v, dialed %v; want a forward to %s", u, err, dialed, tt.dial)
				}
			case to.Host == from.Host:
				if err != nil || u.String() != tt.to || len(dialed) > 0 {
					t.Errorf("got %v, %v, dialed %v; want it followed as is", u, err, dialed)
				}
			default:
				if err == nil || len(dialed) > 0 {
					t.Errorf("got %v, %v, dialed %v; want it refused without a dial", u, err, dialed)
				}
			}
		})
	}
}
