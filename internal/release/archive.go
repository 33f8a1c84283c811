package release

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// Annotations containerd's import names an image by; ref.name is the OCI
// layout's own (a tag).
const (
	annotationRefName        = "org.opencontainers.image.ref.name"
	annotationContainerdName = "io.containerd.image.name"
)

// WriteArchive writes idx as an OCI image layout, in a tar archive at file
// (what `ctr images import`, `skopeo copy oci-archive:` and `crane push`
// take), naming it ref (registry/repository:tag).
func WriteArchive(file string, idx v1.ImageIndex, ref string) error {
	dir, err := os.MkdirTemp("", "oci-layout-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	tag := ref[strings.LastIndexByte(ref, ':')+1:]
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{annotationRefName: tag, annotationContainerdName: ref})); err != nil {
		return err
	}
	out, err := os.Create(file)
	if err != nil {
		return err
	}
	if err := tarDir(out, dir); err != nil {
		_ = out.Close()
		return fmt.Errorf("%s: %w", file, err)
	}
	return out.Close()
}

// tarDir writes dir's files into w in path order (WalkDir's), with fixed
// owners, modes and mtimes.
func tarDir(w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		h := &tar.Header{Name: filepath.ToSlash(rel), Mode: 0o644, ModTime: epoch, Format: tar.FormatPAX, Typeflag: tar.TypeReg}
		if d.IsDir() {
			h.Name, h.Mode, h.Typeflag = h.Name+"/", 0o755, tar.TypeDir
			return tw.WriteHeader(h)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		h.Size = int64(len(b))
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		_, err = tw.Write(b)
		return err
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// ReadArchive reads the image index WriteArchive wrote to file, with the
// reference it was named by. The index reads its blobs from a copy in a
// temporary directory that done removes.
func ReadArchive(file string) (idx v1.ImageIndex, ref string, done func(), err error) {
	dir, err := os.MkdirTemp("", "oci-layout-")
	if err != nil {
		return nil, "", nil, err
	}
	done = func() { _ = os.RemoveAll(dir) }
	defer func() {
		if err != nil {
			done()
		}
	}()
	if err := untar(file, dir); err != nil {
		return nil, "", nil, fmt.Errorf("%s: %w", file, err)
	}
	root, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, "", nil, fmt.Errorf("%s: %w", file, err)
	}
	m, err := root.IndexManifest()
	if err != nil {
		return nil, "", nil, err
	}
	if len(m.Manifests) != 1 {
		return nil, "", nil, fmt.Errorf("%s: the layout holds %d entries, want one image index", file, len(m.Manifests))
	}
	d := m.Manifests[0]
	if idx, err = root.ImageIndex(d.Digest); err != nil {
		return nil, "", nil, fmt.Errorf("%s: %w", file, err)
	}
	return idx, d.Annotations[annotationContainerdName], done, nil
}

// untar extracts an archive tarDir wrote: regular files and directories
// only, each inside dir.
func untar(file, dir string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if !filepath.IsLocal(h.Name) {
			return fmt.Errorf("entry %q is outside the archive", h.Name)
		}
		p := filepath.Join(dir, h.Name)
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(p, 0o755)
		case tar.TypeReg:
			err = writeFile(p, tr)
		default:
			err = fmt.Errorf("entry %q is not a file or directory", h.Name)
		}
		if err != nil {
			return err
		}
	}
}

func writeFile(p string, r io.Reader) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	out, err := os.Create(p)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, r); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}
