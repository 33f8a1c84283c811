package testbed

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"
)

const (
	// ServiceAccountIssuer is the issuer of the cluster's service-account
	// tokens, as on a kubeadm or OKE cluster.
	ServiceAccountIssuer = "https://kubernetes.default.svc.cluster.local"
	// NodeName is the node that CreatePod assigns pods to and that the
	// driver runs as, so that the driver's node-filtered caches see them.
	NodeName = "testbed-node"
	// fieldManager owns what Apply writes.
	fieldManager = "testbed"
)

// KubeOptions configure NewKube. The zero value is ready to use.
type KubeOptions struct {
	// Dir holds certificates, etcd data and logs. Empty: a new temporary
	// directory that Close removes.
	Dir string
	// ExtraAPIServerFlags are appended to kube-apiserver's command line.
	ExtraAPIServerFlags []string
	// Address is where the apiserver listens and what it advertises as the
	// kubernetes Service's endpoint. Empty: 127.0.0.1, with no endpoint
	// reconciled (1.37 refuses to advertise a loopback address).
	Address string
	// ServiceCIDR is the Services' ClusterIP range. Empty: 10.0.0.0/24.
	ServiceCIDR string
	// Nodes readies the apiserver for kubelets: the Node authorizer and the
	// NodeRestriction admission plugin beside RBAC, and a client certificate
	// (in system:masters) for calls to kubelets (logs, exec).
	Nodes bool
}

// Kube is a real etcd and kube-apiserver on 127.0.0.1. No controller
// manager, scheduler or kubelet runs: objects are stored and served, not
// acted on.
type Kube struct {
	// Host is the apiserver's URL, https://127.0.0.1:PORT.
	Host string
	// CAPEM is the CA that signed the apiserver's serving certificate.
	CAPEM []byte
	// ServiceAccountPublicKeyPEM verifies the cluster's service-account tokens.
	ServiceAccountPublicKeyPEM []byte
	// RESTConfig authenticates as an admin in system:masters.
	RESTConfig *rest.Config
	// Client and Dynamic use RESTConfig.
	Client  kubernetes.Interface
	Dynamic dynamic.Interface
	// KubeconfigPath is an admin kubeconfig for child processes (kubectl, helm).
	KubeconfigPath string
	// EtcdURL is the apiserver's etcd, which also holds NewVaultHA's storage
	// under a prefix of its own.
	EtcdURL string
	// Dir holds the certificates, etcd's data and the logs.
	Dir string

	ownDir     bool
	adminToken string
	pki        *pki
	opts       KubeOptions
	etcd       *process
	apiserver  *process
	// apiserverBin and apiserverArgs (etcd and extra flags) restart the
	// apiserver as it was.
	apiserverBin  string
	apiserverArgs []string
	mapper        *restmapper.DeferredDiscoveryRESTMapper
}

// StartKube starts a Kube for the test and stops it at cleanup, printing the
// log tails if the test failed.
func StartKube(t testing.TB) *Kube {
	t.Helper()
	skipShort(t)
	k, err := NewKube(t.Context(), KubeOptions{})
	must(t, err)
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(k.LogTail(tailLines))
		}
		if err := k.Close(); err != nil {
			t.Errorf("testbed: %v", err)
		}
	})
	return k
}

