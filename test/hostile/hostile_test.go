package hostile

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"

	"github.com/okevault/vault-csi-provider/test/testbed"
)

// rssCeiling is the peak RSS the provider must stay under: 192 MiB, three
// quarters of the chart's default memory limit (256 MiB), leaving 64 MiB to
// spare. The bounds let mounts hold 32 MiB and the caches 32 MiB, and set a
// soft memory limit of 112 MiB; the rest is the process itself (~40 MiB at
// start) and garbage the collector has not caught up with under churn.
const rssCeiling = 192 << 20

// hostileServer is what a SecretProviderClass may point vaultAddress at: a
// server of its author's, not Vault. It logs anyone in and answers every
// read with the most expensive thing it can.
func hostileServer() *httptest.Server {
	// ~4 MiB (just under the provider's per-response bound) of one-entry
	// objects: what decodes to the most memory per byte.
	var big strings.Builder
	big.WriteString(`{"data":{"k":[`)
	for big.Len() < 4<<20-64 {
		big.WriteString(`{"a":0},`)
	}
	big.WriteString(`{"a":0}]}}`)
	bigBody := []byte(big.String())
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case strings.HasSuffix(r.URL.Path, "/login"):
			_, _ = w.Write([]byte(`{"auth":{"client_token":"hvs.hostile","lease_duration":3600}}`))
		case strings.HasPrefix(r.URL.Path, "/v1/small/"):
			_, _ = w.Write([]byte(`{"data":{"k":"v"}}`))
		case strings.HasPrefix(r.URL.Path, "/v1/redirect/"):
			http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusTemporaryRedirect)
		case strings.HasPrefix(r.URL.Path, "/v1/error/"):
			// An error body without end: the client reads error bodies whole.
			w.WriteHeader(http.StatusBadRequest)
			chunk := []byte(strings.Repeat("e", 64<<10))
			for {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		default:
			_, _ = w.Write(bigBody)
		}
	}))
}

// goodServer answers as Vault does for a small KV v2 secret: the pods that
// are not hostile read from it. (Vault's own behaviour is tested on the
// bed; here the point is the provider's, under load from elsewhere.)
func goodServer() *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if strings.HasSuffix(r.URL.Path, "/login") {
			_, _ = w.Write([]byte(`{"auth":{"client_token":"hvs.good","lease_duration":3600}}`))
			return
		}
		_, _ = w.Write([]byte(`{"data":{"data":{"password":"p4ss"},"metadata":{"version":1}}}`))
	}))
}

// classes are the hostile SecretProviderClasses' objects, by the code each
// must fail with.
func classes() map[string]struct {
	objects string
	code    codes.Code
} {
	var many strings.Builder
	for i := range 200 {
		fmt.Fprintf(&many, "- {objectName: o%d, secretPath: big/%d}\n", i, i)
	}
	bomb := func(text string) string {
		return "- objectName: t\n  secretPath: small/0\n  template: '" + text + "'\n"
	}
	return map[string]struct {
		objects string
		code    codes.Code
	}{
		"200 reads of 4 MiB that decode to 100": {many.String(), codes.ResourceExhausted},
		"printf doubling":                       {bomb(`{{ $s := "xxxxxxxx" }}{{ range 60 }}{{ $s = printf "%s%s" $s $s }}{{ end }}`), codes.InvalidArgument},
		"nested ranges":                         {bomb(`{{ range 1000000000 }}{{ range 1000000000 }}{{ end }}{{ end }}`), codes.InvalidArgument},
		"1000 templates of 1 MiB":               {thousand(bomb), codes.ResourceExhausted},
		"redirect to a metadata address":        {"- {objectName: r, secretPath: redirect/x}", codes.PermissionDenied},
		"endless error body":                    {"- {objectName: e, secretPath: error/x}", codes.ResourceExhausted},
	}
}

// thousand is 1,000 template objects, each writing just under 1 MiB: within
// every template's bounds, over the mount's.
func thousand(bomb func(string) string) string {
	var b strings.Builder
	for i := range 1000 {
		b.WriteString(strings.Replace(bomb(`{{ range 1000 }}{{ printf "%1000d" 1 }}{{ end }}`), "objectName: t", fmt.Sprintf("objectName: t%d", i), 1))
	}
	return b.String()
}

