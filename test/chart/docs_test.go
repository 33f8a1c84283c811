package chart_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// userDocs are the files a user follows: both READMEs and docs/*.md.
func userDocs(t *testing.T) []string {
	t.Helper()
	docs, err := filepath.Glob(moduleDir(t, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	return append([]string{moduleDir(t, "README.md"), filepath.Join(chartDir(t), "README.md")}, docs...)
}

// shellCommands joins the backslash-continued lines of text and returns the
// commands that start with prefix.
func shellCommands(text, prefix string) []string {
	var cmds []string
	var cur strings.Builder
	for line := range strings.SplitSeq(text, "\n") {
		line = strings.TrimSpace(line)
		cont := strings.HasSuffix(line, `\`)
		cur.WriteString(strings.TrimSuffix(line, `\`) + " ")
		if !cont {
			if c := strings.TrimSpace(cur.String()); strings.HasPrefix(c, prefix) {
				cmds = append(cmds, c)
			}
			cur.Reset()
		}
	}
	return cmds
}

// pinned reads a version from test/tools/versions.env, without its "v".
func pinned(t *testing.T, key string) string {
	t.Helper()
	b, err := os.ReadFile(moduleDir(t, "test", "tools", "versions.env"))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok && k == key {
			return strings.TrimPrefix(v, "v")
		}
	}
	t.Fatalf("%s not in test/tools/versions.env", key)
	return ""
}

// TestDriverChartPinned holds every install of the driver's chart in the docs
// to a version the project's beds run: the cluster bed's line (for
// Kubernetes 1.30 and up) or the process bed's (the older clusters). An
// unpinned install takes the newest chart, which may refuse the cluster.
func TestDriverChartPinned(t *testing.T) {
	allowed := []string{pinned(t, "CLUSTER_CSI_DRIVER_VERSION"), pinned(t, "CSI_DRIVER_VERSION")}
	var found int
	for _, path := range userDocs(t) {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range shellCommands(string(b), "helm ") {
			if !strings.Contains(c, "secrets-store-csi-driver/secrets-store-csi-driver") {
				continue
			}
			found++
			m := regexp.MustCompile(`--version[ =]([^ ]+)`).FindStringSubmatch(c)
			switch {
			case m == nil:
				t.Errorf("%s: the driver's chart installed without --version: %s", filepath.Base(path), c)
			case m[1] != allowed[0] && m[1] != allowed[1]:
				t.Errorf("%s: the driver's chart pinned at %s; the beds run %q: %s", filepath.Base(path), m[1], allowed, c)
			}
		}
	}
	if found < 3 {
		t.Errorf("found %d installs of the driver's chart; want the README's, the chart README's and docs/setup.md's", found)
	}
}

// driverSource is the driver module the cluster bed builds (its go.mod in
// test/tools/csidriver-cluster), from the module cache: the docs quote its
// log lines and metric names, so they are checked against it.
func driverSource(t *testing.T) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/secrets-store-csi-driver")
	cmd.Dir = moduleDir(t, "test", "tools", "csidriver-cluster")
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off")
	out, err := cmd.Output()
	dir := strings.TrimSpace(string(out))
	if err != nil || dir == "" {
		t.Skipf("the driver's module is not in the module cache (make testbin downloads it): %v", err)
	}
	return dir
}

// TestTroubleshootingMatchesDriver checks what docs/troubleshooting.md
// tells a user to look for against the driver v1.6.0's source: the log line
// and metrics of a failed remount exist there, and the rotation events the
// driver v1.6.0 no longer emits are named only for the v1.5 line.
func TestTroubleshootingMatchesDriver(t *testing.T) {
	b, err := os.ReadFile(moduleDir(t, "docs", "troubleshooting.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	for i, line := range strings.Split(doc, "\n") {
		if strings.Contains(line, "MountRotation") && !strings.Contains(line, "v1.5") {
			t.Errorf("troubleshooting.md:%d names a MountRotation event without saying only driver v1.5 emits it: %s", i+1, line)
		}
	}
	// Each thing the doc tells the user to look for, and the driver v1.6.0's
	// file and text it comes from (metrics as Prometheus shows them: the
	// instrument's name plus _total).
	quotes := []struct{ doc, file, source string }{
		{"failed to mount secrets store object content", "pkg/secrets-store/nodeserver.go", `"failed to mount secrets store object content"`},
		{"isRemountRequest=true", "pkg/secrets-store/nodeserver.go", `"isRemountRequest", isRemountRequest`},
		{"Mask error until fix available", "pkg/secrets-store/nodeserver.go", "Mask error until fix available"},
		{"node publish volume complete", "pkg/secrets-store/nodeserver.go", `"node publish volume complete"`},
		{"rotationPollInterval", "pkg/secrets-store/nodeserver.go", "rotationConfig.rotationCacheDuration"},
		{"provider not found", "pkg/secrets-store/provider_client.go", `"provider not found"`},
		{"node_publish_error_total", "pkg/secrets-store/stats_reporter.go", `"node_publish_error"`},
		{"rotation_reconcile_total", "pkg/secrets-store/stats_reporter.go", `"rotation_reconcile"`},
		{"rotation_reconcile_error_total", "pkg/secrets-store/stats_reporter.go", `"rotation_reconcile_error"`},
		{"FailedToCreateSecret", "controllers/secretproviderclasspodstatus_controller.go", `"FailedToCreateSecret"`},
	}
	for _, q := range quotes {
		if !strings.Contains(doc, q.doc) {
			t.Errorf("troubleshooting.md does not name %q", q.doc)
		}
	}
	src := driverSource(t)
	for _, q := range quotes {
		b, err := os.ReadFile(filepath.Join(src, q.file))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), q.source) {
			t.Errorf("the driver's %s no longer says %s, behind troubleshooting.md's %q", q.file, q.source, q.doc)
		}
	}
	// The counters are OpenTelemetry instruments; the Prometheus exporter
	// the driver v1.6.0 uses adds _total, and the driver's own metrics page
	// still lists older names, so the doc must not send users there.
	if strings.Contains(doc, "total_node_publish") || strings.Contains(doc, "total_rotation_reconcile") {
		t.Error("troubleshooting.md uses the driver's pre-OpenTelemetry metric names (total_...)")
	}
}

// TestSupportMatrixMatchesDriverChart holds the chart README's driver lines
// to the driver charts' own kubeVersion: the v1.6 line's floor is what its
// Chart.yaml declares.
func TestSupportMatrixMatchesDriverChart(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(chartDir(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	_, section, ok := strings.Cut(readme, "## Kubernetes versions")
	if !ok {
		t.Fatal("the chart README has no \"Kubernetes versions\" section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	current, older := pinned(t, "CLUSTER_CSI_DRIVER_VERSION"), pinned(t, "CSI_DRIVER_VERSION")
	for _, v := range []string{current, older} {
		if !strings.Contains(section, "--version "+v) {
			t.Errorf("the Kubernetes versions section does not say how to install the driver %s (--version %s)", v, v)
		}
	}
	src := driverSource(t)
	cb, err := os.ReadFile(filepath.Join(src, "charts", "secrets-store-csi-driver", "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var chart struct {
		Version     string `json:"version"`
		KubeVersion string `json:"kubeVersion"`
	}
	if err := yaml.Unmarshal(cb, &chart); err != nil {
		t.Fatal(err)
	}
	if chart.Version != current {
		t.Fatalf("the module cache's driver chart is %s, versions.env says %s", chart.Version, current)
	}
	m := regexp.MustCompile(`^>= ?(1\.\d+)\.0-0$`).FindStringSubmatch(chart.KubeVersion)
	if m == nil {
		t.Fatalf("the driver's chart kubeVersion %q: not a plain floor", chart.KubeVersion)
	}
	row := regexp.MustCompile(`(?m)^\|[^\n]*` + regexp.QuoteMeta(m[1]) + `[^\n]*v` + regexp.QuoteMeta(current) + `[^\n]*$`)
	if !row.MatchString(section) {
		t.Errorf("no row of the Kubernetes versions table gives %s as the floor of the driver v%s (its Chart.yaml: kubeVersion %q)", m[1], current, chart.KubeVersion)
	}
}

// TestOKEPage checks that the OKE page exists, is linked from the README,
// docs/setup.md and docs/testbed.md, and that each of its sections that
// speaks of Oracle's service either cites a page (an https address) or says
// it is untested.
func TestOKEPage(t *testing.T) {
	b, err := os.ReadFile(moduleDir(t, "docs", "oke.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"README.md", "docs/setup.md", "docs/testbed.md"} {
		l, err := os.ReadFile(moduleDir(t, f))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(l), "oke.md)") {
			t.Errorf("%s does not link docs/oke.md", f)
		}
	}
	sections := strings.Split(string(b), "\n## ")[1:]
	if len(sections) < 6 {
		t.Errorf("docs/oke.md has %d sections; want the node pool, identity, KMS, network, images, virtual nodes, runtime and etcd", len(sections))
	}
	for _, s := range sections {
		title, _, _ := strings.Cut(s, "\n")
		oracle := strings.Contains(s, "Oracle") || strings.Contains(s, "OCI")
		if oracle && !strings.Contains(s, "https://") && !strings.Contains(s, "untested") {
			t.Errorf("docs/oke.md, section %q: neither cites a page nor says untested", title)
		}
	}
}
