package render

import (
	"encoding/json"
	"errors"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// toJSON is json.Marshal (indent 0) or MarshalIndent with indent spaces,
// its output bounded by a walk over v before encoding/json, which builds
// the whole value in memory, is called.
func (t *Template) toJSON(v any, indent int) (string, error) {
	sz := t.sizer()
	jsonSize(sz, v, 0, indent)
	if err := t.reserveSized(sz, "the value cannot be written as JSON"); err != nil {
		return "", err
	}
	var (
		b   []byte
		err error
	)
	if indent == 0 {
		b, err = json.Marshal(v)
	} else {
		b, err = json.MarshalIndent(v, "", strings.Repeat(" ", indent))
	}
	if err != nil {
		return "", &safeError{"the value cannot be written as JSON"}
	}
	return t.made(string(b))
}

// toYAML writes v as YAML: its numbers converted on a copy charged as it
// is made, then streamed by the encoder into a writer that charges each
// write and fails past the bound (the encoder flushes every 128 bytes).
func (t *Template) toYAML(v any) (string, error) {
	p, err := t.plain(v)
	if err != nil {
		return "", err
	}
	w := &chargedWriter{t: t}
	enc := yaml.NewEncoder(w)
	err = errors.Join(enc.Encode(p), enc.Close())
	switch {
	case w.err != nil:
		return "", w.err
	case err != nil:
		return "", &safeError{"the value cannot be written as YAML"}
	}
	return strings.TrimSuffix(w.String(), "\n"), nil
}

// chargedWriter keeps what is written to it, charged to t's bytes made,
// in blocks: a buffer grown by appending would allocate several times
// what it ends up holding.
type chargedWriter struct {
	t      *Template
	blocks [][]byte
	n      int
	err    error
}

const writerBlock = 64 << 10

func (w *chargedWriter) Write(p []byte) (int, error) {
	if w.err = w.t.charge(len(p)); w.err != nil {
		return 0, w.err
	}
	for rest := p; len(rest) > 0; {
		if len(w.blocks) == 0 || len(w.blocks[len(w.blocks)-1]) == writerBlock {
			w.blocks = append(w.blocks, make([]byte, 0, writerBlock))
		}
		last := &w.blocks[len(w.blocks)-1]
		k := min(len(rest), writerBlock-len(*last))
		*last = append(*last, rest[:k]...)
		rest = rest[k:]
	}
	w.n += len(p)
	return len(p), nil
}

func (w *chargedWriter) String() string {
	var b strings.Builder
	b.Grow(w.n)
	for _, blk := range w.blocks {
		b.Write(blk)
	}
	return b.String()
}

// What plain's copies cost, charged before each is made: a map's header
// and first group of slots, then per entry its slot and the encoder's key
// list; a list's header and elements; a number boxed.
const (
	copyMap      = 336
	copyMapEntry = 112
	copyList     = 24
	copyListElem = 16
	copyNumber   = 16
)

// plain turns json.Number (how Vault's numbers are decoded) into numbers,
// so YAML writes 5432 rather than "5432". The copy it makes is charged as
// it goes: a large secret fails before it is copied whole.
func (t *Template) plain(v any) (any, error) {
	switch v := v.(type) {
	case json.Number:
		if err := t.charge(copyNumber); err != nil {
			return nil, err
		}
		if i, err := v.Int64(); err == nil {
			return i, nil
		}
		if f, err := v.Float64(); err == nil {
			return f, nil
		}
		return v.String(), nil
	case map[string]any:
		if err := t.charge(copyMap + copyMapEntry*len(v)); err != nil {
			return nil, err
		}
		out := make(map[string]any, len(v))
		for k, e := range v {
			p, err := t.plain(e)
			if err != nil {
				return nil, err
			}
			out[k] = p
		}
		return out, nil
	case []any:
		if err := t.charge(copyList + copyListElem*len(v)); err != nil {
			return nil, err
		}
		out := make([]any, len(v))
		for i, e := range v {
			p, err := t.plain(e)
			if err != nil {
				return nil, err
			}
			out[i] = p
		}
		return out, nil
	}
	return v, nil
}

// mapCase is toUpper or toLower: the result's length is counted first
// (an invalid byte becomes U+FFFD, three bytes).
func (t *Template) mapCase(convert func(string) string, mapping func(rune) rune) func(string) (string, error) {
	return func(s string) (string, error) {
		n := 0
		for i := 0; i < len(s); {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				n += 3
			} else {
				n += utf8.RuneLen(mapping(r))
			}
			i += size
		}
		if err := t.reserve(n); err != nil {
			return "", err
		}
		return t.made(convert(s))
	}
}
