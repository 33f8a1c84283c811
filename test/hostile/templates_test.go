package hostile

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"
)

// templateServer is a class author's server answering with the secrets
// that make templates and expansions multiply: one 9,000 levels deep
// (encoding/json decodes up to 10,000), one of 1,000 keys.
func templateServer() http.Handler {
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
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
	})
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

// TestHostileTemplates runs each class above against a provider process of
// its own with the chart's defaults, from 4 hostile pods at once for 3
// rounds, beside innocent pods mounting over and over (run says what it
// asserts of every class). Every hostile mount fails with its class's code
// or the namespace's byte budget (a class's pods at once may meet that
// bound before their template's own), and each class at least once with
// its own; the mounts a template bound refuses all say the same thing (a
// step bound names the step it stopped at). The codes exclude
// DeadlineExceeded, so each hostile mount is refused by a bound, not the
// mount deadline; no time is asserted. Logged:
// go test -v -run TestHostileTemplates ./test/hostile/ | grep HOSTILE
func TestHostileTemplates(t *testing.T) {
	for name, c := range templateClasses() {
		t.Run(name, func(t *testing.T) {
			o := run(t, attack{
				server: templateServer(),
				request: func(t *testing.T, addr, pod string) *v1alpha1.MountRequest {
					return request(t, addr, c.objects, "attacker", pod)
				},
				pods: 4, rounds: 3,
			})
			own := 0
			for _, err := range o.errs {
				switch status.Code(err) {
				case c.code:
					own++
				case codes.ResourceExhausted:
				default:
					t.Errorf("%v, want %s", err, c.code)
				}
			}
			if own == 0 {
				t.Errorf("no mount failed with %s", c.code)
			}
			if c.code == codes.InvalidArgument {
				sameMessage(t, o.errs, c.code)
			}
		})
	}
}
