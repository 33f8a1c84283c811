package config

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Object is one file of the mount and the Vault request that fills it.
type Object struct {
	Name     string         // objectName: relative file path
	Path     string         // secretPath without leading "/" or "v1/", query string kept separately
	Query    url.Values     // from "?version=3" etc., nil when none
	Key      string         // secretKey, "" = whole secret
	Method   string         // "GET" (default), "PUT", "POST" (input case-insensitive)
	Args     map[string]any // secretArgs (JSON body), nil when none
	Mode     os.FileMode    // filePermission if set, else the request's permission
	Encoding Encoding
	Format   Format
}

// RequestKey identifies a Vault request so identical ones in one mount are made once: method, path, canonical query and canonical JSON of Args.
//
// It is a SHA-256 digest rather than the request itself because Args can
// carry secrets (a wrapping token for sys/wrapping/unwrap, say), and the key
// ends up in maps and perhaps in logs.
func (o Object) RequestKey() string {
	h := sha256.New()
	// Length prefixes keep ("a", "bc") and ("ab", "c") apart.
	write := func(s string) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	method := strings.ToUpper(o.Method)
	if method == "" {
		method = http.MethodGet
	}
	write(method)
	write(o.Path)
	write(o.Query.Encode()) // sorted by key; the order of repeated values is kept, as it may matter
	switch body, err := json.Marshal(o.Args); {
	case o.Args == nil:
		// No body at all differs from an empty JSON object.
		write("none")
	case err == nil:
		// encoding/json sorts map keys at every level, so this is canonical.
		write("json:" + string(body))
	default:
		// Only a hand-built Object can hold what JSON cannot carry; fmt
		// also sorts map keys, so the key stays deterministic.
		write(fmt.Sprintf("go:%#v", o.Args))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// objectFields are the keys of an objects entry: the peer's, plus objectFormat.
var objectFields = []string{"objectName", "secretPath", "secretKey", "method", "secretArgs", "filePermission", "encoding", "objectFormat"}

// maxMerges bounds the mappings merge keys (<<) may pull into one entry:
// through aliases, a few hundred bytes of merges can otherwise fan out to
// millions of visits.
const maxMerges = 64

// maxObjects bounds the files of one mount. Each distinct object is a Vault
// request inside one mount deadline, and all files travel back in one gRPC
// message that the driver caps at 4 MiB by default; a class that needs more
// should be split across volumes.
const maxObjects = 1000

// maxArgs bounds one object's secretArgs, encoded as the JSON request body:
// arguments name what to issue or read, they are not a place for payloads.
const maxArgs = 1 << 20

// The objects list is walked as YAML nodes rather than decoded into a struct:
// a scalar node keeps its source text, so an unquoted filePermission: 0644
// is still octal 0644 here (decoding would give the integer 420, and
// sigs.k8s.io/yaml the string "420"), and every problem can name its entry,
// its field and its line without quoting the library's message, which can
// carry values. go.yaml.in/yaml/v3 is the peer's parser, so secretArgs keep
// the types the peer sent (y and NO stay strings).
func parseObjects(s string, format Format, mode os.FileMode) ([]Object, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(s), &doc); err != nil {
		return nil, &Error{Param: keyObjects, Reason: describeYAML(err, nil)}
	}
	var list *yaml.Node
	if len(doc.Content) > 0 {
		list = resolve(doc.Content[0])
	}
	switch {
	case list == nil || isNull(list) || list.Kind == yaml.SequenceNode && len(list.Content) == 0:
		return nil, &Error{Param: keyObjects, Reason: "must list at least one object"}
	case list.Kind != yaml.SequenceNode:
		return nil, &Error{Param: keyObjects, Reason: "must be a YAML list of objects, each starting with \"- objectName: ...\""}
	case len(list.Content) > maxObjects:
		return nil, &Error{Param: keyObjects, Reason: fmt.Sprintf("lists %d objects, more than the %d one mount may have; split them across SecretProviderClasses and volumes", len(list.Content), maxObjects)}
	}

	objs := make([]Object, 0, len(list.Content))
	files := make(map[string]int, len(list.Content)) // objectName -> index
	dirs := make(map[string]int)                     // directory an objectName needs -> first index needing it
	for i, n := range list.Content {
		o, err := parseObject(i, resolve(n), format, mode)
		if err != nil {
			return nil, err
		}
		param := fmt.Sprintf("objects[%d].objectName", i)
		if j, ok := files[o.Name]; ok {
			return nil, &Error{Param: param, Reason: fmt.Sprintf("%s is also the objectName of objects[%d]; object names must be unique", quote(o.Name), j)}
		}
		// The driver writes every file in one atomic step and fails the
		// whole mount, obscurely, if "db" must be both a file and a directory.
		if j, ok := dirs[o.Name]; ok {
			return nil, &Error{Param: param, Reason: fmt.Sprintf("%s is a directory of objects[%d]'s file %s, so it cannot also be a file", quote(o.Name), j, quote(objs[j].Name))}
		}
		for k := range len(o.Name) {
			if o.Name[k] != '/' {
				continue
			}
			dir := o.Name[:k]
			if j, ok := files[dir]; ok {
				return nil, &Error{Param: param, Reason: fmt.Sprintf("%s needs %s to be a directory, but objects[%d] writes a file there", quote(o.Name), quote(dir), j)}
			}
			if _, ok := dirs[dir]; !ok {
				dirs[dir] = i
			}
		}
		files[o.Name] = i
		objs = append(objs, o)
	}
	return objs, nil
}

// parseObject validates entry i of the list.
func parseObject(i int, n *yaml.Node, format Format, mode os.FileMode) (Object, error) {
	param := func(field string) string {
		if field == "" {
			return fmt.Sprintf("objects[%d]", i)
		}
		return fmt.Sprintf("objects[%d].%s", i, field)
	}
	fields := map[string]*yaml.Node{}
	if !isNull(n) { // a bare "-" is an empty entry, reported as missing fields
		if n.Kind != yaml.MappingNode {
			return Object{}, &Error{Param: param(""), Reason: "must be a mapping such as {objectName: db-password, secretPath: secret/data/db, secretKey: password}" + atLine(n)}
		}
		var p *problem
		budget := maxMerges
		if fields, p = entryFields(n, &budget); p != nil {
			return Object{}, &Error{Param: param(p.field), Reason: p.reason}
		}
	}
	text := map[string]string{}
	for _, name := range objectFields { // in order, so the same input always gets the same error
		v := fields[name]
		if v == nil || name == "secretArgs" {
			continue
		}
		switch v = resolve(v); {
		case isNull(v):
		case v.Kind != yaml.ScalarNode:
			return Object{}, &Error{Param: param(name), Reason: "must be a single value, not a list or mapping" + atLine(v)}
		default:
			text[name] = v.Value
		}
	}

	o := Object{Name: text["objectName"], Key: text["secretKey"], Mode: mode, Encoding: EncodingUTF8, Format: format}
	if reason := checkObjectName(o.Name); reason != "" {
		return Object{}, &Error{Param: param("objectName"), Reason: reason}
	}

	path, query, _ := strings.Cut(text["secretPath"], "?")
	path = strings.TrimLeft(path, "/")
	path = strings.TrimLeft(strings.TrimPrefix(path, "v1/"), "/")
	switch {
	case text["secretPath"] == "":
		return Object{}, &Error{Param: param("secretPath"), Reason: `is required: the Vault API path to read, such as "secret/data/db" (/v1/ is implied)`}
	case path == "":
		return Object{}, &Error{Param: param("secretPath"), Reason: `must name a path after /v1/, such as "secret/data/db"`}
	case hasSegment(path, ".."):
		return Object{}, &Error{Param: param("secretPath"), Reason: `must not contain ".." segments`}
	case strings.ContainsFunc(path, isControl):
		return Object{}, &Error{Param: param("secretPath"), Reason: "must not contain control characters such as NUL or a newline"}
	}
	o.Path = path
	if query != "" {
		q, err := url.ParseQuery(query)
		if err != nil {
			return Object{}, &Error{Param: param("secretPath"), Reason: `has a query string that is not valid; write it as "?name=value&other=value" with %-escapes where needed`}
		}
		o.Query = q
	}

	switch m := strings.ToUpper(text["method"]); m {
	case "":
		o.Method = http.MethodGet
	case http.MethodGet, http.MethodPut, http.MethodPost:
		o.Method = m
	default:
		return Object{}, &Error{Param: param("method"), Reason: "must be GET (the default), PUT or POST, not " + quote(text["method"])}
	}

	if v := fields["secretArgs"]; v != nil {
		args, reason := parseArgs(resolve(v))
		if reason != "" {
			return Object{}, &Error{Param: param("secretArgs"), Reason: reason}
		}
		o.Args = args
	}

	if t := text["filePermission"]; t != "" {
		m, ok := parseFileMode(t)
		if !ok {
			return Object{}, &Error{Param: param("filePermission"), Reason: `must be an octal file mode no greater than 0777, such as "0640", not ` + quote(t)}
		}
		o.Mode = m
	}

	switch e := strings.ToLower(text["encoding"]); e {
	case "", "utf-8", "utf8":
		o.Encoding = EncodingUTF8
	case string(EncodingBase64), string(EncodingHex):
		o.Encoding = Encoding(e)
	default:
		return Object{}, &Error{Param: param("encoding"), Reason: `must be "utf-8" (the default), "base64" or "hex", not ` + quote(text["encoding"])}
	}

	if t := text["objectFormat"]; t != "" {
		f, ok := parseFormat(t)
		if !ok {
			return Object{}, &Error{Param: param("objectFormat"), Reason: `must be "json" (the whole Vault response) or "data" (only the secret's key/value map), not ` + quote(t)}
		}
		o.Format = f
	}
	return o, nil
}

// problem is what is wrong with an entry, before its index is known.
type problem struct{ field, reason string }

// entryFields maps an entry's field names to their values, following merge
// keys (<<) the way YAML decoding would: fields set in the entry win over
// merged ones, and earlier merged mappings win over later ones.
func entryFields(m *yaml.Node, budget *int) (map[string]*yaml.Node, *problem) {
	fields := make(map[string]*yaml.Node, len(m.Content)/2)
	var merges []*yaml.Node
	for j := 0; j+1 < len(m.Content); j += 2 {
		k, v := resolve(m.Content[j]), m.Content[j+1]
		switch {
		case k.Kind != yaml.ScalarNode:
			return nil, &problem{"", "has a field name that is not a string" + atLine(k) + "; the fields are " + strings.Join(objectFields, ", ")}
		case k.ShortTag() == "!!merge":
			merges = append(merges, resolve(v))
		case !slices.Contains(objectFields, k.Value):
			return nil, &problem{"", "has an unknown field " + quote(k.Value) + didYouMean(k.Value) + atLine(k) + "; the fields are " + strings.Join(objectFields, ", ")}
		case fields[k.Value] != nil:
			return nil, &problem{k.Value, "is set twice" + atLine(k)}
		default:
			fields[k.Value] = v
		}
	}
	for _, mv := range merges {
		sources := []*yaml.Node{mv}
		if mv.Kind == yaml.SequenceNode {
			sources = mv.Content
		}
		for _, src := range sources {
			src = resolve(src)
			if src.Kind != yaml.MappingNode {
				return nil, &problem{"", "has a merge key (<<) that does not refer to a mapping" + atLine(src)}
			}
			if *budget--; *budget < 0 {
				return nil, &problem{"", fmt.Sprintf("merges more than %d mappings with merge keys (<<)", maxMerges) + atLine(src)}
			}
			merged, p := entryFields(src, budget)
			if p != nil {
				return nil, p
			}
			for k, v := range merged {
				if fields[k] == nil {
					fields[k] = v
				}
			}
		}
	}
	return fields, nil
}

// didYouMean catches a field in the wrong case, which the peer ignored
// without a word.
func didYouMean(k string) string {
	for _, f := range objectFields {
		if strings.EqualFold(f, k) {
			return " (did you mean " + strconv.Quote(f) + "?)"
		}
	}
	return ""
}

// parseArgs turns secretArgs into a JSON body. Its reasons never quote keys
// or values: secretArgs may hold secrets.
func parseArgs(v *yaml.Node) (map[string]any, string) {
	if isNull(v) {
		return nil, ""
	}
	if v.Kind != yaml.MappingNode {
		return nil, "must be a mapping of argument names to values, sent as the JSON request body" + atLine(v)
	}
	var raw any
	if err := v.Decode(&raw); err != nil {
		return nil, describeYAML(err, v)
	}
	conv, reason := jsonable(raw)
	if reason != "" {
		return nil, reason + atLine(v)
	}
	body, err := json.Marshal(conv)
	if err != nil {
		return nil, "must hold only values JSON can carry (no .nan or .inf)" + atLine(v)
	}
	if len(body) > maxArgs {
		return nil, fmt.Sprintf("is %d bytes as JSON, more than the %d allowed", len(body), maxArgs) + atLine(v)
	}
	return conv.(map[string]any), ""
}

// jsonable turns YAML's map[any]any (maps with a non-string key) into
// map[string]any, all the way down.
func jsonable(v any) (any, string) {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			ev, reason := jsonable(e)
			if reason != "" {
				return nil, reason
			}
			t[k] = ev
		}
		return t, ""
	case map[any]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			var ks string
			switch kt := k.(type) {
			case string:
				ks = kt
			case int:
				ks = strconv.Itoa(kt)
			case int64:
				ks = strconv.FormatInt(kt, 10)
			case uint64:
				ks = strconv.FormatUint(kt, 10)
			case float64:
				ks = strconv.FormatFloat(kt, 'g', -1, 64)
			case bool:
				ks = strconv.FormatBool(kt)
			default:
				return nil, "must have plain scalar keys (a null cannot be a JSON key)"
			}
			if _, dup := out[ks]; dup {
				return nil, "has two keys that are the same once written as JSON strings (such as 1 and 1.0)"
			}
			ev, reason := jsonable(e)
			if reason != "" {
				return nil, reason
			}
			out[ks] = ev
		}
		return out, ""
	case []any:
		for i, e := range t {
			ev, reason := jsonable(e)
			if reason != "" {
				return nil, reason
			}
			t[i] = ev
		}
		return t, ""
	default:
		return v, ""
	}
}

