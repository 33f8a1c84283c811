package seed

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"
)

const (
	// providerSocket is where the chart's DaemonSet puts the provider's
	// socket on the node (the driver's providers directory).
	providerSocket = "/var/run/secrets-store-csi-providers/vault.sock"
	stormNS        = "storm"
	stormSAs       = 20
	stormMounts    = 200
	stormWorkers   = 10
)

// gatedPod is a pod the provider can read (it checks each mount's pod) but
// that never runs: a scheduling gate holds it. Its token is bound to it,
// for the audience vault, as the driver would hand it over.
type gatedPod struct {
	name, ns, uid, sa, role, token string
	expires                        time.Time
}

func newGatedPod(t *testing.T, ns, sa, role string) gatedPod {
	t.Helper()
	c := bed.cluster
	if err := c.CreateServiceAccount(t.Context(), ns, sa); err != nil {
		t.Fatal(err)
	}
	p, err := c.Client.CoreV1().Pods(ns).Create(t.Context(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: sa + "-", Namespace: ns},
		Spec: corev1.PodSpec{
			ServiceAccountName: sa,
			SchedulingGates:    []corev1.PodSchedulingGate{{Name: "okevault.io/never"}},
			Containers:         []corev1.Container{{Name: "app", Image: "docker.io/library/busybox:1.35"}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.Token(t.Context(), ns, sa, "vault", p, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return gatedPod{name: p.Name, ns: ns, uid: string(p.UID), sa: sa, role: role, token: tok, expires: time.Now().Add(time.Hour)}
}

// stormPods makes, once, one gated pod per storm service account.
func stormPods(t *testing.T) []gatedPod {
	t.Helper()
	if bed.storm != nil {
		return bed.storm
	}
	if err := bed.cluster.CreateNamespace(t.Context(), stormNS); err != nil {
		t.Fatal(err)
	}
	for i := range stormSAs {
		bed.storm = append(bed.storm, newGatedPod(t, stormNS, fmt.Sprintf("storm-%d", i), stormRole))
	}
	return bed.storm
}

// request is the MountRequest the driver sends for p: the seed's username
// through p's role.
func (p gatedPod) request(t *testing.T) *v1alpha1.MountRequest {
	t.Helper()
	tokens, _ := json.Marshal(map[string]any{"vault": map[string]string{
		"token": p.token, "expirationTimestamp": p.expires.UTC().Format(time.RFC3339),
	}})
	attrs, err := json.Marshal(map[string]string{
		"roleName":                                 p.role,
		"objects":                                  "- {objectName: username, secretPath: secret/data/testapp, secretKey: username}\n",
		"secretProviderClass":                      "gated",
		"csi.storage.k8s.io/pod.name":              p.name,
		"csi.storage.k8s.io/pod.namespace":         p.ns,
		"csi.storage.k8s.io/pod.uid":               p.uid,
		"csi.storage.k8s.io/serviceAccount.name":   p.sa,
		"csi.storage.k8s.io/ephemeral":             "true",
		"csi.storage.k8s.io/serviceAccount.tokens": string(tokens),
	})
	if err != nil {
		t.Fatal(err)
	}
	return &v1alpha1.MountRequest{Attributes: string(attrs), TargetPath: "/var/lib/kubelet/pods/" + p.uid + "/volumes/kubernetes.io~csi/gated/mount", Permission: "420", Secrets: "null"}
}

// providerClient is a gRPC client of the provider's socket on the node.
func providerClient(t *testing.T) v1alpha1.CSIDriverProviderClient {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+providerSocket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return v1alpha1.NewCSIDriverProviderClient(conn)
}

// outcome is one storm mount.
type outcome struct {
	start, at time.Time
	code      codes.Code
	msg       string
	pod       int
}

// storm mounts through the provider's socket from stormWorkers goroutines,
// each pod in turn, until stop is closed; it returns every outcome.
func storm(t *testing.T, pods []gatedPod, stop <-chan struct{}, done *atomic.Int64) []outcome {
	t.Helper()
	client := providerClient(t)
	var (
		mu  sync.Mutex
		out []outcome
		wg  sync.WaitGroup
	)
	for w := range stormWorkers {
		wg.Go(func() {
			for i := w; ; i += stormWorkers {
				select {
				case <-stop:
					return
				default:
				}
				p := pods[i%len(pods)]
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				start := time.Now()
				resp, err := client.Mount(ctx, p.request(t))
				cancel()
				o := outcome{start: start, at: time.Now(), code: status.Code(err), pod: i % len(pods)}
				if err != nil {
					o.msg = status.Convert(err).Message()
				} else if len(resp.GetFiles()) != 1 || string(resp.GetFiles()[0].GetContents()) != seedSecret["username"] {
					o.code, o.msg = codes.DataLoss, "wrong files"
				}
				mu.Lock()
				out = append(out, o)
				mu.Unlock()
				done.Add(1)
			}
		})
	}
	wg.Wait()
	sort.Slice(out, func(i, j int) bool { return out[i].at.Before(out[j].at) })
	return out
}

// activeVault is the pod that answers as the active node.
func activeVault(t *testing.T) string {
	t.Helper()
	for name, s := range vaultStates(t) {
		if s == "active" {
			return name
		}
	}
	return ""
}

// testVaultFailover: the active Vault pod is deleted during a storm of
// mounts through the provider and while pods start through kubelet. A
// standby takes over; each mount succeeds or fails Unavailable (which the
// driver retries) and succeeds when tried again; the pods start; no token
// or secret reaches the provider's log. The takeover time is logged.
func testVaultFailover(t *testing.T) {
	pods := stormPods(t)
	ensureStormRole(t)

	// Pods through kubelet, started while the active node goes away.
	kubectl(t, "apply", "-f", "examples/secretproviderclass.yaml")
	deployment := appDeployment(t, "failover", 5)

	stop := make(chan struct{})
	var done atomic.Int64
	results := make(chan []outcome, 1)
	go func() { results <- storm(t, pods, stop, &done) }()
	eventually(t, time.Minute, "100 storm mounts before the fault", func() (bool, string) {
		return done.Load() >= 100, fmt.Sprint(done.Load())
	})

	active := activeVault(t)
	if active == "" {
		close(stop)
		<-results
		t.Fatal("no active Vault pod before the fault")
	}
	scaleDeployment(t, deployment, 10)
	deleted := time.Now()
	if err := bed.cluster.Client.CoreV1().Pods(vaultNS).Delete(t.Context(), active, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	var takeover time.Duration
	eventually(t, 3*time.Minute, "a standby active", func() (bool, string) {
		now := activeVault(t)
		if now != "" && now != active {
			takeover = time.Since(deleted)
			return true, now
		}
		return false, fmt.Sprint(vaultStates(t))
	})
	// Keep the storm going until the total is reached and a while past the
	// takeover, so that what follows a failover is in the results too.
	after := done.Load()
	eventually(t, 3*time.Minute, fmt.Sprintf("%d storm mounts", stormMounts), func() (bool, string) {
		return done.Load() >= stormMounts && done.Load() >= after+50, fmt.Sprint(done.Load())
	})
	close(stop)
	out := <-results

	codesSeen := map[codes.Code]int{}
	var failedPods []int
	var lastFailure time.Time
	var inWindow, slowest int
	var slowestTook time.Duration
	for i, o := range out {
		codesSeen[o.code]++
		// Mounts that were in flight at some moment between the delete
		// and the takeover: those the failover could touch.
		if o.at.After(deleted) && o.start.Before(deleted.Add(takeover)) {
			inWindow++
		}
		if took := o.at.Sub(o.start); took > slowestTook {
			slowest, slowestTook = i, took
		}
		switch o.code {
		case codes.OK:
		case codes.Unavailable:
			failedPods = append(failedPods, o.pod)
			lastFailure = o.at
		default:
			t.Errorf("mount at +%s: %s: %s (want OK or Unavailable)", o.at.Sub(deleted).Round(time.Millisecond), o.code, o.msg)
		}
	}
	window := "none failed"
	if !lastFailure.IsZero() {
		window = "last Unavailable at +" + lastFailure.Sub(deleted).Round(100*time.Millisecond).String()
	}
	t.Logf("failover: %d mounts from %d service accounts, %d of them in flight between the delete and the takeover; %v; "+
		"standby active %s after the delete; %s; slowest mount %s (ended at +%s)",
		len(out), stormSAs, inWindow, codesSeen, takeover.Round(100*time.Millisecond), window,
		slowestTook.Round(time.Millisecond), out[slowest].at.Sub(deleted).Round(100*time.Millisecond))
	if inWindow == 0 {
		t.Error("no mount was in flight during the failover: the storm did not cover it")
	}

	// What the driver does next: each failed pod's mount is tried again.
	client := providerClient(t)
	slices.Sort(failedPods)
	for _, i := range slices.Compact(failedPods) {
		if _, err := client.Mount(t.Context(), pods[i].request(t)); err != nil {
			t.Errorf("retry of %s after the failover: %v", pods[i].name, err)
		}
	}
	waitDeployment(t, deployment)
	checkVault(t, 3)
	checkNoLeak(t, pods)
}

// testEtcdMemberLoss: one etcd member's pod is killed (no grace: as a node
// or process failure would); Vault keeps serving on the remaining quorum
// (mounts go on succeeding), and the operator's StatefulSet brings the
// member back on its volume: all three healthy again, each by its own
// health endpoint, with the same member count.
func testEtcdMemberLoss(t *testing.T) {
	pods := stormPods(t)
	ensureStormRole(t)
	checkEtcd(t, 3)

	victim := etcdName + "-1"
	old, err := bed.cluster.Client.CoreV1().Pods(vaultNS).Get(t.Context(), victim, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()
	if err := bed.cluster.Client.CoreV1().Pods(vaultNS).Delete(t.Context(), victim, metav1.DeleteOptions{GracePeriodSeconds: ptrTo(int64(0))}); err != nil {
		t.Fatal(err)
	}
	client := providerClient(t)
	var mounts, failed, whileGone int
	var gone, back time.Duration
	deadline := time.Now().Add(5 * time.Minute)
	for back == 0 && time.Now().Before(deadline) {
		p := pods[mounts%len(pods)]
		if _, err := client.Mount(t.Context(), p.request(t)); err != nil {
			failed++
			t.Logf("mount at +%s with a member gone: %v", time.Since(deleted).Round(time.Millisecond), err)
		}
		mounts++
		now, err := bed.cluster.Client.CoreV1().Pods(vaultNS).Get(t.Context(), victim, metav1.GetOptions{})
		replaced := err == nil && now.UID != old.UID
		if gone == 0 && (apierrors.IsNotFound(err) || replaced) {
			gone = time.Since(deleted)
		}
		if gone != 0 {
			whileGone++
		}
		if replaced && ready(now) {
			if healthy, members, _ := etcdHealth(t); healthy == 3 && members == 3 {
				back = time.Since(deleted)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("etcd member loss: %s killed; gone after %s; %d mounts, %d of them while it was out, %d failed; "+
		"replaced and 3 healthy members again %s after the kill",
		victim, gone.Round(100*time.Millisecond), mounts, whileGone, failed, back.Round(100*time.Millisecond))
	if failed > 0 {
		t.Errorf("%d of %d mounts failed with one etcd member of three gone (quorum held)", failed, mounts)
	}
	if whileGone == 0 {
		t.Error("no mount ran while the member was out")
	}
	if back == 0 {
		_, _, state := etcdHealth(t)
		t.Errorf("etcd not back to 3 healthy members within 5 minutes: %s", state)
	}
	checkVault(t, 3)
	// The backup docs/setup.md describes, taken from the healed cluster.
	t.Logf("etcd snapshot: %d bytes, checksum verified", etcdSnapshot(t))
}

// checkNoLeak: the provider pods' logs hold no token and no secret value.
func checkNoLeak(t *testing.T, pods []gatedPod) {
	t.Helper()
	logs := kubectl(t, "logs", "-n", providerNS, "-l", "app.kubernetes.io/name=vault-csi-provider", "--tail=-1", "--all-containers")
	for _, p := range pods {
		if strings.Contains(logs, p.token) {
			t.Errorf("the provider's log holds %s's token", p.name)
		}
	}
	for k, v := range seedSecret {
		if strings.Contains(logs, v) {
			t.Errorf("the provider's log holds the secret's %s", k)
		}
	}
	t.Logf("leak check: %d bytes of provider log, %d tokens and %d secret values looked for", len(logs), len(pods), len(seedSecret))
}

// etcdSnapshot takes a snapshot of one member through etcd's gateway
// (POST /v3/maintenance/snapshot, what `etcdctl snapshot save` streams
// over gRPC) and checks it the way etcd's restore does: a snapshot ends with
// the SHA-256 of what comes before. It returns the snapshot's size.
func etcdSnapshot(t *testing.T) int {
	t.Helper()
	members := pods(t, vaultNS, etcdSelector)
	if len(members) == 0 || members[0].Status.PodIP == "" {
		t.Fatal("no etcd member to snapshot")
	}
	resp, err := http.Post("http://"+members[0].Status.PodIP+":2379/v3/maintenance/snapshot", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var snap []byte
	dec := json.NewDecoder(resp.Body)
	for {
		var chunk struct {
			Result struct {
				Blob []byte `json:"blob"`
			} `json:"result"`
			Error json.RawMessage `json:"error"`
		}
		if err := dec.Decode(&chunk); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("snapshot stream: %v", err)
		}
		if len(chunk.Error) > 0 {
			t.Fatalf("snapshot: %s", chunk.Error)
		}
		snap = append(snap, chunk.Result.Blob...)
	}
	if len(snap) <= sha256.Size {
		t.Fatalf("snapshot of %d bytes", len(snap))
	}
	body, sum := snap[:len(snap)-sha256.Size], snap[len(snap)-sha256.Size:]
	if got := sha256.Sum256(body); !bytes.Equal(got[:], sum) {
		t.Error("the snapshot's trailing SHA-256 does not match its content")
	}
	return len(snap)
}
