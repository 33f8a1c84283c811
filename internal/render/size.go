package render

import (
	"encoding/json"
	"reflect"
	"unicode"
	"unicode/utf8"
)

// sizer adds up an upper bound of the bytes a function is about to build,
// and stops adding once the sum passes limit: walking a huge value then
// costs no more than the bytes it is allowed to make.
type sizer struct {
	n, limit int
	// unknown is set for a value whose size cannot be bounded (a type with
	// methods of its own, a function, a channel): what the function would
	// make of it is refused.
	unknown bool
}

// add adds n and reports whether the sum is still within the limit.
// It saturates: the sum never passes limit+1, so it cannot overflow.
func (s *sizer) add(n int) bool {
	if n < 0 || n > s.limit-s.n {
		s.n = s.limit + 1
		return false
	}
	s.n += n
	return true
}

func (s *sizer) over() bool { return s.n > s.limit || s.unknown }

// jsonString bounds the bytes encoding/json writes for s: quotes, and
// HTML-safe escapes (\u003c for '<', \ufffd for an invalid byte).
func jsonString(sz *sizer, s string) bool {
	n := 2
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t':
				n += 2
			case c < ' ' || c == '<' || c == '>' || c == '&':
				n += 6
			default:
				n++
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 || r == '\u2028' || r == '\u2029' {
			n += 6
		} else {
			n += size
		}
		i += size
	}
	return sz.add(n)
}

// jsonSize bounds the bytes json.Marshal (indent == 0) or MarshalIndent(v,
// "", indent spaces) writes for v, depth levels in. A nested value's
// indented form grows with the square of its depth: every level's lines
// are counted with their indentation.
func jsonSize(sz *sizer, v any, depth, indent int) {
	if sz.over() {
		return
	}
	// The shapes Vault's JSON decodes to, without reflection (which would
	// allocate for every map entry it visits).
	switch v := v.(type) {
	case nil:
		sz.add(4)
	case string:
		jsonString(sz, v)
	case json.Number:
		sz.add(max(len(v), 1))
	case bool:
		sz.add(5)
	case map[string]any:
		if v == nil {
			sz.add(4)
			return
		}
		jsonOpen(sz, len(v), depth, indent)
		for k, e := range v {
			if !jsonEntry(sz, depth, indent) || !jsonString(sz, k) {
				return
			}
			jsonSize(sz, e, depth+1, indent)
		}
	case []any:
		if v == nil {
			sz.add(4)
			return
		}
		jsonOpen(sz, len(v), depth, indent)
		for _, e := range v {
			if !jsonEntry(sz, depth, indent) {
				return
			}
			jsonSize(sz, e, depth+1, indent)
		}
	default:
		jsonValue(sz, reflect.ValueOf(v), depth, indent)
	}
}

// jsonOpen counts a non-empty object's or array's brackets, its newline
// and closing indentation; jsonEntry one element's separator, newline,
// indentation and (for objects) ": ", key excluded.
func jsonOpen(sz *sizer, n, depth, indent int) bool {
	if n == 0 || indent == 0 {
		return sz.add(2)
	}
	return sz.add(2 + 1 + depth*indent)
}

func jsonEntry(sz *sizer, depth, indent int) bool {
	if indent == 0 {
		return sz.add(2) // ',' and ':'
	}
	return sz.add(3 + 1 + (depth+1)*indent) // ",\n", ": " and the indentation
}

