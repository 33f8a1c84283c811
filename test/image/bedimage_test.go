package image_test

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/okevault/vault-csi-provider/internal/release"
	"github.com/okevault/vault-csi-provider/test/testbed"
)

// TestBedImageMatchesDockerfile: the image the cluster bed runs, assembled
// by the release's recipe (internal/release, what make release writes;
// the bed has no container engine), has the Dockerfile's layout: its USER,
// its ENTRYPOINT, its LABELs (the version being the build's), a static
// binary at the path the Dockerfile copies it to, CA certificates and the
// nonroot user of distroless static.
func TestBedImageMatchesDockerfile(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the provider and its image; skipped under -short")
	}
	root, err := testbed.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	stages, err := parseDockerfile(string(src))
	if err != nil {
		t.Fatal(err)
	}
	final := stages[len(stages)-1]
	user, _ := final.last("USER")
	ep, _ := final.last("ENTRYPOINT")
	var entrypoint []string
	if err := json.Unmarshal([]byte(ep.args), &entrypoint); err != nil {
		t.Fatalf("ENTRYPOINT %q: %v", ep.args, err)
	}
	label, _ := final.last("LABEL")
	labels := map[string]string{}
	for _, m := range labelPair.FindAllStringSubmatch(label.args, -1) {
		labels[m[1]] = strings.ReplaceAll(m[2], "${VERSION}", "testbed")
	}

	archive, err := testbed.BuildProviderImage(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	idx, _, done, err := release.ReadArchive(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	m, err := idx.IndexManifest()
	if err != nil || len(m.Manifests) != 1 {
		t.Fatalf("the bed's image index: %v, want one manifest", err)
	}
	img, err := idx.Image(m.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != user.args {
		t.Errorf("image user %q, Dockerfile USER %q", cf.Config.User, user.args)
	}
	if !slices.Equal(cf.Config.Entrypoint, entrypoint) {
		t.Errorf("image entrypoint %q, Dockerfile ENTRYPOINT %q", cf.Config.Entrypoint, entrypoint)
	}
	if len(labels) == 0 || !maps.Equal(cf.Config.Labels, labels) {
		t.Errorf("image labels %v, Dockerfile LABEL %v", cf.Config.Labels, labels)
	}
	files := imageFiles(t, img)
	bin, ok := files[strings.TrimPrefix(binary, "/")]
	if !ok {
		t.Fatalf("image has no %s", binary)
	}
	exe, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		t.Fatalf("%s: %v", binary, err)
	}
	for _, p := range exe.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s is dynamically linked; the Dockerfile builds it static (CGO_ENABLED=0)", binary)
		}
	}
	if len(files["etc/ssl/certs/ca-certificates.crt"]) == 0 {
		t.Error("image has no CA certificates (distroless static has them)")
	}
	if !strings.Contains(string(files["etc/passwd"]), "nonroot:x:65532:65532") {
		t.Error("image has no nonroot user 65532 (distroless nonroot has it)")
	}
}

// labelPair is one key="value" of a LABEL instruction.
var labelPair = regexp.MustCompile(`([A-Za-z0-9._-]+)="([^"]*)"`)

// imageFiles returns the regular files of img's layers.
func imageFiles(t *testing.T, img v1.Image) map[string][]byte {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	files := map[string][]byte{}
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
			files[h.Name] = b
		}
	}
}
