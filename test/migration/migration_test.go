package migration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/okevault/vault-csi-provider/test/testbed"
)

const (
	// vaultHelmArchive and vaultHelmVersion: the chart the peer's users
	// install it with.
	vaultHelmArchive = "vault-helm-v0.34.1.tar.gz"
	vaultHelmVersion = "0.34.1"
	// peerImage is the peer built by test/tools/build.sh.
	peerImageRepo = "okevault.test/peer-vault-csi-provider"
	peerImageTag  = "1.7.4"
	// ns is the workload's namespace: the scenario's (service account and
	// Vault role testapp).
	ns        = metav1.NamespaceDefault
	className = "testapp"
	appImage  = "docker.io/library/busybox:1.35"
	// rotationPoll is the driver's rotation poll interval here: kubelet
	// republishes every 10 s on the bed, so running pods show a provider's
	// versions within seconds.
	rotationPoll = 5 * time.Second
	// startBound: a pod not Ready this long after its creation failed to
	// start.
	startBound = 60 * time.Second
	// churnEvery and churnMax: a new pod every tick, at most this many.
	churnEvery = 2 * time.Second
	churnMax   = 12
)

// socketPath is both providers' socket on the node (the bed's node is this
// machine): the driver's providers folder, the charts' default.
const socketPath = "/var/run/secrets-store-csi-providers/vault.sock"

// spcpsGVR are the driver's per-pod status objects.
var spcpsGVR = schema.GroupVersionResource{Group: "secrets-store.csi.x-k8s.io", Version: "v1", Resource: "secretproviderclasspodstatuses"}

func TestMigration(t *testing.T) {
	begin := time.Now()
	ctx := t.Context()
	c := startBed(t)
	fmt.Fprintf(os.Stderr, "migration: bed, peer and workload ready in %s\n", time.Since(begin).Round(time.Second))

	sh, err := newShell(c)
	if err != nil {
		t.Fatal(err)
	}
	root, err := testbed.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	p := paths{
		vaultChart: filepath.Join(c.Dir, "vault-helm"),
		ourChart:   filepath.Join(root, "charts", "vault-csi-provider"),
		values:     filepath.Join(c.Dir, "my-values.yaml"),
	}
	writeValues(t, p.values)

	sock := watchSocket()
	defer sock.stop()
	ch := &churn{c: c, pods: map[types.UID]*podRecord{}, replicas: 2}
	stop := ch.start(t)
	defer stop()
	marks := map[string]time.Time{"start": time.Now()}

	// Under the peer.
	sleep(ctx, 10*time.Second)
	before := steadyVersions(ctx, t, c)
	t.Logf("steady pods' versions under the peer: %s", before)

	// Before the switch: the inventories (read only; the bed's driver
	// already sends tokens for the one audience the class uses).
	out, _ := sh.runDoc(ctx, t, blockAudiences, p)
	if !strings.Contains(out, "vault\n") || !strings.Contains(out, `"audience":"vault"`) {
		t.Errorf("the audience inventory should list audience vault for the classes and the driver; got:\n%s", out)
	}
	out, _ = sh.runDoc(ctx, t, blockAddresses, p)
	if !strings.Contains(out, ns+"/"+className) {
		t.Errorf("the address inventory should list %s/%s; got:\n%s", ns, className, out)
	}
	_, _ = sh.runDoc(ctx, t, blockNamespace, p)

	// The switch.
	marks["switch"] = time.Now()
	_, switchTook := sh.runDoc(ctx, t, blockSwitch, p)
	marks["switched"] = time.Now()
	after := waitSteadyChange(ctx, t, c, before, "after the switch")
	sleep(ctx, 3*rotationPoll+10*time.Second)
	if again := steadyVersions(ctx, t, c); again != after {
		t.Errorf("versions not stable after the switch: %s, then %s", after, again)
	}

	// The rollback.
	marks["rollback"] = time.Now()
	_, rollbackTook := sh.runDoc(ctx, t, blockRollback, p)
	marks["rolledback"] = time.Now()
	back := waitSteadyChange(ctx, t, c, after, "after the rollback")
	sleep(ctx, 10*time.Second)
	stop()
	marks["end"] = time.Now()
	sock.stop()
	ch.settle(ctx, t)

	r := ch.report(t, marks, switchTook, rollbackTook)
	r.absences(sock.gone)
	r.versions = [3]string{before, after, back}
	r.check(t)
	t.Log(r.summary())
	fmt.Fprintf(os.Stderr, "%s\nmigration: %s in all\n", r.summary(), time.Since(begin).Round(time.Second))
}

