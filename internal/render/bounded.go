package render

import (
	"fmt"
	"reflect"
	"strings"
	"unicode/utf8"
)

// step charges cost to the execution's steps, and stops it at the mount's
// deadline. The count is checked before it is added to, so it never passes
// MaxSteps and cannot overflow, whatever a range's count.
func (t *Template) step(cost int) error {
	if err := t.ctx.Err(); err != nil {
		return err
	}
	if cost < 0 || cost > MaxSteps-t.steps {
		// The step it stopped at is in the message: it depends only on the
		// template and the data, never on load, which the hostile tests check.
		return &safeError{fmt.Sprintf("ranges would take more than %d steps: stopped at step %d (each iteration costs its body's nodes, each range the length of what it ranges over, each comparison, index or trim a step per KiB it reads)", MaxSteps, t.steps)}
	}
	t.steps += cost
	return nil
}

// length is what ranging over v costs before its first iteration: its
// length (a map's keys are sorted), or the count of a range over an
// integer, at most MaxSteps+1.
func length(v any) int {
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Map, reflect.Slice, reflect.Array, reflect.String, reflect.Chan:
		return rv.Len()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return int(min(max(rv.Int(), 0), MaxSteps+1))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return int(min(rv.Uint(), MaxSteps+1))
	}
	return 0
}

// made charges s to the bytes the execution's functions have made, and
// returns it.
func (t *Template) made(s string) (string, error) {
	return s, t.charge(len(s))
}

// charge charges n bytes made; like step, it checks before adding.
func (t *Template) charge(n int) error {
	if err := t.reserve(n); err != nil {
		return err
	}
	t.built += n
	return nil
}

// reserve checks, before a function builds up to n bytes, that they would
// fit in what functions may still make. It charges nothing: what is built
// is charged once made.
func (t *Template) reserve(n int) error {
	if err := t.ctx.Err(); err != nil {
		return err
	}
	if n < 0 || n > MaxBuilt-t.built {
		return t.errBuilt()
	}
	return nil
}

func (t *Template) errBuilt() error {
	return &safeError{fmt.Sprintf("functions would make more than %d bytes", MaxBuilt)}
}

// sizer returns a sizer limited to what functions may still make.
func (t *Template) sizer() *sizer { return &sizer{limit: MaxBuilt - t.built} }

// reserveSized checks what sz added up: a value it could not bound is
// refused as what, one over the limit as too large.
func (t *Template) reserveSized(sz *sizer, what string) error {
	if sz.unknown {
		return &safeError{what}
	}
	return t.reserve(sz.n)
}

// format is fmt.Sprintf(spec, arg), its size bounded before fmt builds it.
func (t *Template) format(spec string, vb verb, arg any) (string, error) {
	sz := t.sizer()
	if vb.c == 'T' {
		sz.add(vb.width + len(fmt.Sprintf("%T", arg))) // a type's name
	} else {
		fmtSize(sz, arg, vb, 0)
	}
	if err := t.reserveSized(sz, fmt.Sprintf("cannot format a %T", arg)); err != nil {
		return "", err
	}
	return fmt.Sprintf(spec, arg), nil
}

// sprint is fmt.Sprint (or Sprintln) with each operand formatted and
// charged before the next, so many large operands stop at the bound.
func (t *Template) sprint(args []any, ln bool) (string, error) {
	var b strings.Builder
	for i, a := range args {
		sep := ""
		if i > 0 {
			_, str := a.(string)
			_, prevStr := args[i-1].(string)
			// Sprint spaces operands when neither is a string; Sprintln always.
			if ln || !str && !prevStr {
				sep = " "
			}
		}
		s, err := t.format("%v", verb{c: 'v'}, a)
		if err != nil {
			return "", err
		}
		if err := t.charge(len(sep) + len(s)); err != nil {
			return "", err
		}
		b.WriteString(sep)
		b.WriteString(s)
	}
	if ln {
		if err := t.charge(1); err != nil {
			return "", err
		}
		b.WriteByte('\n')
	}
	return b.String(), nil
}