// NewKube starts etcd and kube-apiserver and waits until /readyz answers.
// ctx bounds the start only; Close stops the processes.
func NewKube(ctx context.Context, opts KubeOptions) (_ *Kube, err error) {
	etcdBin, err := Bin("etcd")
	if err != nil {
		return nil, err
	}
	apiserverBin, err := Bin("kube-apiserver")
	if err != nil {
		return nil, err
	}
	dir, owned, err := partDir(opts.Dir, "testbed-kube-")
	if err != nil {
		return nil, err
	}
	if opts.Address == "" {
		opts.Address = "127.0.0.1"
	}
	if opts.ServiceCIDR == "" {
		opts.ServiceCIDR = "10.0.0.0/24"
	}
	k := &Kube{Dir: dir, ownDir: owned, opts: opts}
	defer func() {
		if err != nil {
			err = errors.Join(err, k.Close())
		}
	}()

	var serving []net.IP
	if ip := net.ParseIP(opts.Address); ip != nil && !ip.IsLoopback() {
		serving = append(serving, ip)
	}
	if first, err := firstServiceIP(opts.ServiceCIDR); err == nil {
		serving = append(serving, first)
	}
	keys, err := newPKI(serving...)
	if err != nil {
		return nil, err
	}
	k.pki = keys
	k.CAPEM = keys.caPEM
	k.ServiceAccountPublicKeyPEM = keys.saPubPEM
	k.adminToken = randomHex(24)
	files := map[string][]byte{
		"ca.crt":        keys.caPEM,
		"apiserver.crt": keys.servingPEM,
		"apiserver.key": keys.servingKeyPEM,
		"sa.key":        keys.saKeyPEM,
		"sa.pub":        keys.saPubPEM,
		// token,user,uid,"groups"
		"tokens.csv": fmt.Appendf(nil, "%s,testbed-admin,testbed-admin,\"system:masters\"\n", k.adminToken),
	}
	if opts.Nodes {
		crt, key, err := keys.issue(certRequest{commonName: "kube-apiserver-kubelet-client", organizations: []string{"system:masters"}})
		if err != nil {
			return nil, err
		}
		files["kubelet-client.crt"], files["kubelet-client.key"] = crt, key
		files["ca.key"] = keys.caKeyPEM // the controller-manager signs CSRs with it
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return nil, fmt.Errorf("write %s: %w", name, err)
		}
	}

	k.EtcdURL, err = k.startEtcd(ctx, etcdBin)
	if err != nil {
		return nil, err
	}
	if err := k.startAPIServer(ctx, apiserverBin, k.EtcdURL, opts.ExtraAPIServerFlags); err != nil {
		return nil, err
	}

	k.RESTConfig = &rest.Config{
		Host:            k.Host,
		BearerToken:     k.adminToken,
		TLSClientConfig: rest.TLSClientConfig{CAData: k.CAPEM},
		QPS:             100,
		Burst:           200,
		UserAgent:       "testbed",
	}
	if k.Client, err = kubernetes.NewForConfig(k.RESTConfig); err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	if k.Dynamic, err = dynamic.NewForConfig(k.RESTConfig); err != nil {
		return nil, fmt.Errorf("dynamic client: %w", err)
	}
	k.mapper = restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(k.Client.Discovery()))
	k.KubeconfigPath = filepath.Join(dir, "kubeconfig")
	if err := writeKubeconfig(k.KubeconfigPath, k.Host, k.CAPEM, tokenUser(k.adminToken)); err != nil {
		return nil, err
	}
	return k, nil
}

func (k *Kube) startEtcd(ctx context.Context, bin string) (string, error) {
	var lastErr error
	for range 3 { // a port taken between freePort and bind: retry with new ports
		client, err1 := freePort()
		peer, err2 := freePort()
		if err := errors.Join(err1, err2); err != nil {
			return "", err
		}
		clientURL, peerURL := "http://"+hostPort(client), "http://"+hostPort(peer)
		dataDir := filepath.Join(k.Dir, "etcd")
		if err := os.RemoveAll(dataDir); err != nil {
			return "", fmt.Errorf("reset etcd data: %w", err)
		}
		p, err := startProcess(k.Dir, "etcd", childEnv(), bin,
			"--name=testbed",
			"--data-dir="+dataDir,
			"--listen-client-urls="+clientURL,
			"--advertise-client-urls="+clientURL,
			"--listen-peer-urls="+peerURL,
			"--initial-advertise-peer-urls="+peerURL,
			"--initial-cluster=testbed="+peerURL,
			"--unsafe-no-fsync", // a test cluster needs no durability
			"--log-level=warn",
		)
		if err != nil {
			return "", err
		}
		k.etcd = p
		hc := &http.Client{Timeout: 2 * time.Second}
		lastErr = waitReady(ctx, p, "/health", func(ctx context.Context) error {
			return httpOK(ctx, hc, clientURL+"/health", "")
		})
		if lastErr == nil {
			return clientURL, nil
		}
		if !p.exited() || !strings.Contains(p.logs(), "address already in use") {
			return "", lastErr
		}
	}
	return "", lastErr
}