// peerBed starts, once: the cluster bed, Vault with the scenario, the
// driver, and the peer with vault-helm, as its users install it.
func peerBed(tb testing.TB) *testbed.Cluster {
	tb.Helper()
	if testing.Short() {
		tb.Skip("starts a real cluster; skipped under -short")
	}
	bed.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
		defer cancel()
		bed.err = startPeerBed(ctx)
	})
	if bed.err != nil {
		if bed.cluster != nil {
			tb.Log(bed.cluster.LogTail(60))
		}
		tb.Fatalf("migration bed: %v", bed.err)
	}
	testbed.LogOnFailure(tb, bed.cluster)
	return bed.cluster
}

func startPeerBed(ctx context.Context) error {
	c, err := testbed.NewCluster(ctx, testbed.ClusterOptions{})
	if err != nil {
		return err
	}
	bed.cluster = c
	v, err := c.InstallVault(ctx)
	if err != nil {
		return err
	}
	if err := v.SeedScenario(ctx, c.Kube); err != nil {
		return err
	}
	if err := c.InstallDriver(ctx, rotationPoll); err != nil {
		return err
	}
	chart := filepath.Join(c.Dir, "vault-helm")
	files, err := testbed.ReadArchive(vaultHelmArchive, "")
	if err != nil {
		return err
	}
	for rel, b := range files {
		dst := filepath.Join(chart, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(dst), 0o750); err != nil {
			return err
		}
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			return err
		}
	}
	if _, err := c.Helm(ctx, "install", "vault", chart, "--namespace", testbed.VaultNamespace, "--wait", "--timeout", "3m",
		"--set", "server.enabled=false", "--set", "injector.enabled=false",
		"--set", "csi.enabled=true", "--set", "csi.agent.enabled=false",
		"--set", "server.serviceAccount.create=false", "--set", "server.authDelegator.enabled=false",
		"--set", "csi.image.repository="+peerImageRepo, "--set", "csi.image.tag="+peerImageTag,
		"--set", "csi.image.pullPolicy=Never"); err != nil {
		return err
	}
	if err := c.WaitDaemonSet(ctx, testbed.VaultNamespace, "vault-csi-provider"); err != nil {
		return err
	}
	return c.Apply(ctx, []byte(classManifest))
}

// startBed starts the peer's bed and the workload, and builds and imports
// this provider's image for the switch.
func startBed(t *testing.T) *testbed.Cluster {
	t.Helper()
	c := peerBed(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	t.Cleanup(func() {
		if t.Failed() {
			t.Log("peer and provider logs:\n" + kubectlQuiet(c, "logs", "-n", "vault", "-l", "app.kubernetes.io/name=vault-csi-provider", "--tail=40") +
				kubectlQuiet(c, "logs", "-n", "vault-csi-provider", "-l", "app.kubernetes.io/name=vault-csi-provider", "--tail=40") +
				kubectlQuiet(c, "logs", "-n", testbed.DriverNamespace, "-l", "app=secrets-store-csi-driver", "-c", "secrets-store", "--tail=60"))
		}
	})
	// This provider's image, imported now so that its build does not
	// share the machine with the switch.
	tarball, err := testbed.BuildProviderImage(ctx, c.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ImportImage(ctx, tarball); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"steady", "churn"} {
		if _, err := c.Client.AppsV1().Deployments(ns).Create(ctx, deployment(d, 2), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { removeDeployment(t, c, d) })
	}
	for _, d := range []string{"steady", "churn"} {
		if err := c.WaitDeployment(ctx, ns, d); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// removeDeployment deletes a Deployment and waits until it and its pods
// are gone (foreground deletion), so that what runs next has the node.
func removeDeployment(tb testing.TB, c *testbed.Cluster, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	fg := metav1.DeletePropagationForeground
	if err := c.Client.AppsV1().Deployments(ns).Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: &fg}); err != nil && !apierrors.IsNotFound(err) {
		tb.Error(err)
		return
	}
	for {
		_, err := c.Client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return
		}
		select {
		case <-ctx.Done():
			tb.Errorf("deployment %s not gone within 3 minutes (last: %v)", name, err)
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// classManifest is the scenario's class: two keys of one KV v2 secret.
const classManifest = `
apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata: {name: testapp, namespace: default}
spec:
  provider: vault
  parameters:
    roleName: testapp
    objects: |
      - objectName: username
        secretPath: secret/data/testapp
        secretKey: username
      - objectName: password
        secretPath: secret/data/testapp
        secretKey: password
`

// writeValues writes the guide's values file: what vault-helm's csi:
// section held, mapped (enabled, no agent, no peer image), with Vault's
// address written out (step 4) and an image the nodes have (step 3).
func writeValues(t *testing.T, path string) {
	t.Helper()
	repo, tag, _ := strings.Cut(testbed.ProviderImage, ":")
	values := fmt.Sprintf("enabled: true\nvault:\n  address: %s\nimage:\n  repository: %s\n  tag: %s\n  pullPolicy: Never\n",
		testbed.VaultClusterAddr, repo, tag)
	if err := os.WriteFile(path, []byte(values), 0o600); err != nil {
		t.Fatal(err)
	}
}

// deployment is a Deployment of busybox pods mounting the class.
func deployment(name string, replicas int32) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	readOnly := true
	grace := int64(1)
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					ServiceAccountName:            "testapp",
					TerminationGracePeriodSeconds: &grace,
					Containers: []corev1.Container{{
						Name: "app", Image: appImage, ImagePullPolicy: corev1.PullNever,
						VolumeMounts: []corev1.VolumeMount{{Name: "secrets", MountPath: "/mnt/secrets-store", ReadOnly: true}},
					}},
					Volumes: []corev1.Volume{{Name: "secrets", VolumeSource: corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{
						Driver: testbed.DriverName, ReadOnly: &readOnly,
						VolumeAttributes: map[string]string{"secretProviderClass": className},
					}}}},
				},
			},
		},
	}
}

