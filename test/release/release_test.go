// Package release_test checks what `make release` hands a user: the
// binaries for both platforms, the chart package and the checksums. It runs
// the Makefile target itself, which needs Go and git but not the test bed.
package release_test

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart/loader"

	"github.com/okevault/vault-csi-provider/test/testbed"
)

const version = "v0.0.0-releasetest"

func TestRelease(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-builds both commands for two platforms and packages the chart; skipped under -short")
	}
	root, err := testbed.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	runMake := func(args ...string) ([]byte, error) {
		cmd := exec.CommandContext(t.Context(), "make", append([]string{"-C", root}, args...)...)
		return cmd.CombinedOutput()
	}

	if out, err := runMake("release", "VERSION=not-a-version", "RELEASE_DIR="+dir); err == nil || !strings.Contains(string(out), "VERSION=vX.Y.Z") {
		t.Errorf("make release VERSION=not-a-version: %v\n%s\nwant a refusal naming VERSION=vX.Y.Z", err, out)
	}
	out, err := runMake("release", "VERSION="+version, "RELEASE_DIR="+dir)
	if err != nil {
		t.Fatalf("make release: %v\n%s", err, out)
	}

	var want []string
	for _, c := range []string{"vault-csi-provider", "vault-oke-setup"} {
		for _, arch := range []string{"amd64", "arm64"} {
			want = append(want, c+"-"+version+"-linux-"+arch)
		}
	}
	chartFile := "vault-csi-provider-" + strings.TrimPrefix(version, "v") + ".tgz"
	want = append(want, chartFile, "SHA256SUMS")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("dist holds %q, want %q", got, want)
	}

	t.Run("checksums", func(t *testing.T) {
		f, err := os.Open(filepath.Join(dir, "SHA256SUMS"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		summed := map[string]bool{}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			sum, name, ok := strings.Cut(sc.Text(), "  ") // sha256sum's text mode
			if !ok {
				t.Fatalf("SHA256SUMS line %q", sc.Text())
			}
			b, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			h := sha256.Sum256(b)
			if hex.EncodeToString(h[:]) != sum {
				t.Errorf("%s: SHA256SUMS says %s, the file hashes to %x", name, sum, h)
			}
			summed[name] = true
		}
		for _, name := range want {
			if name != "SHA256SUMS" && !summed[name] {
				t.Errorf("%s has no checksum", name)
			}
		}
	})

	t.Run("host binaries run", func(t *testing.T) {
		if runtime.GOOS != "linux" || (runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64") {
			t.Skipf("no release binary for %s/%s", runtime.GOOS, runtime.GOARCH)
		}
		suffix := "-" + version + "-linux-" + runtime.GOARCH
		out, err := exec.CommandContext(t.Context(), filepath.Join(dir, "vault-csi-provider"+suffix), "-version").Output()
		if err != nil {
			t.Fatal(err)
		}
		var v map[string]string
		if err := json.Unmarshal(out, &v); err != nil {
			t.Fatalf("-version printed %q: %v", out, err)
		}
		if v["gitVersion"] != version || v["platform"] != "linux/"+runtime.GOARCH || v["gitCommit"] == "" || v["buildDate"] == "" || v["minDriverVersion"] == "" {
			t.Errorf("-version = %v: want the release's version, platform, commit, date and driver", v)
		}
		out, err = exec.CommandContext(t.Context(), filepath.Join(dir, "vault-oke-setup"+suffix), "version").Output()
		if err != nil || !strings.HasPrefix(string(out), "vault-oke-setup "+version+" ") {
			t.Errorf("vault-oke-setup version: %q, %v", out, err)
		}
	})

	t.Run("arm64 binaries are arm64", func(t *testing.T) {
		for _, c := range []string{"vault-csi-provider", "vault-oke-setup"} {
			for arch, machine := range map[string]string{"arm64": "ARM aarch64", "amd64": "x86-64"} {
				out, err := exec.CommandContext(t.Context(), "file", filepath.Join(dir, c+"-"+version+"-linux-"+arch)).Output()
				if err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(string(out), machine) || !strings.Contains(string(out), "statically linked") {
					t.Errorf("file says %q; want a static %s binary", out, machine)
				}
			}
		}
	})

	t.Run("chart package", func(t *testing.T) {
		pkg := filepath.Join(dir, chartFile)
		ch, err := loader.Load(pkg)
		if err != nil {
			t.Fatal(err)
		}
		md := ch.Metadata
		if md.Version != strings.TrimPrefix(version, "v") || md.AppVersion != md.Version || md.KubeVersion == "" || md.Annotations["artifacthub.io/license"] != "Apache-2.0" {
			t.Errorf("packaged Chart.yaml: version %q appVersion %q kubeVersion %q licence %q", md.Version, md.AppVersion, md.KubeVersion, md.Annotations["artifacthub.io/license"])
		}
		if ch.Schema == nil {
			t.Error("the package lacks values.schema.json")
		}
		cmd := exec.CommandContext(t.Context(), "go", "tool", "-modfile=test/tools/helm/go.mod", "helm", "lint", "--strict", pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "0 chart(s) failed") {
			t.Errorf("helm lint --strict %s: %v\n%s", chartFile, err, out)
		}
	})
}