// yamlLine finds where yaml.v3 puts the line: "yaml: line 3: ..." or, in
// its lists of unmarshal errors, "  line 3: ...". Anchored, so a key that
// reads "line 7" inside the message is not taken for it.
var yamlLine = regexp.MustCompile(`(?m)^(?:yaml: )?\s*line (\d+):`)

// describeYAML explains a YAML error without its text, which can quote the
// input: values it cannot decode, keys it finds twice, anchor names. at
// gives the line when the error has none.
func describeYAML(err error, at *yaml.Node) string {
	reason := "is not valid YAML"
	if strings.Contains(err.Error(), "already defined") {
		reason = "has a key that is set twice"
	}
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		return reason + " (line " + m[1] + " of objects)"
	}
	return reason + atLine(at)
}

func atLine(n *yaml.Node) string {
	if n == nil || n.Line == 0 {
		return ""
	}
	return fmt.Sprintf(" (line %d of objects)", n.Line)
}

// resolve follows an alias to the node it names.
func resolve(n *yaml.Node) *yaml.Node {
	if n != nil && n.Kind == yaml.AliasNode && n.Alias != nil {
		return n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// maxSegment is NAME_MAX on Linux filesystems.
const maxSegment = 255

// checkObjectName keeps every file inside the mount (CVE-2020-8567) without
// relying on the driver to catch it.
func checkObjectName(name string) string {
	const want = `must be a relative file path such as "db-password" or "db/password": `
	switch {
	case name == "":
		return `is required: the file name to write, relative to the mount, such as "db-password"`
	case strings.HasPrefix(name, "/"):
		return want + quote(name) + " is absolute"
	case strings.ContainsRune(name, 0):
		return want + "it contains a NUL byte"
	case strings.Contains(name, `\`):
		return want + quote(name) + " contains a backslash"
	}
	for seg := range strings.SplitSeq(name, "/") {
		switch {
		case seg == "":
			return want + quote(name) + ` has an empty segment ("//" or a trailing "/")`
		case seg == "." || seg == "..":
			return want + quote(name) + ` has a "." or ".." segment`
		case len(seg) > maxSegment:
			return want + "each segment must be at most 255 bytes"
		}
	}
	return ""
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

func hasSegment(path, seg string) bool {
	for s := range strings.SplitSeq(path, "/") {
		if s == seg {
			return true
		}
	}
	return false
}

// parseFileMode reads an octal mode: "0640", "640" or "0o640".
func parseFileMode(s string) (os.FileMode, bool) {
	digits := s
	if len(s) > 2 && (s[:2] == "0o" || s[:2] == "0O") {
		digits = s[2:]
	}
	n, err := strconv.ParseUint(digits, 8, 32)
	if err != nil || n > maxMode {
		return 0, false
	}
	return os.FileMode(n), true
}

func parseFormat(s string) (Format, bool) {
	switch strings.ToLower(s) {
	case "", "json":
		return FormatEnvelope, true
	case string(FormatData):
		return FormatData, true
	}
	return "", false
}