// startAPIServer starts kube-apiserver on a free port, retrying with
// another when the port was taken meanwhile.
func (k *Kube) startAPIServer(ctx context.Context, bin, etcdURL string, extra []string) error {
	k.apiserverArgs = append([]string{"--etcd-servers=" + etcdURL}, extra...)
	k.apiserverBin = bin
	var lastErr error
	for range 3 {
		port, err := freePort()
		if err != nil {
			return err
		}
		if lastErr = k.runAPIServer(ctx, port); lastErr == nil {
			return nil
		}
		if k.apiserver == nil || !k.apiserver.exited() || !strings.Contains(k.apiserver.logs(), "address already in use") {
			return lastErr
		}
	}
	return lastErr
}

// runAPIServer starts kube-apiserver on port and waits for /readyz.
func (k *Kube) runAPIServer(ctx context.Context, port int) error {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(k.CAPEM)
	hc := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	defer hc.CloseIdleConnections()
	f := func(name string) string { return filepath.Join(k.Dir, name) }
	authz, loopback := "RBAC", net.ParseIP(k.opts.Address).IsLoopback()
	args := []string{
		"--etcd-prefix=/registry",
		"--bind-address=" + k.opts.Address,
		"--advertise-address=" + k.opts.Address,
		fmt.Sprintf("--secure-port=%d", port),
		"--cert-dir=" + f("certs"),
		"--tls-cert-file=" + f("apiserver.crt"),
		"--tls-private-key-file=" + f("apiserver.key"),
		"--client-ca-file=" + f("ca.crt"),
		"--token-auth-file=" + f("tokens.csv"),
		"--allow-privileged=true",
		"--service-account-issuer=" + ServiceAccountIssuer,
		"--service-account-key-file=" + f("sa.pub"),
		"--service-account-signing-key-file=" + f("sa.key"),
		"--service-cluster-ip-range=" + k.opts.ServiceCIDR,
		"--enable-priority-and-fairness=false",
		// Stop within seconds of SIGTERM even while clients hold watches
		// (the provider watches its HMAC key Secret): without it net/http's
		// graceful shutdown waits up to --request-timeout (60 s) for watch
		// streams to end. HA control planes behind a load balancer set it too.
		"--shutdown-send-retry-after=true",
	}
	if loopback {
		// 1.37 refuses a loopback advertise address unless endpoints are not reconciled.
		args = append(args, "--endpoint-reconciler-type=none")
	}
	if k.opts.Nodes {
		authz = "Node,RBAC"
		args = append(args,
			"--enable-admission-plugins=NodeRestriction",
			"--kubelet-client-certificate="+f("kubelet-client.crt"),
			"--kubelet-client-key="+f("kubelet-client.key"),
			"--kubelet-certificate-authority="+f("ca.crt"),
			"--kubelet-preferred-address-types=InternalIP",
		)
	}
	args = append(args, "--authorization-mode="+authz)
	k.apiserver = nil
	p, err := startProcess(k.Dir, "kube-apiserver", childEnv(), k.apiserverBin, append(args, k.apiserverArgs...)...)
	if err != nil {
		return err
	}
	k.apiserver = p
	host := "https://" + net.JoinHostPort(k.opts.Address, strconv.Itoa(port))
	if err := waitReady(ctx, p, "/readyz", func(ctx context.Context) error {
		return httpOK(ctx, hc, host+"/readyz", k.adminToken)
	}); err != nil {
		return err
	}
	k.Host = host
	return nil
}

// Close stops kube-apiserver and etcd and removes the directory NewKube created.
func (k *Kube) Close() error {
	if k == nil {
		return nil
	}
	stopAPIServer := k.apiserver.stop
	if !net.ParseIP(k.opts.Address).IsLoopback() {
		// With its endpoint reconciled (a cluster bed), kube-apiserver
		// waits out its graceful termination on SIGTERM for longer than the
		// bed's stop timeout. It keeps no state (etcd does): kill it.
		stopAPIServer = k.apiserver.kill
	}
	errs := []error{stopAPIServer(), k.etcd.stop()}
	k.apiserver, k.etcd = nil, nil
	return closeErrors(append(errs, removeDir(k.Dir, k.ownDir))...)
}

// Logs returns the whole logs of etcd and kube-apiserver.
func (k *Kube) Logs() string { return logsOf(k.etcd, k.apiserver) }

