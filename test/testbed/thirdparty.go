package testbed

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// ThirdPartyEnv overrides the folder of third-party source archives, as it
// does for test/tools/build.sh.
const ThirdPartyEnv = "OKEVAULT_THIRD_PARTY"

// ThirdPartyDir returns the folder of third-party source archives, looked up
// as build.sh does: $OKEVAULT_THIRD_PARTY, else ../shared/third_party beside
// the clone, else /work/shared/third_party.
func ThirdPartyDir() (string, error) {
	var candidates []string
	if d := os.Getenv(ThirdPartyEnv); d != "" {
		candidates = append(candidates, d)
	}
	if root, err := ModuleRoot(); err == nil {
		candidates = append(candidates, filepath.Join(root, "..", "shared", "third_party"))
	}
	candidates = append(candidates, "/work/shared/third_party")
	for _, d := range candidates {
		if info, err := os.Stat(d); err == nil && info.IsDir() { //nolint:gosec // G703: the operator's own setting, as for build.sh
			return filepath.Abs(d)
		}
	}
	return "", &MissingBinaryError{Name: "third-party sources (set " + ThirdPartyEnv + ")", Dir: strings.Join(candidates, ", ")}
}

// ReadArchive reads the regular files under prefix (a folder inside the
// archive's one top-level folder, e.g. "test/bats/") of a .tar.gz in the
// third-party folder, keyed by their path below prefix. Nothing is written
// to disk: the archives' licences allow test use, not copies in the project.
func ReadArchive(name, prefix string) (map[string][]byte, error) {
	dir, err := ThirdPartyDir()
	if err != nil {
		return nil, err
	}
	f, err := os.Open(filepath.Join(dir, name)) //nolint:gosec // G304: a file of the third-party folder
	if err != nil {
		return nil, fmt.Errorf("third-party archive: %w", err)
	}
	defer func() { _ = f.Close() }()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("third-party archive %s: %w", name, err)
	}
	files := map[string][]byte{}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("third-party archive %s: %w", name, err)
		}
		// Drop the top-level folder (e.g. vault-csi-provider-1.7.4/).
		_, rel, ok := strings.Cut(h.Name, "/")
		if !ok || h.Typeflag != tar.TypeReg || !strings.HasPrefix(rel, prefix) {
			continue
		}
		b, err := io.ReadAll(io.LimitReader(tr, 16<<20))
		if err != nil {
			return nil, fmt.Errorf("third-party archive %s: %s: %w", name, h.Name, err)
		}
		files[strings.TrimPrefix(rel, prefix)] = b
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("third-party archive %s: nothing under %s", name, prefix)
	}
	return files, nil
}
