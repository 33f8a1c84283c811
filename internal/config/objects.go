package config

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/okevault/vault-csi-provider/internal/render"
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

	// The fields below go beyond the peer. They are left out of the JSON
	// that object versions hash when unset, so the versions of objects that
	// do not use them stay as they were.

	// TemplateText renders the file instead of secretKey; Template is it
	// parsed and Inputs are the GET requests of its secret calls, by the
	// path as the template writes it. Path is "" when the template reads no
	// secret of its own.
	TemplateText string            `json:"Template,omitempty"`
	Template     *render.Template  `json:"-"`
	Inputs       map[string]Object `json:"-"`
	// NoWrite (write: false) marks an object read only as a template input.
	NoWrite bool `json:",omitempty"`
	// Expand makes one file per key (or per secret and key) under Name.
	Expand Expand `json:",omitempty"`
	// MaxObjects bounds the keys (keys) or secrets (tree) Expand writes.
	MaxObjects int `json:",omitempty"`
	// TreeData is, for ExpandTree, the KV v2 data path of the listed
	// directory; Path is its metadata path, listed with ?list=true.
	TreeData string `json:",omitempty"`
	// KeyMode is the mode of the private key file of the PEM formats:
	// filePermission if set, else 0600.
	KeyMode os.FileMode `json:",omitempty"`
	// Optional: Vault's 404 leaves the request out instead of failing the
	// mount. Set on the reads of an expand: tree listing only, whose
	// secrets may be deleted (KV v2 lists a deleted secret's metadata).
	Optional bool `json:"-"`
}

// Expand says how one object becomes several files.
type Expand string

const (
	// ExpandKeys writes objectName/<key> for each key of the secret.
	ExpandKeys Expand = "keys"
	// ExpandTree lists a KV v2 directory and writes
	// objectName/<secret>/<key> for each secret directly in it.
	ExpandTree Expand = "tree"
)

// Bounds of maxObjects.
const (
	DefaultMaxObjects = 100
	maxMaxObjects     = 1000
)

// keyModePEM is the mode of a private key file without filePermission.
const keyModePEM os.FileMode = 0o600

