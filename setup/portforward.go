package setup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
	"k8s.io/streaming/pkg/httpstream"
)

// Reaching the deployed Vault from outside the cluster: a port-forward
// through the apiserver to one of its pods, as `kubectl port-forward` does,
// and https://127.0.0.1:<local port>, a name the operator's certificate
// carries (vault-operator v1.23.0, hostsForService).

// vaultPort is the port of Vault's listener in the operator's pods.
const vaultPort = 8200

// errNotYet: what deploy makes is not there yet (a plan of a new cluster).
var errNotYet = errors.New("not made yet")

// errNoVaultPod: the deployed Vault has no pod to forward to (yet).
var errNoVaultPod = fmt.Errorf("no running Vault pod (%w)", errNotYet)

// PodDialer opens the stream connection of a port-forward to a pod. The
// command uses APIServerDialer; tests may inject another.
type PodDialer func(namespace, pod string) (httpstream.Dialer, error)

// APIServerDialer forwards through the apiserver of cfg: WebSockets first,
// SPDY when the apiserver does not upgrade to them (kubectl's order).
func APIServerDialer(cfg *rest.Config) (PodDialer, error) {
	transport, upgrader, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return func(ns, pod string) (httpstream.Dialer, error) {
		u := cs.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(pod).SubResource("portforward").URL()
		viaSPDY := spdy.NewDialerForStreaming(upgrader, &http.Client{Transport: transport}, http.MethodPost, u)
		viaWS, err := portforward.NewSPDYOverWebsocketDialerForStreaming(u, cfg)
		if err != nil {
			return nil, err
		}
		return portforward.NewFallbackDialerForStreaming(viaWS, viaSPDY, func(err error) bool {
			return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
		}), nil
	}, nil
}

// vaultPodSelector selects the pods of Vault CR name (vault-operator's LabelsForVault).
func vaultPodSelector(name string) string {
	return "app.kubernetes.io/name=vault,vault_cr=" + name
}

// forward is a port-forward to one pod of the deployed Vault.
type forward struct {
	kube      kubernetes.Interface
	dial      PodDialer
	namespace string
	vault     string // the Vault CR's name
	scheme    string // https, or http with the operator's TLS disabled

	pod     string
	podUID  types.UID
	port    uint16
	stop    context.CancelFunc
	stopped chan struct{} // closed when the forward has ended
}

// choosePod picks the pod to forward to: the active one when Vault's
// Kubernetes service registration has labelled it (vault-active=true), else
// a ready one, else any running one (a sealed pod is not ready but answers).
func choosePod(pods []corev1.Pod) (*corev1.Pod, error) {
	rank := func(p *corev1.Pod) int {
		switch {
		case p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning:
			return 0
		case p.Labels["vault-active"] == "true" && podReady(p):
			return 3
		case podReady(p):
			return 2
		default:
			return 1
		}
	}
	var best *corev1.Pod
	for i := range pods {
		if r := rank(&pods[i]); r > 0 && (best == nil || r > rank(best) || (r == rank(best) && pods[i].Name < best.Name)) {
			best = &pods[i]
		}
	}
	if best == nil {
		return nil, errNoVaultPod
	}
	return best, nil
}

func podReady(p *corev1.Pod) bool {
	return slices.ContainsFunc(p.Status.Conditions, func(c corev1.PodCondition) bool {
		return c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue
	})
}

// open forwards a free local port on 127.0.0.1 to a chosen pod's Vault port.
func (f *forward) open(ctx context.Context) error {
	pods, err := f.kube.CoreV1().Pods(f.namespace).List(ctx, metav1.ListOptions{LabelSelector: vaultPodSelector(f.vault)})
	if err != nil {
		return fmt.Errorf("list the pods of Vault %s/%s: %w", f.namespace, f.vault, err)
	}
	pod, err := choosePod(pods.Items)
	if err != nil {
		return fmt.Errorf("pods of Vault %s/%s: %w", f.namespace, f.vault, err)
	}
	return f.openTo(ctx, pod)
}

