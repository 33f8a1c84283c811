package render

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"text/template/parse"
	"unicode"
)

// Limits of one execution, so that its time and memory are bounded
// whatever the template says: text/template cannot be interrupted, so every
// loop and every function is bounded instead.
//
//   - MaxOutput bounds the bytes written;
//   - MaxBuilt bounds the bytes all function calls make together (printf,
//     join, toJSON…, and toYAML's copy of its value), each call's output
//     counted before it is built, replacing text/template's own print
//     functions, which are bounded by nothing;
//   - MaxSteps bounds the work of ranges: each iteration costs the nodes of
//     the range's body, and entering a range costs the length of what it
//     ranges over (a map's keys are sorted first). A template cannot
//     recurse: {{template}} is refused.
//
// Each step and function call also checks the mount's deadline.
const (
	MaxOutput = 1 << 20
	MaxBuilt  = 4 << 20
	MaxSteps  = 1_000_000
	// maxWidth bounds printf's widths and precisions: fmt pads before any
	// bound on the result could see the bytes.
	maxWidth = 4096
)

// Function names that take a literal: what they name is read before the
// template runs.
const (
	funcObject = "object"
	funcSecret = "secret"
	// funcStep is put at the top of every range body to count its cost;
	// funcRange after every range pipeline to count what it ranges over.
	funcStep  = "_step"
	funcRange = "_range"
)

// Error is a template that does not parse or fails to run. Reason never
// holds secret values.
type Error struct {
	Line   int // line in the template, 0 when unknown
	Reason string
}

func (e *Error) Error() string {
	if e.Line == 0 {
		return e.Reason
	}
	return fmt.Sprintf("line %d: %s", e.Line, e.Reason)
}

// Template is a parsed template. It is meant to be executed once (a mount
// parses its own): Execute is not safe for concurrent use.
type Template struct {
	tmpl    *template.Template
	objects []string
	secrets []string
	text    string // for the lines of errors found by the walk
	// Per execution: what it has cost so far, its input and deadline.
	steps, built int
	in           Input
	ctx          context.Context //nolint:containedctx // the functions text/template calls take no context
}

// Input is what a template sees. Data and the maps' values are secrets'
// key/value maps as decoded from Vault's JSON.
type Input struct {
	// Data is the object's own secret (its secretPath), nil when it has none.
	Data map[string]any
	// Objects are the other objects' secrets by objectName.
	Objects map[string]map[string]any
	// Secrets are the secrets of the template's secret calls, by the path
	// as the template writes it.
	Secrets map[string]map[string]any
	// Budget, when set, is charged for the output as it is written (twice
	// its bytes: the buffer grows by doubling).
	Budget Budget
}

// Budget is charged for what a template writes; a *budget.Mount.
type Budget interface{ Take(n int64) error }

// Parse parses text and collects the objects and paths it refers to.
func Parse(text string) (*Template, error) {
	if strings.TrimSpace(text) == "" {
		return nil, &Error{Reason: "is empty: write the file's text, such as \"user={{ .Data.username }}\""}
	}
	t := &Template{text: text}
	tmpl, err := template.New("t").Option("missingkey=error").Funcs(t.funcs()).Parse(text)
	if err != nil {
		return nil, parseError(err)
	}
	if len(tmpl.Templates()) > 1 {
		return nil, &Error{Reason: "{{define}} and {{block}} are not supported: a template is one file's text"}
	}
	if err := t.walk(tmpl.Root); err != nil {
		return nil, err
	}
	t.tmpl = tmpl
	return t, nil
}

// Objects are the objectNames the template's object calls name, in order of
// first use; none for a nil Template.
func (t *Template) Objects() []string {
	if t == nil {
		return nil
	}
	return slices.Clone(t.objects)
}

// Secrets are the paths the template's secret calls name, as written, in
// order of first use; none for a nil Template.
func (t *Template) Secrets() []string {
	if t == nil {
		return nil
	}
	return slices.Clone(t.secrets)
}

