package testbed

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// modulePath is the module whose root holds bin/; walking up stops at its go.mod.
const modulePath = "github.com/okevault/vault-csi-provider"

// BinEnv overrides the folder that Bin looks in (default <module root>/bin).
const BinEnv = "OKEVAULT_TESTBIN"

// MissingBinaryError reports a part that "make testbin" has not built yet.
type MissingBinaryError struct {
	Name string // the binary or folder looked for, e.g. "vault"
	Dir  string // the folder it was looked for in
}

func (e *MissingBinaryError) Error() string {
	return fmt.Sprintf("%s not found in %s: run \"make testbin\" (first build ~25 minutes)", e.Name, e.Dir)
}

// BinDir returns the folder holding the test bed's binaries: $OKEVAULT_TESTBIN,
// or bin/ at the root of this module.
func BinDir() (string, error) {
	if dir := os.Getenv(BinEnv); dir != "" {
		return filepath.Abs(dir)
	}
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "bin"), nil
}

// Bin returns the path of bin/<name> (a binary, or a folder such as
// csidriver-deploy). A missing entry, or a symlink into an emptied cache, is a
// *MissingBinaryError.
func Bin(name string) (string, error) {
	dir, err := BinDir()
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", &MissingBinaryError{Name: name, Dir: dir}
		}
		return "", fmt.Errorf("look up %s: %w", name, err)
	}
	return p, nil
}

// ModuleRoot walks up from the working directory to the go.mod of this module.
func ModuleRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find module root: %w", err)
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if isOurModule(filepath.Join(dir, "go.mod")) {
			return dir, nil
		}
		if filepath.Dir(dir) == dir {
			return "", fmt.Errorf("no go.mod of module %s above %s (set %s)", modulePath, wd, BinEnv)
		}
	}
}

func isOurModule(gomod string) bool {
	f, err := os.Open(gomod) //nolint:gosec // G304: a go.mod above the working directory
	if err != nil {
		return false
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module"); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`) == modulePath
		}
	}
	return false
}

// skipShort skips a test that starts real parts under -short, which is
// the quick loop (make test-unit) without them.
func skipShort(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("testbed: starts real parts; skipped under -short")
	}
}

// must turns a New* error into the Start* behaviour: any error, a missing
// binary included (its message says how to build it), fails the test.
func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("testbed: %v", err)
	}
}
