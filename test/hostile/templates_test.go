package hostile

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
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

// templateServer is a class author's server answering with the secrets
// that make templates and expansions multiply: one 9,000 levels deep
// (encoding/json decodes up to 10,000), one of 1,000 keys.
func templateServer() *httptest.Server {
	var deep strings.Builder
	deep.WriteString(`{"data":{"n":`)
	for i := range 9000 {
		if i%2 == 0 {
			deep.WriteString(`{"a":`)
		} else {
			deep.WriteString(`[`)
		}
	}
	deep.WriteString(`"x"`)
	for i := 8999; i >= 0; i-- {
		if i%2 == 0 {
			deep.WriteString(`}`)
		} else {
			deep.WriteString(`]`)
		}
	}
	deep.WriteString(`}}`)
	var wide strings.Builder
	wide.WriteString(`{"data":{`)
	for k := range 1000 {
		if k > 0 {
			wide.WriteString(",")
		}
		fmt.Fprintf(&wide, `"k%04d":""`, k)
	}
	wide.WriteString(`}}`)
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case strings.HasSuffix(r.URL.Path, "/login"):
			_, _ = w.Write([]byte(`{"auth":{"client_token":"hvs.hostile","lease_duration":3600}}`))
		case strings.HasPrefix(r.URL.Path, "/v1/deep/"):
			_, _ = w.Write([]byte(deep.String()))
		case strings.HasPrefix(r.URL.Path, "/v1/wide/"):
			_, _ = w.Write([]byte(wide.String()))
		default:
			_, _ = w.Write([]byte(`{"data":{"k":"v"}}`))
		}
	}))
}

// templateClasses are the classes of issue #19 items 3 and 4, by the code
// each must fail with.
func templateClasses() map[string]struct {
	objects string
	code    codes.Code
} {
	tmpl := func(path, text string) string {
		return "- objectName: t\n  secretPath: " + path + "\n  template: '" + text + "'\n"
	}
	var expand strings.Builder
	for i := range 200 {
		fmt.Fprintf(&expand, "- {objectName: e%d, secretPath: wide/x, expand: keys, maxObjects: 1000}\n", i)
	}
	return map[string]struct {
		objects string
		code    codes.Code
	}{
		"toJSONPretty of a secret 9,000 deep": {tmpl("deep/x", `{{ toJSONPretty .Data.n }}`), codes.InvalidArgument},
		"toYAML of a secret 9,000 deep":       {tmpl("deep/x", `{{ toYAML .Data.n }}`), codes.InvalidArgument},
		"range near MaxInt64":                 {tmpl("small/x", `{{ range 1 }}{{ end }}{{ range 9223372036854775807 }}{{ end }}`), codes.InvalidArgument},
		"printf width on every entry":         {tmpl("wide/x", `{{ range 1000 }}{{ $x := printf "%4096v" $.Data }}{{ end }}`), codes.InvalidArgument},
		"200 expansions of 1,000 keys":        {expand.String(), codes.ResourceExhausted},
	}
}

// TestHostileTemplates runs the provider binary with the chart's defaults
// and sends it, from 4 hostile pods per class at once for 3 rounds, the
// classes above, while 20 other pods mount a small secret over and over.
// Every hostile mount fails with its code (or the namespace's budget) and
// each class at least once with its own; all well inside the 30 s mount
// deadline (the bounds refuse it, not the deadline); every other mount
// succeeds; the provider's peak RSS stays under rssCeiling. Logged with
// go test -v -run TestHostileTemplates ./test/hostile/ | grep HOSTILE.
func TestHostileTemplates(t *testing.T) {
	hostile, good := templateServer(), goodServer()
	defer hostile.Close()
	defer good.Close()
	p := testbed.StartProvider(t, testbed.ProviderOptions{ProvidersDir: t.TempDir(), Args: []string{"-log-level=warn"}})
	conn, err := grpc.NewClient("unix://"+p.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := v1alpha1.NewCSIDriverProviderClient(conn)
	baseRSS, baseCPU := procStatus(t, p.PID(), "VmRSS"), cpuTime(t, p.PID())

	var (
		wg, goodWG          sync.WaitGroup
		mu                  sync.Mutex
		hostileMounts       int
		goodMounts, fails   int
		slowest, slowestBad time.Duration
		ownCode             = map[string]int{} // mounts refused by the class's own bound
	)
	const rounds = 3
	for name, c := range templateClasses() {
		for i := range 4 {
			wg.Go(func() {
				for r := range rounds {
					start := time.Now()
					_, err := client.Mount(t.Context(), request(t, hostile.URL, c.objects, "attacker", fmt.Sprintf("tmpl-%d-%d", i, r)))
					took := time.Since(start)
					if i == 0 && r == 0 {
						t.Logf("%s: %s in %s", name, status.Code(err), took.Round(time.Millisecond))
					}
					// Mounts of one namespace hold at most a quarter of the
					// node's bytes: a class's pods at once may meet that
					// bound before their template's own.
					got := status.Code(err)
					if got != c.code && got != codes.ResourceExhausted {
						t.Errorf("%s: %v, want %s", name, err, c.code)
					}
					mu.Lock()
					if got == c.code {
						ownCode[name]++
					}
					hostileMounts++
					slowestBad = max(slowestBad, took)
					mu.Unlock()
				}
			})
		}
	}
	ctx, stop := context.WithCancel(t.Context())
	for i := range 20 {
		goodWG.Go(func() {
			for ctx.Err() == nil {
				start := time.Now()
				resp, err := client.Mount(context.WithoutCancel(ctx), request(t, good.URL, "- {objectName: password, secretPath: secret/data/app, secretKey: password}", "shop", fmt.Sprintf("web-%d", i)))
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
	stop()
	goodWG.Wait()

	peak, cpu := procStatus(t, p.PID(), "VmHWM"), cpuTime(t, p.PID())-baseCPU
	t.Logf("HOSTILE templates: %d hostile mounts (slowest %s), %d good mounts (%d failed, slowest %s); provider RSS %d MiB at start, peak %d MiB (ceiling %d MiB); CPU %s",
		hostileMounts, slowestBad.Round(time.Millisecond), goodMounts, fails, slowest.Round(time.Millisecond), baseRSS>>20, peak>>20, rssCeiling>>20, cpu.Round(10*time.Millisecond))
	if peak > rssCeiling {
		t.Errorf("peak RSS %d MiB, over the %d MiB ceiling", peak>>20, rssCeiling>>20)
	}
	// Each hostile mount is refused by a bound, never by the mount
	// deadline: the codes above exclude DeadlineExceeded, so no timing is
	// asserted (slowestBad is reported).
	for name, c := range templateClasses() {
		if ownCode[name] == 0 {
			t.Errorf("%s: no mount failed with %s", name, c.code)
		}
	}
	if goodMounts == 0 {
		t.Error("no good pod mounted during the attack")
	}
}