// walk checks the tree under n, records the literals of object and secret
// calls and puts a step counter at the top of every range body.
func (t *Template) walk(n parse.Node) error {
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return nil
		}
		for _, c := range n.Nodes {
			if err := t.walk(c); err != nil {
				return err
			}
		}
	case *parse.ActionNode:
		return t.walk(n.Pipe)
	case *parse.PipeNode:
		if n == nil {
			return nil
		}
		for _, c := range n.Cmds {
			if err := t.walk(c); err != nil {
				return err
			}
		}
	case *parse.CommandNode:
		return t.command(n)
	case *parse.ChainNode:
		return t.walk(n.Node)
	case *parse.IfNode:
		return t.branch(&n.BranchNode)
	case *parse.WithNode:
		return t.branch(&n.BranchNode)
	case *parse.RangeNode:
		if err := t.branch(&n.BranchNode); err != nil {
			return err
		}
		// {{range X}}body{{end}} runs as {{range X | _range}}{{_step N}}body{{end}},
		// N being the body's nodes.
		counted, err := template.New("").Funcs(t.funcs()).Parse(fmt.Sprintf("{{. | %s}}{{%s %d}}", funcRange, funcStep, nodes(n.List)))
		if err != nil {
			return err // a template of constants: cannot fail
		}
		probe := counted.Root.Nodes
		n.Pipe.Cmds = append(n.Pipe.Cmds, probe[0].(*parse.ActionNode).Pipe.Cmds[1])
		n.List.Nodes = append([]parse.Node{probe[1]}, n.List.Nodes...)
	case *parse.TemplateNode:
		return &Error{Line: t.line(n), Reason: "{{template}} is not supported: a template is one file's text"}
	case *parse.IdentifierNode:
		if n.Ident == funcObject || n.Ident == funcSecret {
			return &Error{Line: t.line(n), Reason: fmt.Sprintf("%s can only be called directly with a literal, such as (%s %q)", n.Ident, n.Ident, example(n.Ident))}
		}
	}
	return nil
}

// nodes counts the nodes under n: what one pass over it may evaluate.
func nodes(n parse.Node) int {
	count := 1
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return 0
		}
		for _, c := range n.Nodes {
			count += nodes(c)
		}
	case *parse.ActionNode:
		count += nodes(n.Pipe)
	case *parse.PipeNode:
		if n == nil {
			return 0
		}
		for _, c := range n.Cmds {
			count += nodes(c)
		}
	case *parse.CommandNode:
		for _, a := range n.Args {
			count += nodes(a)
		}
	// A chain of fields is a lookup per field.
	case *parse.FieldNode:
		count += len(n.Ident) - 1
	case *parse.VariableNode:
		count += len(n.Ident) - 1
	case *parse.ChainNode:
		count += nodes(n.Node) + len(n.Field) - 1
	case *parse.IfNode:
		count += nodes(n.Pipe) + nodes(n.List) + nodes(n.ElseList)
	case *parse.WithNode:
		count += nodes(n.Pipe) + nodes(n.List) + nodes(n.ElseList)
	case *parse.RangeNode:
		count += nodes(n.Pipe) + nodes(n.List) + nodes(n.ElseList)
	}
	return count
}

func (t *Template) branch(b *parse.BranchNode) error {
	for _, n := range []parse.Node{b.Pipe, b.List, b.ElseList} {
		if l, ok := n.(*parse.ListNode); ok && l == nil {
			continue
		}
		if err := t.walk(n); err != nil {
			return err
		}
	}
	return nil
}

// command records object and secret calls, whose argument must be a
// literal string so the read is known before the template runs.
func (t *Template) command(c *parse.CommandNode) error {
	for i, a := range c.Args {
		id, ok := a.(*parse.IdentifierNode)
		if !ok || id.Ident != funcObject && id.Ident != funcSecret {
			if err := t.walk(a); err != nil {
				return err
			}
			continue
		}
		var lit *parse.StringNode
		if i == 0 && len(c.Args) == 2 {
			lit, _ = c.Args[1].(*parse.StringNode)
		}
		if lit == nil {
			return &Error{Line: t.line(c), Reason: fmt.Sprintf("%s takes one literal string, such as (%s %q): what a template reads must be known before it runs", id.Ident, id.Ident, example(id.Ident))}
		}
		list := &t.secrets
		if id.Ident == funcObject {
			list = &t.objects
		}
		if !slices.Contains(*list, lit.Text) {
			*list = append(*list, lit.Text)
		}
		return nil
	}
	return nil
}