// token is an unsigned service-account token bound to pod, as the driver's
// are (the provider refuses one bound to no pod, or to another).
func token(ns, sa, pod string) string {
	claims, _ := json.Marshal(map[string]any{"exp": time.Now().Add(time.Hour).Unix(), "kubernetes.io": map[string]any{
		"namespace": ns, "serviceaccount": map[string]any{"name": sa, "uid": sa + "-uid"}, "pod": map[string]any{"name": pod, "uid": pod + "-uid"},
	}})
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"none"}`)) + "." + enc(claims) + ".sig"
}

func request(t *testing.T, addr, objects, ns, pod string) *v1alpha1.MountRequest {
	t.Helper()
	tokens, _ := json.Marshal(map[string]any{"vault": map[string]string{"token": token(ns, "app", pod), "expirationTimestamp": time.Now().Add(time.Hour).Format(time.RFC3339)}})
	attrs, err := json.Marshal(map[string]string{
		"roleName": "app", "vaultAddress": addr, "objects": objects,
		"csi.storage.k8s.io/pod.name": pod, "csi.storage.k8s.io/pod.namespace": ns,
		"csi.storage.k8s.io/pod.uid": pod + "-uid", "csi.storage.k8s.io/serviceAccount.name": "app",
		"csi.storage.k8s.io/serviceAccount.tokens": string(tokens),
	})
	if err != nil {
		t.Fatal(err)
	}
	return &v1alpha1.MountRequest{Attributes: string(attrs), TargetPath: "/var/lib/kubelet/pods/" + pod + "/volumes/kubernetes.io~csi/v/mount", Permission: "420"}
}

// procStatus reads a field of /proc/<pid>/status in kB.
func procStatus(t *testing.T, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n << 10
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// cpuTime is the process's user and system time, from /proc/<pid>/stat.
func cpuTime(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command name, which is in parentheses: state is
	// field 3, utime 14 and stime 15, in clock ticks (100 a second on Linux).
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	user, _ := strconv.ParseInt(f[11], 10, 64)
	sys, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(user+sys) * 10 * time.Millisecond
}

// TestHostileClasses runs the provider binary with the chart's defaults and
// sends it, from 4 hostile pods per class at once, every class above, for
// several rounds, while 20 other pods mount a small secret over and over.
// Every hostile mount fails with its code; every other mount succeeds; the
// provider's peak RSS stays under rssCeiling. The mount deadline is raised
// to 5 minutes so that a loaded machine slows the test down instead of
// turning the codes into DeadlineExceeded: the test is about bounds, not
// speed. Peak RSS and CPU are logged
// (go test -v -run TestHostileClasses ./test/hostile/ | grep HOSTILE).
func TestHostileClasses(t *testing.T) {
	hostile, good := hostileServer(), goodServer()
	defer hostile.Close()
	defer good.Close()
	p := testbed.StartProvider(t, testbed.ProviderOptions{ProvidersDir: t.TempDir(), Args: []string{"-log-level=warn", "-mount-timeout=5m"}})
	conn, err := grpc.NewClient("unix://"+p.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := v1alpha1.NewCSIDriverProviderClient(conn)
	baseRSS, baseCPU := procStatus(t, p.PID(), "VmRSS"), cpuTime(t, p.PID())

	ctx, cancel := context.WithCancel(t.Context())
	var (
		wg                sync.WaitGroup
		mu                sync.Mutex
		hostileMounts     int
		goodMounts, fails int
		slowest           time.Duration
	)
	const rounds = 5
	// Each class's pods are a namespace of their own: one namespace's
	// mounts hold at most a quarter of the node's bytes, so classes of one
	// namespace would refuse each other with that bound before their own.
	class := 0
	for name, c := range classes() {
		class++
		ns := fmt.Sprintf("attacker-%d", class)
		for i := range 4 {
			wg.Go(func() {
				for r := range rounds {
					pod := fmt.Sprintf("hostile-%d-%d", i, r)
					start := time.Now()
					_, err := client.Mount(ctx, request(t, hostile.URL, c.objects, ns, pod))
					if i == 0 && r == 0 {
						t.Logf("%s: %s in %s", name, status.Code(err), time.Since(start).Round(time.Millisecond))
					}
					if got := status.Code(err); got != c.code {
						t.Errorf("%s: %v, want %s", name, err, c.code)
					}
					mu.Lock()
					hostileMounts++
					mu.Unlock()
				}
			})
		}
	}
	done := make(chan struct{})
	var goodWG sync.WaitGroup
	for i := range 20 {
		goodWG.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				start := time.Now()
				resp, err := client.Mount(t.Context(), request(t, good.URL, "- {objectName: password, secretPath: secret/data/app, secretKey: password}", "shop", fmt.Sprintf("web-%d", i)))
				took := time.Since(start)
				mu.Lock()
				slowest = max(slowest, took)
				if err != nil || len(resp.GetFiles()) != 1 || string(resp.GetFiles()[0].GetContents()) != "p4ss" {
					fails++
					t.Errorf("a good pod's mount, during the attack: %v", err)
				}
				goodMounts++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(done)
	goodWG.Wait()
	cancel()

	peak, cpu := procStatus(t, p.PID(), "VmHWM"), cpuTime(t, p.PID())-baseCPU
	t.Logf("HOSTILE: %d hostile mounts, %d good mounts (%d failed, slowest %s); provider RSS %d MiB at start, peak %d MiB (ceiling %d MiB); CPU %s",
		hostileMounts, goodMounts, fails, slowest.Round(time.Millisecond), baseRSS>>20, peak>>20, rssCeiling>>20, cpu.Round(10*time.Millisecond))
	if peak > rssCeiling {
		t.Errorf("peak RSS %d MiB, over the %d MiB ceiling", peak>>20, rssCeiling>>20)
	}
	if goodMounts == 0 {
		t.Error("no good pod mounted during the attack")
	}
}