// Dir reports whether o writes a directory of files at Name rather than one
// file.
func (o Object) Dir() bool {
	return o.Expand != "" || o.Format == FormatPEMSplit
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

// objectFields are the keys of an objects entry: the peer's, plus
// objectFormat, template, write, expand and maxObjects.
var objectFields = []string{"objectName", "secretPath", "secretKey", "method", "secretArgs", "filePermission", "encoding", "objectFormat", "template", "write", "expand", "maxObjects"}

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
	names := make(map[string]int, len(list.Content)) // objectName -> index
	files := make(map[string]int, len(list.Content)) // written file -> index
	dirs := make(map[string]int)                     // directory a written name needs (or an object writes into) -> first index
	for i, n := range list.Content {
		o, err := parseObject(i, resolve(n), format, mode)
		if err != nil {
			return nil, err
		}
		param := fmt.Sprintf("objects[%d].objectName", i)
		if j, ok := names[o.Name]; ok {
			return nil, &Error{Param: param, Reason: fmt.Sprintf("%s is also the objectName of objects[%d]; object names must be unique", quote(o.Name), j)}
		}
		names[o.Name] = i
		objs = append(objs, o)
		if o.NoWrite {
			continue // a template input: its name is a label, not a file
		}
		// The driver writes every file in one atomic step and fails the
		// whole mount, obscurely, if "db" must be both a file and a directory.
		if j, ok := dirs[o.Name]; ok && !o.Dir() {
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
		if o.Dir() {
			// Its own files are known only when read; the mount checks them.
			if _, ok := dirs[o.Name]; !ok {
				dirs[o.Name] = i
			}
		} else {
			files[o.Name] = i
		}
	}
	for i := range objs {
		if err := checkInputs(i, objs, names); err != nil {
			return nil, err
		}
	}
	return objs, nil
}

// checkInputs checks that the objects object i's template names exist and
// have a secret of their own to give it.
func checkInputs(i int, objs []Object, names map[string]int) error {
	if objs[i].Template == nil {
		return nil
	}
	for _, name := range objs[i].Template.Objects() {
		j, ok := names[name]
		var reason string
		switch {
		case !ok:
			reason = "is not the objectName of any object"
		case j == i:
			reason = "is this object: use .Data for its own secret"
		case objs[j].Path == "":
			reason = fmt.Sprintf("is objects[%d], which reads no secret (it has no secretPath)", j)
		case objs[j].Expand == ExpandTree:
			reason = fmt.Sprintf("is objects[%d], a directory listing (expand: tree), not a secret", j)
		}
		if reason != "" {
			return &Error{Param: fmt.Sprintf("objects[%d].template", i), Reason: fmt.Sprintf("calls object %s, which %s", quote(name), reason)}
		}
	}
	return nil
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

	_, hasTemplate := text["template"]
	if sp := text["secretPath"]; sp != "" {
		path, query, reason := parsePath(sp)
		if reason != "" {
			return Object{}, &Error{Param: param("secretPath"), Reason: reason}
		}
		o.Path, o.Query = path, query
	} else if !hasTemplate {
		return Object{}, &Error{Param: param("secretPath"), Reason: `is required: the Vault API path to read, such as "secret/data/db" (/v1/ is implied)`}
	}

	switch m := strings.ToUpper(text["method"]); m {
	case "":
		o.Method = http.MethodGet
	case http.MethodGet, http.MethodPut, http.MethodPost:
		o.Method = m
	default:
		return Object{}, &Error{Param: param("method"), Reason: "must be GET (the default), PUT or POST, not " + quote(text["method"])}
	}
	if o.Path == "" && (text["method"] != "" || fields["secretArgs"] != nil) {
		field := "method"
		if text["method"] == "" {
			field = "secretArgs"
		}
		return Object{}, &Error{Param: param(field), Reason: "needs secretPath: it is how that path is requested"}
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
		f, ok := parseObjectFormat(t)
		if !ok {
			return Object{}, &Error{Param: param("objectFormat"), Reason: `must be "json" (the whole Vault response), "data" (only the secret's key/value map), "pem-split" or "pem-bundle" (the certificate and key of a PKI issue), not ` + quote(t)}
		}
		o.Format = f
	}
	if w, ok := text["write"]; ok {
		b, err := strconv.ParseBool(w)
		if err != nil {
			return Object{}, &Error{Param: param("write"), Reason: "must be true (the default) or false (the object is only a template's input), not " + quote(w)}
		}
		o.NoWrite = !b
	}
	if hasTemplate {
		if err := o.parseTemplate(param, text); err != nil {
			return Object{}, err
		}
		return o, nil
	}
	if err := o.parseExpand(param, text, fields["secretArgs"] != nil); err != nil {
		return Object{}, err
	}
	if o.Format == FormatPEMSplit || o.Format == FormatPEMBundle {
		switch {
		case o.Key != "":
			return Object{}, &Error{Param: param("secretKey"), Reason: "cannot be set with objectFormat " + string(o.Format) + ": the certificate, key and chain are taken from the PKI response"}
		case o.Encoding != EncodingUTF8:
			return Object{}, &Error{Param: param("encoding"), Reason: "cannot be set with objectFormat " + string(o.Format) + ": PEM is text"}
		}
		o.KeyMode = keyModePEM
		if text["filePermission"] != "" {
			o.KeyMode = o.Mode
		}
	}
	return o, nil
}

// parseTemplate sets o's template. A template makes the whole file, so the
// fields that pick or shape a value do not apply.
func (o *Object) parseTemplate(param func(string) string, text map[string]string) error {
	for _, f := range []string{"secretKey", "encoding", "objectFormat", "expand", "maxObjects"} {
		if text[f] != "" {
			return &Error{Param: param(f), Reason: "cannot be set with template: the template makes the whole file"}
		}
	}
	t, err := render.Parse(text["template"])
	if err != nil {
		var re *render.Error
		if errors.As(err, &re) && re.Line > 0 {
			return &Error{Param: param("template"), Reason: fmt.Sprintf("line %d of the template: %s", re.Line, re.Reason)}
		}
		return &Error{Param: param("template"), Reason: err.Error()}
	}
	o.TemplateText, o.Template = text["template"], t
	o.Inputs = map[string]Object{}
	for _, lit := range t.Secrets() {
		path, query, reason := parsePath(lit)
		if reason != "" {
			return &Error{Param: param("template"), Reason: "calls secret " + quote(lit) + ", whose path " + reason}
		}
		o.Inputs[lit] = Object{Name: o.Name, Path: path, Query: query, Method: http.MethodGet}
	}
	return nil
}

// parseExpand reads expand, its spelling secretKey: "*", and maxObjects.
func (o *Object) parseExpand(param func(string) string, text map[string]string, hasArgs bool) error {
	switch e := strings.ToLower(text["expand"]); e {
	case "":
	case string(ExpandKeys), string(ExpandTree):
		o.Expand = Expand(e)
	default:
		return &Error{Param: param("expand"), Reason: `must be "keys" (a file per key of the secret) or "tree" (a directory per secret of a KV v2 directory), not ` + quote(text["expand"])}
	}
	switch {
	case o.Key == "*" && o.Expand == ExpandTree:
		return &Error{Param: param("secretKey"), Reason: `must be unset with expand: tree; "*" is the spelling of expand: keys`}
	case o.Key == "*":
		o.Key, o.Expand = "", ExpandKeys
	case o.Key != "" && o.Expand != "":
		return &Error{Param: param("secretKey"), Reason: "cannot be set with expand: every key is written"}
	}
	if t := text["maxObjects"]; t != "" {
		n, err := strconv.Atoi(t)
		switch {
		case o.Expand == "":
			return &Error{Param: param("maxObjects"), Reason: "applies only with expand (or secretKey: \"*\")"}
		case err != nil || n < 1 || n > maxMaxObjects:
			return &Error{Param: param("maxObjects"), Reason: fmt.Sprintf("must be a whole number from 1 to %d, not %s", maxMaxObjects, quote(t))}
		}
		o.MaxObjects = n
	}
	if o.Expand == "" {
		return nil
	}
	if o.MaxObjects == 0 {
		o.MaxObjects = DefaultMaxObjects
	}
	if text["objectFormat"] != "" {
		return &Error{Param: param("objectFormat"), Reason: "cannot be set with expand: each key's value is written as it is"}
	}
	if o.Expand != ExpandTree {
		return nil
	}
	switch {
	case o.Method != http.MethodGet || hasArgs:
		field := "method"
		if hasArgs {
			field = "secretArgs"
		}
		return &Error{Param: param(field), Reason: "cannot be set with expand: tree, which lists and reads"}
	case o.Query != nil:
		return &Error{Param: param("secretPath"), Reason: "cannot have a query string with expand: tree"}
	}
	meta, data, ok := kv2Dir(o.Path)
	if !ok {
		return &Error{Param: param("secretPath"), Reason: `must be a KV v2 directory's metadata path with expand: tree, such as "secret/metadata/app" (the data path "secret/data/app" is understood too), not ` + quote(o.Path)}
	}
	o.Path, o.TreeData, o.Query = meta, data, url.Values{"list": {"true"}}
	return nil
}

// kv2Dir splits a KV v2 directory path at its first "metadata" or "data"
// segment after the mount into the path to list and the prefix of its
// secrets' data paths.
func kv2Dir(path string) (meta, data string, ok bool) {
	segs := strings.Split(strings.TrimRight(path, "/"), "/")
	for k := 1; k < len(segs); k++ {
		if segs[k] != "metadata" && segs[k] != "data" {
			continue
		}
		mount, rest := strings.Join(segs[:k], "/"), strings.Join(segs[k+1:], "/")
		if rest != "" {
			rest = "/" + rest
		}
		return mount + "/metadata" + rest + "/", mount + "/data" + rest, true
	}
	return "", "", false
}

// parsePath reads a Vault API path as secretPath takes it: /v1/ implied,
// with an optional query string. reason says what is wrong.
func parsePath(s string) (path string, query url.Values, reason string) {
	path, rawQuery, _ := strings.Cut(s, "?")
	// "//x" would otherwise stay "/x" and reach Vault as an empty segment.
	path = strings.TrimLeft(path, "/")
	path = strings.TrimLeft(strings.TrimPrefix(path, "v1/"), "/")
	switch {
	case path == "":
		return "", nil, `must name a path after /v1/, such as "secret/data/db"`
	case hasSegment(path, ".."):
		return "", nil, `must not contain ".." segments`
	case strings.ContainsFunc(path, isControl):
		return "", nil, "must not contain control characters such as NUL or a newline"
	}
	if rawQuery != "" {
		q, err := url.ParseQuery(rawQuery)
		if err != nil {
			return "", nil, `has a query string that is not valid; write it as "?name=value&other=value" with %-escapes where needed`
		}
		if len(q) > 0 { // "?" or "?&" is no query at all
			query = q
		}
	}
	return path, query, ""
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

// parseObjectFormat reads an object's objectFormat, which has the PEM
// formats too; the class-wide objectFormat does not.
func parseObjectFormat(s string) (Format, bool) {
	switch f := Format(strings.ToLower(s)); f {
	case FormatPEMSplit, FormatPEMBundle:
		return f, true
	}
	return parseFormat(s)
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

// Requests are the Vault requests the objects need, before any expand: tree
// listing is known: one per object with a secretPath and one per secret a
// template calls. Each is an Object named after the object that needs it, so
// that an error names it; identical requests share a RequestKey and are made
// once.
func (m *Mount) Requests() []Object {
	var out []Object
	for _, o := range m.Objects {
		if o.Path != "" {
			out = append(out, o)
		}
		for _, lit := range o.Template.Secrets() {
			out = append(out, o.Inputs[lit])
		}
	}
	return out
}

// CheckFileName says why name, a key or secret name that becomes a file or
// directory name of an expanded object, is not a safe one; "" when it is.
// Like checkObjectName, it keeps every file inside the mount, and it keeps
// one name to one path segment.
func CheckFileName(name string) string {
	var why string
	switch {
	case name == "":
		return "an empty name is not a safe file name"
	case name == "." || name == "..":
		why = `it is "." or ".."`
	case strings.ContainsAny(name, "/\\\x00"):
		why = `it contains "/", "\" or a NUL byte`
	case len(name) > maxSegment:
		why = "it is longer than 255 bytes"
	default:
		return ""
	}
	return quote(name) + " is not a safe file name: " + why
}