// LogTail returns the last lines of each process's log.
func (k *Kube) LogTail(lines int) string { return tailOf(lines, k.etcd, k.apiserver) }

// CreateNamespace creates the namespace unless it exists.
func (k *Kube) CreateNamespace(ctx context.Context, name string) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := k.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", name, err)
	}
	return nil
}

// CreateServiceAccount creates the namespace and the service account unless
// they exist.
func (k *Kube) CreateServiceAccount(ctx context.Context, namespace, name string) error {
	if err := k.CreateNamespace(ctx, namespace); err != nil {
		return err
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace}}
	if _, err := k.Client.CoreV1().ServiceAccounts(namespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create service account %s/%s: %w", namespace, name, err)
	}
	return nil
}

// CreatePod creates a minimal pod running as serviceAccount on NodeName
// (creating the namespace and service account if needed). No kubelet runs
// it: it exists so tokens can be bound to it and the driver can find it.
// An existing pod of that name is an error.
func (k *Kube) CreatePod(ctx context.Context, namespace, name, serviceAccount string) (*corev1.Pod, error) {
	if err := k.CreateServiceAccount(ctx, namespace, serviceAccount); err != nil {
		return nil, err
	}
	automount := false
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{
			ServiceAccountName:           serviceAccount,
			AutomountServiceAccountToken: &automount,
			NodeName:                     NodeName,
			Containers: []corev1.Container{{
				Name:  "app",
				Image: "registry.k8s.io/pause:3.10",
			}},
		},
	}
	created, err := k.Client.CoreV1().Pods(namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create pod %s/%s: %w", namespace, name, err)
	}
	return created, nil
}

// Token returns a service-account token from the TokenRequest API for
// audience ("" = the apiserver's own audience), bound to pod when pod is not
// nil. ttl 0 takes the apiserver's default (1h); the apiserver refuses less
// than 10 minutes.
func (k *Kube) Token(ctx context.Context, namespace, serviceAccount, audience string, pod *corev1.Pod, ttl time.Duration) (string, error) {
	st, err := k.tokenRequest(ctx, namespace, serviceAccount, audience, pod, ttl)
	if err != nil {
		return "", err
	}
	return st.Token, nil
}

func (k *Kube) tokenRequest(ctx context.Context, namespace, serviceAccount, audience string, pod *corev1.Pod, ttl time.Duration) (authenticationv1.TokenRequestStatus, error) {
	tr := &authenticationv1.TokenRequest{}
	if audience != "" {
		tr.Spec.Audiences = []string{audience}
	}
	if ttl > 0 {
		secs := int64(ttl / time.Second)
		tr.Spec.ExpirationSeconds = &secs
	}
	if pod != nil {
		tr.Spec.BoundObjectRef = &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}
	}
	res, err := k.Client.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, serviceAccount, tr, metav1.CreateOptions{})
	if err != nil {
		return authenticationv1.TokenRequestStatus{}, fmt.Errorf("token request for %s/%s: %w", namespace, serviceAccount, err)
	}
	return res.Status, nil
}

// Apply server-side applies multi-document YAML (or JSON). Objects without
// a namespace go to "default" when namespaced. After a
// CustomResourceDefinition, Apply waits until it is Established, so later
// documents may use it.
func (k *Kube) Apply(ctx context.Context, yamlDocs []byte) error {
	return k.apply(ctx, k.Dynamic, yamlDocs)
}

func (k *Kube) apply(ctx context.Context, dyn dynamic.Interface, yamlDocs []byte) error {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(yamlDocs), 4096)
	for {
		var doc map[string]any
		if err := dec.Decode(&doc); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("apply: decode: %w", err)
		}
		if len(doc) == 0 {
			continue
		}
		data, err := json.Marshal(doc)
		if err != nil {
			return fmt.Errorf("apply: %w", err)
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(data); err != nil {
			return fmt.Errorf("apply: %w", err)
		}
		if err := k.applyOne(ctx, dyn, u, data); err != nil {
			return err
		}
	}
}

