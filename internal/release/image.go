// Package release makes what a release hands a user beside its binaries:
// the provider's multi-platform image as an OCI image layout archive, an
// SBOM of each binary's Go modules, and the chart as an OCI artifact; and
// pushes the image and the chart to a registry.
//
// Every byte is fixed by the inputs: files have fixed owners, modes and
// mtimes, the CA bundle comes from a pinned Go module, and nothing reads
// the clock, the umask or the build directory, so a rebuild anywhere gives
// the same digests.
package release

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// Layout of the image, as the Dockerfile's final stage has it on
// distroless static (nonroot).
const (
	Binary  = "/bin/vault-csi-provider"
	CAFile  = "/etc/ssl/certs/ca-certificates.crt"
	User    = "65532:65532"
	nonroot = 65532
)

// epoch is every file's mtime and the image's creation time: a fixed time
// is what makes rebuilds identical.
var epoch = time.Unix(0, 0).UTC()

// Labels are the image's OCI labels for version, as the Dockerfile's LABEL.
func Labels(version string) map[string]string {
	return map[string]string{
		"org.opencontainers.image.title":       "vault-csi-provider",
		"org.opencontainers.image.description": "Vault provider for the Secrets Store CSI Driver",
		"org.opencontainers.image.source":      "https://github.com/okevault/vault-csi-provider",
		"org.opencontainers.image.version":     version,
		"org.opencontainers.image.licenses":    "Apache-2.0",
	}
}

// Index builds the provider's image for each platform's binary (by
// architecture, all linux) as one OCI image index.
func Index(version string, binaries map[string]string) (v1.ImageIndex, error) {
	ca, err := caBundle()
	if err != nil {
		return nil, err
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, arch := range []string{"amd64", "arm64"} {
		bin, ok := binaries[arch]
		if !ok {
			continue
		}
		img, err := image(version, arch, bin, ca)
		if err != nil {
			return nil, fmt.Errorf("linux/%s image: %w", arch, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}},
		})
	}
	return idx, nil
}

func image(version, arch, binary string, ca []byte) (v1.Image, error) {
	exe, err := os.ReadFile(binary)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	// In path order, each directory before what it holds.
	entries := []struct {
		name     string
		mode     int64
		uid      int
		contents []byte
		dir      bool
	}{
		{name: "bin/", mode: 0o755, dir: true},
		{name: "bin/vault-csi-provider", mode: 0o755, contents: exe},
		{name: "etc/", mode: 0o755, dir: true},
		{name: "etc/group", mode: 0o644, contents: []byte("root:x:0:\nnonroot:x:65532:\n")},
		{name: "etc/passwd", mode: 0o644, contents: []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		{name: "etc/ssl/", mode: 0o755, dir: true},
		{name: "etc/ssl/certs/", mode: 0o755, dir: true},
		{name: "etc/ssl/certs/ca-certificates.crt", mode: 0o644, contents: ca},
		{name: "home/", mode: 0o755, dir: true},
		{name: "home/nonroot/", mode: 0o700, uid: nonroot, dir: true},
		{name: "tmp/", mode: 0o1777, dir: true},
	}
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, Uid: e.uid, Gid: e.uid, ModTime: epoch, Format: tar.FormatPAX, Typeflag: tar.TypeReg, Size: int64(len(e.contents))}
		if e.dir {
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.contents); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil },
		tarball.WithCompressionLevel(gzip.BestCompression), tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	if img, err = mutate.Append(img, mutate.Addendum{Layer: layer, History: v1.History{Created: v1.Time{Time: epoch}, CreatedBy: "vault-csi-release image", Comment: "static binary, CA bundle, nonroot user"}}); err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Created = "linux", arch, v1.Time{Time: epoch}
	cf.Config = v1.Config{
		User:       User,
		Entrypoint: []string{Binary},
		Env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "SSL_CERT_FILE=" + CAFile},
		WorkingDir: "/home/nonroot",
		Labels:     Labels(version),
	}
	return mutate.ConfigFile(img, cf)
}

// caBundle is the Mozilla roots as golang.org/x/crypto/x509roots/fallback
// pins them (its version in go.mod is the bundle's), in PEM. Roots that
// carry a constraint a PEM file cannot express (a distrust-after date) are
// left out, as Go's fallback pool would constrain them.
func caBundle() ([]byte, error) {
	var b bytes.Buffer
	for r := range bundle.Roots() {
		if r.Constraint != nil {
			continue
		}
		if err := pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: r.Certificate}); err != nil {
			return nil, err
		}
	}
	if b.Len() == 0 {
		return nil, fmt.Errorf("no CA certificates in x509roots/fallback's bundle")
	}
	return b.Bytes(), nil
}
