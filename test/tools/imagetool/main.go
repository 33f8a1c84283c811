// Command imagetool assembles a container image from files of this machine and
// writes it as a docker-archive tarball that `ctr images import` takes. The
// test bed has no registry to pull from: every image its cluster runs is made
// this way from binaries the bed built (or Debian installed).
//
// usage:
//
//	imagetool -o out.tar -tag name:tag [-entrypoint /bin/x] [-cmd arg]... [-user 65532:65532]
//	       [-workdir /] [-env K=V]... [-file SRC=DST]... [-libs] [-nonroot]
//
// -file copies SRC (a file or a directory tree) to DST in the image; -libs
// adds the shared libraries and loader that every dynamically linked -file
// needs (from ldd), so host tools such as mount run in the image; -nonroot
// adds /etc/passwd and /etc/group entries for 65532 (nonroot), as distroless
// images have.
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "imagetool:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		out, tag, user, workdir string
		entrypoint, cmd, env    list
		files                   list
		libs, nonroot           bool
	)
	flag.StringVar(&out, "o", "", "output tarball")
	flag.StringVar(&tag, "tag", "", "image reference, e.g. registry.k8s.io/pause:3.10")
	flag.StringVar(&user, "user", "", "user[:group] the image runs as")
	flag.StringVar(&workdir, "workdir", "/", "working directory")
	flag.Var(&entrypoint, "entrypoint", "entrypoint element (repeat)")
	flag.Var(&cmd, "cmd", "cmd element (repeat)")
	flag.Var(&env, "env", "K=V (repeat)")
	flag.Var(&files, "file", "SRC=DST (repeat)")
	flag.BoolVar(&libs, "libs", false, "add the shared libraries the files need")
	flag.BoolVar(&nonroot, "nonroot", false, "add /etc/passwd and /etc/group with nonroot (65532)")
	flag.Parse()
	if out == "" || tag == "" {
		return errors.New("-o and -tag are required")
	}
	ref, err := name.NewTag(tag)
	if err != nil {
		return fmt.Errorf("-tag: %w", err)
	}

	var layer bytes.Buffer
	w := &layerWriter{tw: tar.NewWriter(&layer), seen: map[string]bool{}}
	if err := w.dir("tmp", 0o1777); err != nil {
		return err
	}
	var binaries []string
	for _, f := range files {
		src, dst, ok := strings.Cut(f, "=")
		if !ok {
			return fmt.Errorf("-file %q: want SRC=DST", f)
		}
		added, err := w.tree(src, dst)
		if err != nil {
			return err
		}
		binaries = append(binaries, added...)
	}
	if libs {
		for _, lib := range sharedLibs(binaries) {
			if _, err := w.tree(lib, lib); err != nil {
				return err
			}
		}
	}
	if nonroot {
		if err := w.file("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")); err != nil {
			return err
		}
		if err := w.file("etc/group", 0o644, []byte("root:x:0:\nnonroot:x:65532:\n")); err != nil {
			return err
		}
		if err := w.dir("home/nonroot", 0o700, 65532); err != nil {
			return err
		}
	}
	if err := w.tw.Close(); err != nil {
		return err
	}

	data := layer.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithCompressionLevel(gzip.BestSpeed))
	if err != nil {
		return fmt.Errorf("layer: %w", err)
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		return fmt.Errorf("image: %w", err)
	}
	img, err = mutate.Config(img, v1.Config{
		Entrypoint: entrypoint,
		Cmd:        cmd,
		Env:        append([]string{"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"}, env...),
		User:       user,
		WorkingDir: workdir,
	})
	if err != nil {
		return fmt.Errorf("image config: %w", err)
	}
	img = mutate.ConfigMediaType(img, "application/vnd.docker.container.image.v1+json")
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf.OS, cf.Architecture = "linux", "amd64"
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return err
	}
	tmp := out + ".tmp"
	if err := tarball.WriteToFile(tmp, ref, img); err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	return os.Rename(tmp, out)
}

// layerWriter writes one image layer, creating parent directories once.
type layerWriter struct {
	tw   *tar.Writer
	seen map[string]bool
}

func (w *layerWriter) dir(p string, mode int64, owner ...int) error {
	p = strings.Trim(path.Clean("/"+p), "/")
	if p == "" || w.seen[p] {
		return nil
	}
	if err := w.dir(path.Dir(p), 0o755); err != nil {
		return err
	}
	w.seen[p] = true
	h := &tar.Header{Typeflag: tar.TypeDir, Name: p + "/", Mode: mode}
	if len(owner) > 0 {
		h.Uid, h.Gid = owner[0], owner[0]
	}
	return w.tw.WriteHeader(h)
}

func (w *layerWriter) file(p string, mode int64, data []byte) error {
	p = strings.Trim(path.Clean("/"+p), "/")
	if err := w.dir(path.Dir(p), 0o755); err != nil {
		return err
	}
	w.seen[p] = true
	if err := w.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: p, Mode: mode, Size: int64(len(data))}); err != nil {
		return err
	}
	_, err := w.tw.Write(data)
	return err
}

// tree copies src (following symlinks) to dst and returns the regular files
// it added, by their source paths, for -libs.
func (w *layerWriter) tree(src, dst string) ([]string, error) {
	var added []string
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := path.Join(dst, filepath.ToSlash(rel))
		info, err := os.Stat(p) // follow links: the image gets the files
		if err != nil {
			return err
		}
		if info.IsDir() {
			return w.dir(target, 0o755)
		}
		if w.seen[strings.Trim(path.Clean("/"+target), "/")] {
			return nil
		}
		data, err := os.ReadFile(p) //nolint:gosec // G304: the bed's own files
		if err != nil {
			return err
		}
		added = append(added, p)
		return w.file(target, int64(info.Mode().Perm()), data)
	})
	if err != nil {
		return nil, fmt.Errorf("add %s: %w", src, err)
	}
	return added, nil
}

var lddPath = regexp.MustCompile(`(/\S+) \(0x`)

// sharedLibs lists, from ldd, the libraries and loader the dynamically
// linked files among files need. Static files and non-ELF files need none.
func sharedLibs(files []string) []string {
	var libs []string
	for _, f := range files {
		out, err := exec.Command("ldd", f).CombinedOutput() //nolint:gosec,noctx // G204: the bed's own files
		if err != nil {
			continue // "not a dynamic executable"
		}
		for _, m := range lddPath.FindAllStringSubmatch(string(out), -1) {
			if !slices.Contains(libs, m[1]) {
				libs = append(libs, m[1])
			}
		}
	}
	return libs
}