func example(fn string) string {
	if fn == funcObject {
		return "db"
	}
	return "secret/data/app"
}

// line is n's line in the template text, from its byte offset.
func (t *Template) line(n parse.Node) int {
	pos := min(int(n.Position()), len(t.text))
	return strings.Count(t.text[:pos], "\n") + 1
}

// Execute renders the template, giving up when ctx ends (with an error
// wrapping ctx's).
func (t *Template) Execute(ctx context.Context, in Input) ([]byte, error) {
	t.in, t.ctx, t.steps, t.built = in, ctx, 0, 0
	out := limited{budget: in.Budget}
	dot := struct {
		Data    map[string]any
		Objects map[string]map[string]any
	}{in.Data, in.Objects}
	if err := t.tmpl.Execute(&out, dot); err != nil {
		if out.refused != nil {
			return nil, out.refused // the mount's budget: not the template's fault
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("the template gave up at the mount's deadline: %w", ctx.Err())
		}
		return nil, execError(err)
	}
	return out.buf.Bytes(), nil
}

// limited is a buffer that refuses to grow past MaxOutput, or past what
// its budget allows.
type limited struct {
	buf     bytes.Buffer
	budget  Budget
	refused error // the budget's refusal
}

var errTooLarge = fmt.Errorf("the output is larger than %d bytes", MaxOutput)

func (l *limited) Write(p []byte) (int, error) {
	if l.buf.Len()+len(p) > MaxOutput {
		return 0, errTooLarge
	}
	if l.budget != nil {
		if err := l.budget.Take(2 * int64(len(p))); err != nil {
			l.refused = err
			return 0, err
		}
	}
	return l.buf.Write(p)
}

// safeError is an error of this package's functions: its text holds no
// value, so it can be shown.
type safeError struct{ msg string }

func (e *safeError) Error() string { return e.msg }

func (t *Template) funcs() template.FuncMap {
	return template.FuncMap{
		funcObject: func(name string) (map[string]any, error) {
			d, ok := t.in.Objects[name]
			if !ok {
				return nil, &safeError{fmt.Sprintf("object %q has no data", name)}
			}
			return d, nil
		},
		funcSecret: func(path string) (map[string]any, error) {
			d, ok := t.in.Secrets[path]
			if !ok {
				return nil, &safeError{fmt.Sprintf("secret %q was not read", path)}
			}
			return d, nil
		},
		funcStep: func(cost int) (string, error) { return "", t.step(cost) },
		funcRange: func(v any) (any, error) {
			if err := t.step(length(v)); err != nil {
				return nil, err
			}
			// Counted first: the keys' bytes are summed only for a map
			// whose length fit.
			return v, t.step(sortCost(reflect.ValueOf(v)))
		},
		// text/template's comparisons and index, replaced: charged for
		// the bytes they compare.
		"eq":    t.eq,
		"ne":    t.ne,
		"lt":    t.lt,
		"le":    t.le,
		"gt":    t.gt,
		"ge":    t.ge,
		"index": t.index,
		// text/template's own print functions, replaced: bounded.
		"printf":   t.printf,
		"print":    func(args ...any) (string, error) { return t.sprint(args, false) },
		"println":  func(args ...any) (string, error) { return t.sprint(args, true) },
		"html":     t.escaper(template.HTMLEscapeString, htmlSize),
		"js":       t.escaper(template.JSEscapeString, jsSize),
		"urlquery": t.escaper(url.QueryEscape, urlSize),
		"base64Encode": func(s string) (string, error) {
			if err := t.reserve(base64.StdEncoding.EncodedLen(len(s))); err != nil {
				return "", err
			}
			return t.made(base64.StdEncoding.EncodeToString([]byte(s)))
		},
		"base64Decode": func(s string) (string, error) {
			if err := t.step(kib(len(s))); err != nil { // the trim's scan
				return "", err
			}
			s = strings.TrimSpace(s)
			if err := t.reserve(base64.StdEncoding.DecodedLen(len(s))); err != nil {
				return "", err
			}
			b, err := base64.StdEncoding.DecodeString(s)
			if err != nil {
				return "", &safeError{"the value is not valid base64"}
			}
			return t.made(string(b))
		},
		"toJSON":       func(v any) (string, error) { return t.toJSON(v, 0) },
		"toJSONPretty": func(v any) (string, error) { return t.toJSON(v, 2) },
		"toYAML":       t.toYAML,
		"default": func(def, v any) any {
			if empty(v) {
				return def
			}
			return v
		},
		"required": func(msg string, v any) (any, error) {
			if empty(v) {
				return nil, &safeError{"required: " + msg}
			}
			return v, nil
		},
		"join": t.join,
		// Makes nothing, but scans up to all of s: charged as a comparison.
		"trimSpace": func(s string) (string, error) {
			if err := t.step(kib(len(s))); err != nil {
				return "", err
			}
			return strings.TrimSpace(s), nil
		},
		"toUpper": t.mapCase(strings.ToUpper, unicode.ToUpper),
		"toLower": t.mapCase(strings.ToLower, unicode.ToLower),
	}
}

