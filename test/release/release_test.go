// Package release_test checks what `make release` hands a user: the
// binaries for both platforms, the chart package and the checksums. It runs
// the Makefile target itself, which needs Go and git but not the test bed.
package release_test

import (
	"archive/tar"
	"bufio"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"helm.sh/helm/v3/pkg/chart/loader"

	"github.com/okevault/vault-csi-provider/internal/release"
	"github.com/okevault/vault-csi-provider/test/testbed"
)

const version = "v0.0.0-releasetest"

// TestRelease runs make release twice, each in a clone of this
// repository's HEAD (what a tag's build sees), the second in another
// directory under another umask, and checks the first's output; the image
// index must come out with the same digest both times. (Uncommitted
// changes are not in the clones: commit before running it.)
func TestRelease(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-builds both commands for two platforms twice and packages the chart; skipped under -short")
	}
	root, err := testbed.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.CommandContext(t.Context(), "make", "-C", root, "release", "VERSION=not-a-version", "RELEASE_DIR="+t.TempDir()).CombinedOutput(); err == nil || !strings.Contains(string(out), "VERSION=vX.Y.Z") {
		t.Errorf("make release VERSION=not-a-version: %v\n%s\nwant a refusal naming VERSION=vX.Y.Z", err, out)
	}
	build := func(clone, umask string) (dir, index string) {
		t.Helper()
		if out, err := exec.CommandContext(t.Context(), "git", "clone", "--quiet", "--no-hardlinks", root, clone).CombinedOutput(); err != nil {
			t.Fatalf("git clone: %v\n%s", err, out)
		}
		dir = filepath.Join(clone, "dist", version)
		out, err := exec.CommandContext(t.Context(), "sh", "-c", "umask "+umask+" && exec make -C "+clone+" release VERSION="+version).CombinedOutput()
		if err != nil {
			t.Fatalf("make release (umask %s): %v\n%s", umask, err, out)
		}
		m := regexp.MustCompile(`index (sha256:[0-9a-f]{64})`).FindSubmatch(out)
		if m == nil {
			t.Fatalf("make release printed no index digest:\n%s", out)
		}
		return dir, string(m[1])
	}
	start := time.Now()
	clone := filepath.Join(t.TempDir(), "a")
	dir, index := build(clone, "022")
	t.Logf("RELEASE: make release took %s", time.Since(start).Round(time.Second))
	again, indexAgain := build(filepath.Join(t.TempDir(), "elsewhere", "b"), "077")
	if index != indexAgain {
		t.Errorf("the image index is %s in one build and %s in the other", index, indexAgain)
	}
	// Every file but the chart package is the same: Helm stamps its entries
	// with the time they were packaged.
	sums := strings.Split(readFile(t, filepath.Join(dir, "SHA256SUMS")), "\n")
	for _, line := range strings.Split(readFile(t, filepath.Join(again, "SHA256SUMS")), "\n") {
		if !slices.Contains(sums, line) && !strings.HasSuffix(line, ".tgz") {
			t.Errorf("not the same in both builds: %s", line)
		}
	}

	var want []string
	for _, c := range []string{"vault-csi-provider", "vault-oke-setup"} {
		for _, arch := range []string{"amd64", "arm64"} {
			want = append(want, c+"-"+version+"-linux-"+arch, c+"-"+version+"-linux-"+arch+".cdx.json")
		}
	}
	chartFile := "vault-csi-provider-" + strings.TrimPrefix(version, "v") + ".tgz"
	want = append(want, chartFile, "vault-csi-provider-"+version+".oci.tar", "SHA256SUMS")
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

	t.Run("image", func(t *testing.T) {
		idx, ref, done, err := release.ReadArchive(filepath.Join(dir, "vault-csi-provider-"+version+".oci.tar"))
		if err != nil {
			t.Fatal(err)
		}
		defer done()
		if ref != "ghcr.io/okevault/vault-csi-provider:"+version {
			t.Errorf("the archive names the image %q", ref)
		}
		m, err := idx.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		var platforms []string
		for _, d := range m.Manifests {
			platforms = append(platforms, d.Platform.String())
			img, err := idx.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if cf.OS+"/"+cf.Architecture != d.Platform.String() || cf.Config.Labels["org.opencontainers.image.version"] != version {
				t.Errorf("%s: config says %s/%s, version label %q", d.Platform, cf.OS, cf.Architecture, cf.Config.Labels["org.opencontainers.image.version"])
			}
			// The image's binary is the release's binary for its platform.
			files := layerFiles(t, img)
			if files[strings.TrimPrefix(release.Binary, "/")] != readFile(t, filepath.Join(dir, "vault-csi-provider-"+version+"-linux-"+d.Platform.Architecture)) {
				t.Errorf("%s: %s is not the release's binary for it", d.Platform, release.Binary)
			}
		}
		if !slices.Equal(platforms, []string{"linux/amd64", "linux/arm64"}) {
			t.Errorf("the index holds %q, want linux/amd64 and linux/arm64", platforms)
		}
	})

	t.Run("push", func(t *testing.T) {
		reg := testbed.StartRegistry(t, testbed.RegistryOptions{})
		repo := reg.Host + "/okevault"
		push := func(password string) (string, error) {
			cmd := exec.CommandContext(t.Context(), "make", "-C", clone, "push", "VERSION="+version, "REGISTRY="+repo, "REGISTRY_USERNAME="+reg.Username)
			cmd.Env = append(os.Environ(), "REGISTRY_PASSWORD="+password, "SSL_CERT_FILE="+reg.CAFile)
			out, err := cmd.CombinedOutput()
			return string(out), err
		}
		if out, err := push("wrong"); err == nil || !strings.Contains(out, "the registry refused the credentials (401)") {
			t.Errorf("make push with a wrong password: %v\n%s\nwant a refusal of the credentials", err, out)
		}
		out, err := push(reg.Password)
		if err != nil {
			t.Fatalf("make push: %v\n%s", err, out)
		}
		if want := "image: " + repo + "/vault-csi-provider@" + index; !strings.Contains(out, want) {
			t.Errorf("make push printed:\n%s\nwant %q", out, want)
		}
		// What a user's tools pull back: the same index, and the chart
		// through helm's own OCI client.
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM([]byte(readFile(t, reg.CAFile)))
		got, err := remote.Index(mustRef(t, repo+"/vault-csi-provider:"+version),
			remote.WithAuth(&authn.Basic{Username: reg.Username, Password: reg.Password}),
			remote.WithTransport(&http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}))
		if err != nil {
			t.Fatal(err)
		}
		if d, err := got.Digest(); err != nil || d.String() != index {
			t.Errorf("the registry's index: %v, %v; want %s", d, err, index)
		}
		show := exec.CommandContext(t.Context(), "go", "tool", "-modfile=test/tools/helm/go.mod", "helm", "show", "chart",
			"oci://"+repo+"/charts/vault-csi-provider", "--version", strings.TrimPrefix(version, "v"),
			"--ca-file", reg.CAFile, "--username", reg.Username, "--password", reg.Password)
		show.Dir = root
		show.Env = append(os.Environ(), "HELM_REGISTRY_CONFIG="+filepath.Join(t.TempDir(), "registry.json"))
		if out, err := show.CombinedOutput(); err != nil || !strings.Contains(string(out), "name: vault-csi-provider") || !strings.Contains(string(out), "version: "+strings.TrimPrefix(version, "v")) {
			t.Errorf("helm show chart oci://...: %v\n%s", err, out)
		}
	})

	t.Run("sbom", func(t *testing.T) {
		var bom struct {
			BOMFormat string `json:"bomFormat"`
			Metadata  struct {
				Component struct{ Name, Version string }
			}
			Components []struct {
				Name string
				PURL string `json:"purl"`
			}
		}
		if err := json.Unmarshal([]byte(readFile(t, filepath.Join(dir, "vault-csi-provider-"+version+"-linux-arm64.cdx.json"))), &bom); err != nil {
			t.Fatal(err)
		}
		purls := map[string]bool{}
		for _, c := range bom.Components {
			purls[c.PURL[:strings.LastIndexByte(c.PURL, '@')]] = true
		}
		if bom.BOMFormat != "CycloneDX" || bom.Metadata.Component.Name != "vault-csi-provider" || bom.Metadata.Component.Version != version ||
			!purls["pkg:golang/github.com/hashicorp/vault/api"] || !purls["pkg:golang/google.golang.org/grpc"] || !purls["pkg:golang/stdlib"] {
			t.Errorf("the provider's SBOM: format %q, component %+v, %d components; want CycloneDX naming the release and its modules (vault/api, grpc, the standard library)",
				bom.BOMFormat, bom.Metadata.Component, len(bom.Components))
		}
	})
}

// layerFiles is the regular files of img's layers, by path.
func layerFiles(t *testing.T, img v1.Image) map[string]string {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	files := map[string]string{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			files[h.Name] = string(b)
		}
	}
}

func readFile(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mustRef(t *testing.T, ref string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