// jsonValue is jsonSize for the other values a template can hold: the
// template's own dot, literals, .Objects.
func jsonValue(sz *sizer, v reflect.Value, depth, indent int) {
	if !v.IsValid() {
		sz.add(4)
		return
	}
	if hasMethods(v.Type()) {
		sz.unknown = true
		return
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		// One byte more than it writes, so that a cycle of pointers
		// (which json.Marshal refuses) ends at the limit.
		if !sz.add(4) || v.IsNil() {
			return
		}
		jsonSize(sz, v.Elem().Interface(), depth, indent)
	case reflect.String:
		jsonString(sz, v.String())
	case reflect.Bool:
		sz.add(5)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		sz.add(20)
	case reflect.Float32, reflect.Float64:
		sz.add(24)
	case reflect.Map:
		if v.IsNil() {
			sz.add(4)
			return
		}
		jsonOpen(sz, v.Len(), depth, indent)
		for it := v.MapRange(); it.Next(); {
			// Keys that are not strings are written as quoted numbers.
			if !jsonEntry(sz, depth, indent) || !sz.add(22) {
				return
			}
			if it.Key().Kind() == reflect.String {
				jsonString(sz, it.Key().String())
			}
			jsonSize(sz, it.Value().Interface(), depth+1, indent)
		}
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.IsNil() {
			sz.add(4)
			return
		}
		jsonOpen(sz, v.Len(), depth, indent)
		for i := range v.Len() {
			if !jsonEntry(sz, depth, indent) {
				return
			}
			jsonSize(sz, v.Index(i).Interface(), depth+1, indent)
		}
	case reflect.Struct:
		jsonOpen(sz, v.NumField(), depth, indent)
		for i := range v.NumField() {
			f := v.Type().Field(i)
			if !f.IsExported() {
				continue
			}
			if !jsonEntry(sz, depth, indent) || !jsonString(sz, f.Name) {
				return
			}
			jsonSize(sz, v.Field(i).Interface(), depth+1, indent)
		}
	default: // functions, channels, complex numbers: json.Marshal fails
		sz.unknown = true
	}
}

// hasMethods: a type whose own methods (String, MarshalJSON…) may write
// anything. json.Number's are known: it is written as its text.
func hasMethods(t reflect.Type) bool {
	return t.NumMethod() > 0 && t != reflect.TypeFor[json.Number]()
}

// htmlSize, jsSize and urlSize are the lengths of
// template.HTMLEscapeString, template.JSEscapeString and url.QueryEscape
// of s (exact, but for jsSize's non-printable runes, counted at their
// longest), counted before they are built.
func htmlSize(s string) int {
	n := len(s)
	for i := range len(s) {
		switch s[i] {
		case 0:
			n += 2 // \uFFFD
		case '"', '\'', '&':
			n += 4 // &#34; &#39; &amp;
		case '<', '>':
			n += 3
		}
	}
	return n
}

func jsSize(s string) int {
	n := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '\\' || c == '\'' || c == '"':
				n += 2
			case c == '<' || c == '>' || c == '&' || c == '=' || c < ' ':
				n += 6
			default:
				n++
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if unicode.IsPrint(r) {
			n += size
		} else {
			n += 8 // \uXXXX, up to \u10FFFF
		}
		i += size
	}
	return n
}

func urlSize(s string) int {
	n := 0
	for i := range len(s) {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' || c == ' ' {
			n++
		} else {
			n += 3
		}
	}
	return n
}

// verb is one printf verb: its flags, width and precision, as parsed.
type verb struct {
	sharp, plus, space bool
	width, prec        int // 0 when not given
	c                  rune
}

// fmtSize bounds the bytes fmt writes for v under vb, depth levels into a
// composite: fmt pads every element to the width, and writes each key and
// element of a map or list with the verb (and, for %#v, their types).
func fmtSize(sz *sizer, v any, vb verb, depth int) {
	if sz.over() {
		return
	}
	switch v := v.(type) {
	case nil:
		sz.add(vb.width + 17) // <nil>, %!d(<nil>), interface {}(nil)
	case string:
		fmtString(sz, len(v), vb, "string")
	case json.Number:
		fmtString(sz, len(v), vb, "json.Number")
	case map[string]any:
		if !fmtOpen(sz, "map[string]interface {}") {
			return
		}
		for k, e := range v {
			if !sz.add(3) || !fmtString(sz, len(k), vb, "string") { // ':' and ", "
				return
			}
			fmtSize(sz, e, vb, depth+1)
		}
	case []any:
		if !fmtOpen(sz, "[]interface {}") {
			return
		}
		for _, e := range v {
			if !sz.add(2) {
				return
			}
			fmtSize(sz, e, vb, depth+1)
		}
	default:
		fmtValue(sz, reflect.ValueOf(v), vb, depth)
	}
}