// openPod forwards to the named pod, if it is a running pod of the Vault.
func (f *forward) openPod(ctx context.Context, name string) error {
	pod, err := f.kube.CoreV1().Pods(f.namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("pod %s/%s: %w", f.namespace, name, err)
	}
	sel, err := labels.Parse(vaultPodSelector(f.vault))
	if err != nil {
		return err
	}
	if !sel.Matches(labels.Set(pod.Labels)) || pod.Status.Phase != corev1.PodRunning {
		return fmt.Errorf("pod %s/%s is not a running pod of Vault %s", f.namespace, name, f.vault)
	}
	return f.openTo(ctx, pod)
}

// podIn returns the pod a Vault address names as the operator's api_addr
// does (https://<pod>.<namespace>:8200, or with .svc or .svc.cluster.local):
// the scheme and port of the forward, and a name in its namespace.
func (f *forward) podIn(u *url.URL) (string, bool) {
	if u.Scheme != f.scheme || (u.Port() != "" && u.Port() != strconv.Itoa(vaultPort)) {
		return "", false
	}
	pod, domain, _ := strings.Cut(u.Hostname(), ".")
	ns := f.namespace
	ok := pod != "" && (domain == ns || domain == ns+".svc" || domain == ns+".svc.cluster.local")
	return pod, ok
}

// openTo forwards a free local port on 127.0.0.1 to pod's Vault port.
func (f *forward) openTo(ctx context.Context, pod *corev1.Pod) error {
	dialer, err := f.dial(f.namespace, pod.Name)
	if err != nil {
		return fmt.Errorf("port-forward to pod %s/%s: %w", f.namespace, pod.Name, err)
	}
	// The forward lives until close, not until ctx of this call ends.
	fctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	ready := make(chan struct{})
	pf, err := portforward.NewOnAddressesForStreamingWithContext(fctx, dialer, []string{"127.0.0.1"}, []string{"0:" + strconv.Itoa(vaultPort)}, ready, io.Discard, io.Discard)
	if err != nil {
		stop()
		return err
	}
	stopped := make(chan struct{})
	var ferr error
	go func() {
		defer close(stopped)
		ferr = pf.ForwardPorts()
	}()
	select {
	case <-ready:
	case <-stopped:
		stop()
		return fmt.Errorf("port-forward to pod %s/%s: %w", f.namespace, pod.Name, ferr)
	case <-ctx.Done():
		stop()
		<-stopped
		return ctx.Err()
	}
	ports, err := pf.GetPorts()
	if err != nil || len(ports) != 1 {
		stop()
		<-stopped
		return fmt.Errorf("port-forward to pod %s/%s: no local port (%w)", f.namespace, pod.Name, err)
	}
	f.close()
	f.pod, f.podUID, f.port, f.stop, f.stopped = pod.Name, pod.UID, ports[0].Local, stop, stopped
	return nil
}

// addr is the local address of the forward.
func (f *forward) addr() string {
	return f.scheme + "://127.0.0.1:" + strconv.Itoa(int(f.port))
}

// alive reports whether the forward still runs to the same pod, which
// is not being deleted. A pod replaced under the same name (a
// StatefulSet's) has another UID.
func (f *forward) alive(ctx context.Context) bool {
	if f.stopped == nil {
		return false
	}
	select {
	case <-f.stopped:
		return false
	default:
	}
	p, err := f.kube.CoreV1().Pods(f.namespace).Get(ctx, f.pod, metav1.GetOptions{})
	return err == nil && p.UID == f.podUID && p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning
}

// close ends the forward and waits until its listener is closed.
func (f *forward) close() {
	if f.stop == nil {
		return
	}
	f.stop()
	select {
	case <-f.stopped:
	case <-time.After(5 * time.Second): // a stuck dial must not hang the exit
	}
	f.stop, f.stopped = nil, nil
}
