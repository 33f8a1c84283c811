package render

import (
	"fmt"
	"reflect"
	"strings"
	"unicode/utf8"
)

// step charges cost to the execution's steps, and stops it at the mount's
// deadline.
func (t *Template) step(cost int) error {
	if err := t.ctx.Err(); err != nil {
		return err
	}
	if t.steps += cost; t.steps > MaxSteps {
		return &safeError{fmt.Sprintf("ranges would take more than %d steps (each iteration costs its body's nodes, each range the length of what it ranges over)", MaxSteps)}
	}
	return nil
}

// length is what ranging over v costs before its first iteration: its
// length (a map's keys are sorted), or the count of a range over an
// integer.
func length(v any) int {
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Map, reflect.Slice, reflect.Array, reflect.String, reflect.Chan:
		return rv.Len()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return int(max(rv.Int(), 0))
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

func (t *Template) charge(n int) error {
	if err := t.ctx.Err(); err != nil {
		return err
	}
	if t.built += n; t.built > MaxBuilt {
		return &safeError{fmt.Sprintf("functions would make more than %d bytes", MaxBuilt)}
	}
	return nil
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
		part := sep + fmt.Sprint(a)
		if err := t.charge(len(part)); err != nil {
			return "", err
		}
		b.WriteString(part)
	}
	if ln {
		if err := t.charge(1); err != nil {
			return "", err
		}
		b.WriteByte('\n')
	}
	return b.String(), nil
}

// printf is fmt.Sprintf one verb at a time, each charged before the next.
// Widths and precisions are bounded (fmt would pad before anything could
// count the bytes); '*' and explicit argument indexes are refused, so each
// verb takes the next operand.
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
			n, err := verbLen(format)
			if err != nil {
				return "", err
			}
			verb := format[:n]
			format = format[n:]
			switch {
			case verb == "%%":
				lit += "%"
			case len(args) == 0:
				r, _ := utf8.DecodeLastRuneInString(verb)
				lit += "%!" + string(r) + "(MISSING)" // as fmt writes it
			default:
				lit += fmt.Sprintf(verb, args[0])
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

// verbLen is the length of the verb at the start of f ("%-08.3f"), or an
// error for what printf does not take.
func verbLen(f string) (int, error) {
	i := 1
	for i < len(f) && strings.IndexByte("+-# 0", f[i]) >= 0 {
		i++
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
				return 0, &safeError{fmt.Sprintf("printf: a %s over %d", part, maxWidth)}
			}
			i++
		}
	}
	if i >= len(f) {
		return 0, &safeError{"printf: the format ends inside a verb"}
	}
	if f[i] == '*' || f[i] == '[' {
		return 0, &safeError{"printf: '*' widths and [n] operand indexes are not supported"}
	}
	// A verb is one rune.
	_, size := utf8.DecodeRuneInString(f[i:])
	return i + size, nil
}

// escaper is html, js or urlquery: the operands are joined as text/template
// does (Sprint, unless one string), charged, then escaped and charged.
func (t *Template) escaper(escape func(string) string) func(...any) (string, error) {
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
		return t.made(escape(s))
	}
}

// join formats each element, charging it, then the separators, before
// building the result.
func (t *Template) join(sep string, list []any) (string, error) {
	parts := make([]string, len(list))
	for i, e := range list {
		s, err := t.made(fmt.Sprint(e))
		if err != nil {
			return "", err
		}
		parts[i] = s
	}
	if len(list) > 1 {
		if err := t.charge(len(sep) * (len(list) - 1)); err != nil {
			return "", err
		}
	}
	return strings.Join(parts, sep), nil
}
