package chart_test

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"helm.sh/helm/v3/pkg/chart/loader"
)

// A statement of the oldest Kubernetes supported, as the docs word it.
var floorStatement = regexp.MustCompile(`Kubernetes (1\.\d+) or (?:newer|later)`)

// TestOneKubernetesFloor holds every "Kubernetes 1.N or newer" in the
// user-facing docs to the chart's kubeVersion, which Helm enforces: one
// minimum, stated the same everywhere.
func TestOneKubernetesFloor(t *testing.T) {
	ch, err := loader.Load(chartDir(t))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`^>= (1\.\d+)\.0-0$`).FindStringSubmatch(ch.Metadata.KubeVersion)
	if m == nil {
		t.Fatalf("Chart.yaml kubeVersion %q: want \">= 1.N.0-0\" (the -0 admits the pre-release suffixes of managed clusters' versions)", ch.Metadata.KubeVersion)
	}
	floor := m[1]
	files := []string{moduleDir(t, "README.md"), moduleDir(t, "CHANGELOG.md"), filepath.Join(chartDir(t), "README.md")}
	docs, err := filepath.Glob(moduleDir(t, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	var stated int
	for _, f := range append(files, docs...) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range floorStatement.FindAllSubmatch(b, -1) {
			stated++
			if string(s[1]) != floor {
				t.Errorf("%s says %q; Chart.yaml's kubeVersion is %s", f, s[0], floor)
			}
		}
	}
	if stated < 3 {
		t.Errorf("the minimum Kubernetes version is stated %d times in the docs; want it in the README, the chart README and docs/setup.md", stated)
	}
}
