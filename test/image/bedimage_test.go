package image_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/okevault/vault-csi-provider/test/testbed"
)

// TestBedImageMatchesDockerfile: the image the cluster bed runs (assembled
// from this repository's build, since the bed has no container engine) has
// the Dockerfile's layout: its USER, its ENTRYPOINT, a static binary at the
// path the Dockerfile copies it to, CA certificates and the nonroot user.
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

	tarball, err := testbed.BuildProviderImage(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	config, files := readDockerArchive(t, tarball)
	if config.Config.User != user.args {
		t.Errorf("bed image user %q, Dockerfile USER %q", config.Config.User, user.args)
	}
	if !slices.Equal(config.Config.Entrypoint, entrypoint) {
		t.Errorf("bed image entrypoint %q, Dockerfile ENTRYPOINT %q", config.Config.Entrypoint, entrypoint)
	}
	bin, ok := files[strings.TrimPrefix(binary, "/")]
	if !ok {
		t.Fatalf("bed image has no %s", binary)
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
		t.Error("bed image has no CA certificates (distroless static has them)")
	}
	if !strings.Contains(string(files["etc/passwd"]), "nonroot:x:65532:65532") {
		t.Error("bed image has no nonroot user 65532 (distroless nonroot has it)")
	}
}

type imageConfig struct {
	Config struct {
		User       string   `json:"User"`
		Entrypoint []string `json:"Entrypoint"`
	} `json:"config"`
}

// readDockerArchive returns the image config and the regular files of every
// layer of a docker-archive tarball.
func readDockerArchive(t *testing.T, path string) (imageConfig, map[string][]byte) {
	t.Helper()
	blobs := map[string][]byte{}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		blobs[h.Name] = b
	}
	var manifest []struct {
		Config string   `json:"Config"`
		Layers []string `json:"Layers"`
	}
	if err := json.Unmarshal(blobs["manifest.json"], &manifest); err != nil || len(manifest) != 1 {
		t.Fatalf("manifest.json: %v (%d images)", err, len(manifest))
	}
	var cfg imageConfig
	if err := json.Unmarshal(blobs[manifest[0].Config], &cfg); err != nil {
		t.Fatalf("config: %v", err)
	}
	files := map[string][]byte{}
	for _, layer := range manifest[0].Layers {
		zr, err := gzip.NewReader(bytes.NewReader(blobs[layer]))
		if err != nil {
			t.Fatalf("layer %s: %v", layer, err)
		}
		lr := tar.NewReader(zr)
		for {
			h, err := lr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.Typeflag == tar.TypeReg {
				b, err := io.ReadAll(lr)
				if err != nil {
					t.Fatal(err)
				}
				files[h.Name] = b
			}
		}
	}
	return cfg, files
}
