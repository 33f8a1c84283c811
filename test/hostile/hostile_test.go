package hostile

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"
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
func hostileServer() http.Handler {
	// ~4 MiB (just under the provider's per-response bound) of one-entry
	// objects: what decodes to the most memory per byte.
	var big strings.Builder
	big.WriteString(`{"data":{"k":[`)
	for big.Len() < 4<<20-64 {
		big.WriteString(`{"a":0},`)
	}
	big.WriteString(`{"a":0}]}}`)
	bigBody := []byte(big.String())
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
	})
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

// TestHostileClasses runs each class above against a provider process of
// its own with the chart's defaults, from 4 hostile pods at once for 3
// rounds, beside innocent pods mounting over and over (run says what it
// asserts of every class). Every hostile mount fails with its class's
// code; a class bounded by template steps stops at the same step every
// time. The mount deadline is raised to 5 minutes so that a loaded machine
// slows the test down instead of turning the codes into DeadlineExceeded:
// the test is about bounds, not speed. Logged:
// go test -v -run TestHostileClasses ./test/hostile/ | grep HOSTILE
func TestHostileClasses(t *testing.T) {
	for name, c := range classes() {
		t.Run(name, func(t *testing.T) {
			o := run(t, attack{
				args:   []string{"-mount-timeout=5m"},
				server: hostileServer(),
				request: func(t *testing.T, addr, pod string) *v1alpha1.MountRequest {
					return request(t, addr, c.objects, "attacker", pod)
				},
				pods: 4, rounds: 3,
			})
			for _, err := range o.errs {
				if got := status.Code(err); got != c.code {
					t.Errorf("%v, want %s", err, c.code)
				}
			}
			if c.code == codes.InvalidArgument { // the template classes
				sameMessage(t, o.errs, c.code)
			}
		})
	}
}

// sameMessage fails t unless the errors of code say one thing: a template's
// bounds depend on the template and its data only, never on load or timing
// (a step bound names the step it stopped at). Byte bounds over several
// objects are not compared: which object meets one first varies.
func sameMessage(t *testing.T, errs []error, code codes.Code) {
	t.Helper()
	seen := map[string]bool{}
	for _, err := range errs {
		if status.Code(err) == code {
			seen[status.Convert(err).Message()] = true
		}
	}
	if len(seen) > 1 {
		t.Errorf("the mounts refused with %s said %d different things: %v", code, len(seen), slices.Collect(maps.Keys(seen)))
	}
}