// printf is fmt.Sprintf one verb at a time, each bounded before fmt
// builds it and charged before the next. Widths and precisions are bounded
// (fmt pads each element of a map or list to the width); '*' and explicit
// argument indexes are refused, so each verb takes the next operand.
func (t *Template) printf(format string, args ...any) (string, error) {
	var b strings.Builder
	for format != "" {
		i := strings.IndexByte(format, '%')
		if i < 0 {
			i = len(format)
		}
		lit := format[:i]
		format = format[i:]
		if format != "" {
			n, vb, err := parseVerb(format)
			if err != nil {
				return "", err
			}
			spec := format[:n]
			format = format[n:]
			switch {
			case spec == "%%":
				lit += "%"
			case len(args) == 0:
				lit += "%!" + string(vb.c) + "(MISSING)" // as fmt writes it
			default:
				s, err := t.format(spec, vb, args[0])
				if err != nil {
					return "", err
				}
				lit += s
				args = args[1:]
			}
		}
		if err := t.charge(len(lit)); err != nil {
			return "", err
		}
		b.WriteString(lit)
	}
	if len(args) > 0 {
		return "", &safeError{fmt.Sprintf("printf: %d more operands than verbs", len(args))}
	}
	return b.String(), nil
}

// parseVerb parses the verb at the start of f ("%-08.3f"): its length and
// what bounds its output, or an error for what printf does not take.
func parseVerb(f string) (int, verb, error) {
	var vb verb
	i := 1
	for ; i < len(f) && strings.IndexByte("+-# 0", f[i]) >= 0; i++ {
		switch f[i] {
		case '#':
			vb.sharp = true
		case '+':
			vb.plus = true
		case ' ':
			vb.space = true
		}
	}
	for _, part := range []string{"width", "precision"} {
		if part == "precision" {
			if i >= len(f) || f[i] != '.' {
				break
			}
			i++
		}
		n := 0
		for i < len(f) && f[i] >= '0' && f[i] <= '9' {
			n = n*10 + int(f[i]-'0')
			if n > maxWidth {
				return 0, vb, &safeError{fmt.Sprintf("printf: a %s over %d", part, maxWidth)}
			}
			i++
		}
		if part == "width" {
			vb.width = n
		} else {
			vb.prec = n
		}
	}
	if i >= len(f) {
		return 0, vb, &safeError{"printf: the format ends inside a verb"}
	}
	if f[i] == '*' || f[i] == '[' {
		return 0, vb, &safeError{"printf: '*' widths and [n] operand indexes are not supported"}
	}
	// A verb is one rune.
	r, size := utf8.DecodeRuneInString(f[i:])
	vb.c = r
	return i + size, vb, nil
}

// escaper is html, js or urlquery: the operands are joined as text/template
// does (Sprint, unless one string), charged, then the escaped length is
// counted (size), checked, and only then escaped.
func (t *Template) escaper(escape func(string) string, size func(string) int) func(...any) (string, error) {
	return func(args ...any) (string, error) {
		s, ok := "", false
		if len(args) == 1 {
			s, ok = args[0].(string)
		}
		if !ok {
			var err error
			if s, err = t.sprint(args, false); err != nil {
				return "", err
			}
		}
		if err := t.reserve(size(s)); err != nil {
			return "", err
		}
		return t.made(escape(s))
	}
}

// join formats each element, bounded and charged, then the separators,
// before building the result.
func (t *Template) join(sep string, list []any) (string, error) {
	parts := make([]string, len(list))
	for i, e := range list {
		s, err := t.format("%v", verb{c: 'v'}, e)
		if err != nil {
			return "", err
		}
		if parts[i], err = t.made(s); err != nil {
			return "", err
		}
	}
	if len(list) > 1 {
		if len(sep) > 0 && len(list)-1 > (MaxBuilt-t.built)/len(sep) {
			return "", t.errBuilt()
		}
		if err := t.charge(len(sep) * (len(list) - 1)); err != nil {
			return "", err
		}
	}
	return strings.Join(parts, sep), nil
}