// podRecord is one churn pod as the test saw it.
type podRecord struct {
	name     string
	created  time.Time
	ready    time.Time // zero: never Ready
	versions string    // its SecretProviderClassPodStatus objects, once seen
	failed   int       // FailedMount events for it
}

// churn starts a new pod of Deployment churn every tick.
type churn struct {
	c        *testbed.Cluster
	mu       sync.Mutex
	pods     map[types.UID]*podRecord
	replicas int32
	errs     []string
}

// start runs the ticks until the returned func is called (idempotent).
func (ch *churn) start(t *testing.T) func() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(churnEvery)
		defer tick.Stop()
		for {
			ch.tick(ctx, true)
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			<-done
			for _, e := range ch.errs {
				t.Log("churn: " + e)
			}
		})
	}
}

// tick records the churn pods and their versions, then deletes the oldest
// Ready one (the Deployment starts its replacement) or, if none is Ready,
// scales up by one.
func (ch *churn) tick(ctx context.Context, churnToo bool) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	c := ch.c
	pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=churn"})
	if err != nil {
		if ctx.Err() == nil {
			ch.errs = append(ch.errs, err.Error())
		}
		return
	}
	versions, err := podVersions(ctx, c)
	if err != nil && ctx.Err() == nil {
		ch.errs = append(ch.errs, err.Error())
	}
	var oldest *corev1.Pod
	var oldestReady time.Time
	for i := range pods.Items {
		pod := &pods.Items[i]
		rec := ch.pods[pod.UID]
		if rec == nil {
			rec = &podRecord{name: pod.Name, created: pod.CreationTimestamp.Time}
			ch.pods[pod.UID] = rec
		}
		if rec.versions == "" {
			rec.versions = versions[pod.Name]
		}
		ready, at := podReady(pod)
		if !ready {
			continue
		}
		if rec.ready.IsZero() {
			rec.ready = at
		}
		if pod.DeletionTimestamp == nil && (oldest == nil || at.Before(oldestReady)) {
			oldest, oldestReady = pod, at
		}
	}
	if !churnToo {
		return
	}
	if oldest != nil {
		uid := oldest.UID
		err = c.Client.CoreV1().Pods(ns).Delete(ctx, oldest.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	} else if ch.replicas < churnMax {
		ch.replicas++
		err = scaleChurn(ctx, c, ch.replicas)
	}
	if err != nil && !apierrors.IsNotFound(err) && ctx.Err() == nil {
		ch.errs = append(ch.errs, err.Error())
	}
}

