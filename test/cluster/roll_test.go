package cluster

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/okevault/vault-csi-provider/test/testbed"
)

// TestUpgradeRollsWhilePodsStart: `helm upgrade` that changes a provider
// argument rolls the DaemonSet while pods run and new pods keep starting.
// Running pods keep their files, every new pod starts, and no FailedMount
// event appears, during the roll or after it.
func TestUpgradeRollsWhilePodsStart(t *testing.T) {
	c := shared(t)
	s := bed.vault.Scenario()
	before := seedPod(t, c, "before-roll")
	oldPods := providerPods(t, c)

	ctx, stop := context.WithCancel(t.Context())
	var started []string
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ctx.Err() == nil; i++ {
			name := fmt.Sprintf("roll-%d", i)
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: s.Namespace}, Spec: podSpec(s.ServiceAccount, "testapp")}
			if _, err := c.Client.CoreV1().Pods(s.Namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
				if ctx.Err() == nil {
					t.Errorf("create %s: %v", name, err)
				}
				return
			}
			started = append(started, name)
			select {
			case <-ctx.Done():
			case <-time.After(1500 * time.Millisecond):
			}
		}
	})
	t.Cleanup(func() {
		for _, name := range started {
			deleteAndWait(t, c, s.Namespace, name)
		}
	})
	time.Sleep(3 * time.Second) // pods are starting when the roll begins
	err := c.InstallProvider(t.Context(), append(providerSets(), "logLevel=debug")...)
	time.Sleep(3 * time.Second) // and after it ends
	stop()
	wg.Wait()
	if err != nil {
		t.Fatalf("helm upgrade: %v", err)
	}
	newPods := providerPods(t, c)
	for name := range newPods {
		if oldPods[name] {
			t.Errorf("provider pod %s survived the upgrade: no roll happened", name)
		}
	}
	for _, name := range started {
		waitPodReady(t, c, s.Namespace, name, 2*time.Minute)
	}
	if got := readFile(t, c, s.Namespace, before.Name, "password"); got != s.SecretData["password"] {
		t.Errorf("the pod that ran through the roll reads password %q", got)
	}
	for _, e := range failedMounts(t, c, s.Namespace) {
		if e.InvolvedObject.Name == before.Name || strings.HasPrefix(e.InvolvedObject.Name, "roll-") {
			t.Errorf("FailedMount during the roll: %s: %s", e.InvolvedObject.Name, e.Message)
		}
	}
	t.Logf("%d pods started while the provider rolled", len(started))
}

// providerPods returns the names of the provider's pods now.
func providerPods(t *testing.T, c *testbed.Cluster) map[string]bool {
	t.Helper()
	pods, err := c.Client.CoreV1().Pods(testbed.ProviderNamespace).List(t.Context(), metav1.ListOptions{
		LabelSelector: "app.kubernetes.io/instance=" + testbed.ProviderRelease,
	})
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, p := range pods.Items {
		names[p.Name] = true
	}
	return names
}

// TestProviderDeletedMidMount: the provider pod is killed while a mount is
// in flight (Vault answers slowly, through a delaying proxy of the test's
// own on the node's address); kubelet retries the mount against the
// DaemonSet's next provider pod, and the pod starts.
func TestProviderDeletedMidMount(t *testing.T) {
	c := shared(t)
	s := bed.vault.Scenario()
	slow := startSlowProxy(t, bed.vault.Addr, 6*time.Second)

	params := seedClass()
	params["vaultAddress"] = slow.url
	applyClass(t, c, s.Namespace, "slow", params)
	pod := createPod(t, c, s.Namespace, "slow-mount", podSpec(s.ServiceAccount, "slow"))
	t.Cleanup(func() { deleteAndWait(t, c, s.Namespace, pod.Name) })

	eventually(t, time.Minute, "a mount in flight at the slow Vault", func() (bool, string) {
		return slow.inFlight.Load() > 0, fmt.Sprintf("%d requests in flight", slow.inFlight.Load())
	})
	grace := int64(0)
	for name := range providerPods(t, c) {
		if err := c.Client.CoreV1().Pods(testbed.ProviderNamespace).Delete(t.Context(), name, metav1.DeleteOptions{GracePeriodSeconds: &grace}); err != nil {
			t.Fatal(err)
		}
	}
	waitPodReady(t, c, s.Namespace, pod.Name, 3*time.Minute)
	if got := readFile(t, c, s.Namespace, pod.Name, "username"); got != s.SecretData["username"] {
		t.Errorf("username = %q", got)
	}
	if err := c.WaitDaemonSet(t.Context(), testbed.ProviderNamespace, testbed.ProviderRelease); err != nil {
		t.Fatal(err)
	}
}

// slowProxy is a fault injector (a real Vault cannot be made slow): a
// reverse proxy to Vault that holds each request for a delay.
type slowProxy struct {
	url      string
	inFlight atomic.Int32
}

// slowProxyAddr is where startSlowProxy listens: a fixed port, so that the
// suite's install can list it in allowedVaultAddresses (the chart allows
// only vault.address by default).
var slowProxyAddr = net.JoinHostPort(testbed.NodeIP, "18299")

func startSlowProxy(t *testing.T, target string, delay time.Duration) *slowProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", slowProxyAddr)
	if err != nil {
		t.Fatal(err)
	}
	p := &slowProxy{url: "http://" + lis.Addr().String()}
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.inFlight.Add(1)
		defer p.inFlight.Add(-1)
		select {
		case <-r.Context().Done():
			return
		case <-time.After(delay):
		}
		rp.ServeHTTP(w, r)
	})}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(func() { _ = srv.Close() })
	return p
}