func (k *Kube) applyOne(ctx context.Context, dyn dynamic.Interface, u *unstructured.Unstructured, data []byte) error {
	gvk := u.GroupVersionKind()
	what := fmt.Sprintf("%s %s", gvk.Kind, u.GetName())
	mapping, err := k.restMapping(ctx, gvk)
	if err != nil {
		return fmt.Errorf("apply %s: %w", what, err)
	}
	var ri dynamic.ResourceInterface = dyn.Resource(mapping.Resource)
	if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
		ns := u.GetNamespace()
		if ns == "" {
			ns = metav1.NamespaceDefault
		}
		what = fmt.Sprintf("%s %s/%s", gvk.Kind, ns, u.GetName())
		ri = dyn.Resource(mapping.Resource).Namespace(ns)
	}
	force := true
	if _, err := ri.Patch(ctx, u.GetName(), types.ApplyPatchType, data, metav1.PatchOptions{FieldManager: fieldManager, Force: &force}); err != nil {
		return fmt.Errorf("apply %s: %w", what, err)
	}
	if gvk.Group == "apiextensions.k8s.io" && gvk.Kind == "CustomResourceDefinition" {
		if err := k.waitEstablished(ctx, u.GetName()); err != nil {
			return fmt.Errorf("apply %s: %w", what, err)
		}
		k.mapper.Reset()
	}
	return nil
}

// restMapping resolves gvk, refreshing discovery while a just-established
// CRD is not yet listed.
func (k *Kube) restMapping(ctx context.Context, gvk schema.GroupVersionKind) (*meta.RESTMapping, error) {
	deadline := time.Now().Add(15 * time.Second)
	for {
		m, err := k.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err == nil || !meta.IsNoMatchError(err) || time.Now().After(deadline) {
			return m, err
		}
		k.mapper.Reset()
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return nil, err
		}
	}
}

var crdResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

func (k *Kube) waitEstablished(ctx context.Context, name string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		crd, err := k.Dynamic.Resource(crdResource).Get(ctx, name, metav1.GetOptions{})
		if err == nil && conditionTrue(crd, "Established") {
			return nil
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return fmt.Errorf("wait for CRD %s to be Established: %w", name, err)
		}
	}
}

func conditionTrue(u *unstructured.Unstructured, typ string) bool {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, ok := c.(map[string]any)
		if ok && m["type"] == typ && m["status"] == "True" {
			return true
		}
	}
	return false
}

// tokenUser is a kubeconfig user that authenticates with a bearer token.
func tokenUser(token string) map[string]any { return map[string]any{"token": token} }

// certUser is a kubeconfig user that authenticates with a client certificate.
func certUser(certPEM, keyPEM []byte) map[string]any {
	return map[string]any{"client-certificate-data": certPEM, "client-key-data": keyPEM}
}

// writeKubeconfig writes a kubeconfig with one cluster, one user and one
// current context. (Written by hand: client-go's clientcmd would pull
// github.com/spf13/pflag into the shared go.mod.)
func writeKubeconfig(path, host string, caPEM []byte, user map[string]any) error {
	type named struct {
		Name    string         `json:"name"`
		Cluster map[string]any `json:"cluster,omitempty"`
		User    map[string]any `json:"user,omitempty"`
		Context map[string]any `json:"context,omitempty"`
	}
	cfg := map[string]any{
		"apiVersion":      "v1",
		"kind":            "Config",
		"clusters":        []named{{Name: "testbed", Cluster: map[string]any{"server": host, "certificate-authority-data": caPEM}}},
		"users":           []named{{Name: "testbed", User: user}},
		"contexts":        []named{{Name: "testbed", Context: map[string]any{"cluster": "testbed", "user": "testbed", "namespace": metav1.NamespaceDefault}}},
		"current-context": "testbed",
	}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	return nil
}

// httpOK GETs url (with a bearer token if given) and wants a 200.
func httpOK(ctx context.Context, hc *http.Client, url, token string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand does not fail on Linux
	return hex.EncodeToString(b)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// firstServiceIP is the first address of cidr, the kubernetes Service's
// ClusterIP.
func firstServiceIP(cidr string) (net.IP, error) {
	_, n, err := net.ParseCIDR(cidr)
	if err != nil {
		return nil, err
	}
	ip := n.IP.To4()
	if ip == nil {
		return nil, fmt.Errorf("%s: not IPv4", cidr)
	}
	first := slices.Clone(ip)
	first[3]++
	return first, nil
}