// settle waits until every churn pod is Ready or past startBound, then
// records them a last time with their FailedMount events.
func (ch *churn) settle(ctx context.Context, t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(startBound + 30*time.Second)
	for time.Now().Before(deadline) {
		ch.tick(ctx, false)
		pending := false
		ch.mu.Lock()
		for _, r := range ch.pods {
			if r.ready.IsZero() && time.Since(r.created) < startBound+5*time.Second {
				pending = true
			}
		}
		ch.mu.Unlock()
		if !pending {
			break
		}
		sleep(ctx, time.Second)
	}
	events, err := ch.c.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("reason", "FailedMount").String(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	byName := map[string]*podRecord{}
	for _, r := range ch.pods {
		byName[r.name] = r
	}
	for _, e := range events.Items {
		n := int(e.Count)
		if e.Series != nil {
			n = int(e.Series.Count)
		}
		if n < 1 {
			n = 1
		}
		if r := byName[e.InvolvedObject.Name]; r != nil {
			r.failed += n
		} else {
			t.Errorf("FailedMount for a pod that is not a churn pod: %s: %s", e.InvolvedObject.Name, e.Message)
		}
		t.Logf("FailedMount ×%d for %s (%s – %s): %s", n, e.InvolvedObject.Name,
			e.FirstTimestamp.Format(time.TimeOnly), e.LastTimestamp.Format(time.TimeOnly), e.Message)
	}
}

// podReady tells whether the pod is Ready and since when.
func podReady(p *corev1.Pod) (bool, time.Time) {
	for _, cond := range p.Status.Conditions {
		if cond.Type == corev1.PodReady {
			return cond.Status == corev1.ConditionTrue, cond.LastTransitionTime.Time
		}
	}
	return false, time.Time{}
}

// podVersions reads the SecretProviderClassPodStatus objects of ns: each
// pod's object versions as "id=version ..." sorted.
func podVersions(ctx context.Context, c *testbed.Cluster) (map[string]string, error) {
	list, err := c.Dynamic.Resource(spcpsGVR).Namespace(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list SecretProviderClassPodStatus: %w", err)
	}
	out := map[string]string{}
	for _, item := range list.Items {
		status, _ := item.Object["status"].(map[string]any)
		pod, _ := status["podName"].(string)
		objects, _ := status["objects"].([]any)
		var pairs []string
		for _, o := range objects {
			m, _ := o.(map[string]any)
			pairs = append(pairs, fmt.Sprintf("%v=%v", m["id"], m["version"]))
		}
		sort.Strings(pairs)
		if pod != "" && len(pairs) > 0 {
			out[pod] = strings.Join(pairs, " ")
		}
	}
	return out, nil
}

// steadyVersions is the one version set of the steady pods; it fails the
// test if they differ.
func steadyVersions(ctx context.Context, t *testing.T, c *testbed.Cluster) string {
	t.Helper()
	set, err := steadySet(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func steadySet(ctx context.Context, c *testbed.Cluster) (string, error) {
	pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=steady"})
	if err != nil {
		return "", err
	}
	versions, err := podVersions(ctx, c)
	if err != nil {
		return "", err
	}
	sets := map[string]bool{}
	for _, p := range pods.Items {
		sets[versions[p.Name]] = true
	}
	if len(sets) != 1 || len(pods.Items) != 2 {
		return "", fmt.Errorf("steady pods (%d) have %d version sets: %v", len(pods.Items), len(sets), sets)
	}
	for s := range sets {
		return s, nil
	}
	return "", nil
}

// waitSteadyChange waits until the steady pods' versions differ from was
// (kubelet republishes, the driver remounts with the new provider).
func waitSteadyChange(ctx context.Context, t *testing.T, c *testbed.Cluster, was, when string) string {
	t.Helper()
	start := time.Now()
	var last string
	var lastErr error
	for time.Since(start) < 2*time.Minute {
		last, lastErr = steadySet(ctx, c)
		if lastErr == nil && last != was && last != "" {
			t.Logf("steady pods' versions %s, %s after the commands: %s", when, time.Since(start).Round(time.Second), last)
			return last
		}
		sleep(ctx, time.Second)
	}
	t.Fatalf("steady pods' versions %s: unchanged within 2 minutes (%s, %v)", when, last, lastErr)
	return ""
}

// scaleChurn sets the churn Deployment's replicas.
func scaleChurn(ctx context.Context, c *testbed.Cluster, n int32) error {
	s, err := c.Client.AppsV1().Deployments(ns).GetScale(ctx, "churn", metav1.GetOptions{})
	if err != nil {
		return err
	}
	s.Spec.Replicas = n
	_, err = c.Client.AppsV1().Deployments(ns).UpdateScale(ctx, "churn", s, metav1.UpdateOptions{})
	return err
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// socketWatch records when the providers' socket path is absent.
type socketWatch struct {
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
	// gone are the intervals without a socket, [from, to].
	gone [][2]time.Time
}

// watchSocket looks for the socket every 50 ms until stop.
func watchSocket() *socketWatch {
	ctx, cancel := context.WithCancel(context.Background())
	w := &socketWatch{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		var since time.Time
		for {
			_, err := os.Stat(socketPath)
			now := time.Now()
			switch {
			case err != nil && since.IsZero():
				since = now
			case err == nil && !since.IsZero():
				w.gone = append(w.gone, [2]time.Time{since, now})
				since = time.Time{}
			}
			select {
			case <-ctx.Done():
				if !since.IsZero() {
					w.gone = append(w.gone, [2]time.Time{since, now})
				}
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return w
}

func (w *socketWatch) stop() {
	w.once.Do(func() {
		w.cancel()
		<-w.done
	})
}