// fmtString bounds a string of n bytes: %q and %#v quote it (at most \xNN
// for a byte), %x spells each byte in two digits (or "0xNN " with '#' and
// ' '); a verb fmt does not take for strings writes %!d(type=value).
func fmtString(sz *sizer, n int, vb verb, typ string) bool {
	raw := n
	switch vb.c {
	case 'q':
		raw = 4*n + 2
	case 'v':
		if vb.sharp {
			raw = 4*n + 2
		}
	case 'x', 'X':
		switch {
		case vb.space && vb.sharp:
			raw = 5 * n
		case vb.space:
			raw = 3 * n
		default:
			raw = 2*n + 2
		}
	case 's':
	default:
		raw = n + 6 + len(typ)
	}
	return sz.add(raw + vb.width)
}

// fmtNumber bounds a number, a bool or a pointer's address: %f of 1e308
// writes 309 digits, %b of an int64 64, precisions pad with zeros;
// multiplied for complex numbers' two parts.
func fmtNumber(sz *sizer, t reflect.Type, vb verb) bool {
	n := 340 + vb.prec
	if k := t.Kind(); k == reflect.Complex64 || k == reflect.Complex128 {
		n *= 2
	}
	return sz.add(n + vb.width + 6 + len(t.String()))
}

// fmtOpen counts a composite's brackets, and its type for %#v.
func fmtOpen(sz *sizer, typ string) bool {
	return sz.add(len(typ) + 7) // map[…], T{…}, T(nil)
}

// fmtValue is fmtSize for the values a template holds besides Vault's:
// the template's dot, literals, .Objects.
func fmtValue(sz *sizer, v reflect.Value, vb verb, depth int) {
	if !v.IsValid() {
		sz.add(vb.width + 17)
		return
	}
	t := v.Type()
	if hasMethods(t) {
		sz.unknown = true
		return
	}
	next := func(e reflect.Value) {
		if e.CanInterface() {
			fmtSize(sz, e.Interface(), vb, depth+1)
		} else {
			fmtValue(sz, e, vb, depth+1)
		}
	}
	switch t.Kind() {
	case reflect.String:
		fmtString(sz, v.Len(), vb, t.String())
	case reflect.Interface:
		if !sz.add(len(t.String())+17) || v.IsNil() {
			return
		}
		next(v.Elem())
	case reflect.Pointer:
		// At the top, &{…} for a pointer to a composite; deeper, its
		// address.
		if !fmtNumber(sz, t, vb) || depth > 0 || v.IsNil() {
			return
		}
		next(v.Elem())
	case reflect.Map:
		if !fmtOpen(sz, t.String()) {
			return
		}
		for it := v.MapRange(); it.Next(); {
			if !sz.add(3) {
				return
			}
			next(it.Key())
			next(it.Value())
		}
	case reflect.Slice, reflect.Array:
		if !fmtOpen(sz, t.String()) {
			return
		}
		for i := range v.Len() {
			if !sz.add(2) {
				return
			}
			next(v.Index(i))
		}
	case reflect.Struct:
		if !fmtOpen(sz, t.String()) {
			return
		}
		for i := range v.NumField() {
			if !sz.add(len(t.Field(i).Name) + 3) { // "Name:" and ", "
				return
			}
			next(v.Field(i))
		}
	default: // bool, numbers, functions and channels (their addresses)
		fmtNumber(sz, t, vb)
	}
}