// empty is what default and required treat as unset: nil, "", a zero
// number, false, or an empty list or map.
func empty(v any) bool {
	switch t := v.(type) {
	case nil:
		return true
	case string:
		return t == ""
	case json.Number:
		f, err := t.Float64()
		return err == nil && f == 0
	case bool:
		return !t
	case []any:
		return len(t) == 0
	case map[string]any:
		return len(t) == 0
	}
	return false
}

// text/template's errors read "template: t:LINE[:COL]: ...".
var errLine = regexp.MustCompile(`^template: t:(\d+):(?:\d+:)? ?(.*)$`)

// parseError keeps the line and parser's message: it quotes the template,
// never a secret.
func parseError(err error) error {
	m := errLine.FindStringSubmatch(err.Error())
	if m == nil {
		return &Error{Reason: "does not parse"}
	}
	n, _ := strconv.Atoi(m[1])
	return &Error{Line: n, Reason: m[2]}
}

// execNode is what text/template puts after the position of an execution
// error: `executing "t" at <.Data.x>: reason`.
var execNode = regexp.MustCompile(`^executing "t" at (<.*?>): (.*)$`)

// safeExec are execution failures whose text names template elements or
// types, never values. Others (such as "range can't iterate over VALUE")
// can quote a secret, so only their place is shown.
var safeExec = []string{"map has no entry for key", "can't evaluate field", "nil pointer evaluating", "wrong number of args", "wrong type for value", "error calling index", "error calling slice", "error calling len", "error calling eq", "error calling ne", "error calling lt", "error calling le", "error calling gt", "error calling ge", "can't call method"}

func execError(err error) error {
	var se *safeError
	if errors.Is(err, errTooLarge) {
		return &Error{Reason: errTooLarge.Error()}
	}
	m := errLine.FindStringSubmatch(err.Error())
	if m == nil {
		// The step counter's own template: no line of the user's.
		if errors.As(err, &se) {
			return &Error{Reason: se.msg}
		}
		return &Error{Reason: "failed (the cause is not shown: it may quote a secret value)"}
	}
	n, _ := strconv.Atoi(m[1])
	at, reason := "", "failed (the cause is not shown: it may quote a secret value)"
	if e := execNode.FindStringSubmatch(m[2]); e != nil {
		at = " at " + e[1]
		switch {
		case errors.As(err, &se):
			reason = se.msg
		case slices.ContainsFunc(safeExec, func(p string) bool { return strings.HasPrefix(e[2], p) }):
			reason = e[2]
		}
	}
	return &Error{Line: n, Reason: "executing" + at + ": " + reason}
}
