package setup

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Load reads and strictly decodes a setup file, then validates it. Relative
// file references in it are relative to the file's folder.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path) //nolint:gosec // G304: the setup file the user named
	if err != nil {
		return nil, err
	}
	f, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	f.baseDir = filepath.Dir(path)
	return f, nil
}

// Parse decodes one setup document. Unknown fields, a second document, a
// wrong apiVersion or kind are errors; yaml's messages carry line numbers.
func Parse(data []byte) (*File, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	f := &File{}
	if err := dec.Decode(f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty file")
		}
		return nil, cleanYAMLError(err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("more than one YAML document: one VaultSetup per file")
	}
	if f.APIVersion != APIVersion || f.Kind != Kind {
		return nil, fmt.Errorf("apiVersion/kind: got %q/%q, want %s/%s", f.APIVersion, f.Kind, APIVersion, Kind)
	}
	return f, nil
}

// cleanYAMLError turns "yaml: unmarshal errors:\n  line 7: field foo not
// found in type setup.Role" into "line 7: unknown field foo (in setup.Role)".
func cleanYAMLError(err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err
	}
	msgs := make([]string, 0, len(te.Errors))
	for _, m := range te.Errors {
		if before, after, ok := strings.Cut(m, ": field "); ok {
			if field, typ, ok := strings.Cut(after, " not found in type "); ok {
				m = fmt.Sprintf("%s: unknown field %q (in %s)", before, field, typ)
			}
		}
		msgs = append(msgs, m)
	}
	return errors.New(strings.Join(msgs, "; "))
}
