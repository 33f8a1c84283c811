package provider

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"slices"
	"strings"

	"github.com/hashicorp/vault/api"

	"github.com/okevault/vault-csi-provider/internal/budget"
	"github.com/okevault/vault-csi-provider/internal/config"
	"github.com/okevault/vault-csi-provider/internal/render"
	"github.com/okevault/vault-csi-provider/internal/vault"
)

// file is one file of the mount and what its object version is made of.
type file struct {
	path     string
	mode     os.FileMode
	contents []byte
	index    int           // of the object it comes from, for errors
	object   config.Object // hashed into the version
	kv2      string        // metadata.version of the KV v2 secret it comes from, "" when none
	// spec is object as JSON, encoded once per object and shared by its
	// files: never appended to in place.
	spec []byte
}

// versionSpec is what f's version hashes besides its contents: its
// object's configuration, and the path for objects that write several
// files (JSON holds no raw NUL, so the path stays apart from it).
func (f file) versionSpec() []byte {
	if f.path == f.object.Name {
		return f.spec
	}
	return append(append(slices.Clip(f.spec), 0), f.path...)
}

// fileCost is what a file costs the mount besides its path, contents and
// spec: its entry here (with the slice's spare capacity), its v1alpha1.File
// and ObjectVersion in the response and its version's text, about 600
// bytes held per file once the response is built (measured on 20,000
// files of an expansion), plus checkPaths' map entries while it runs.
const fileCost = 1024

// made is the mount's files, each charged to its budget as it is made.
type made struct {
	mb  *budget.Mount
	out []file
}

// add charges f (all but its contents when a template's writer charged
// them already) and keeps it. Its spec is charged per file: every file's
// version hashes it, and those of an expansion copy it.
func (m *made) add(f file, contentsCharged bool) error {
	n := fileCost + len(f.path) + len(f.spec)
	if !contentsCharged {
		n += len(f.contents)
	}
	if err := m.mb.Take(int64(n)); err != nil {
		return err
	}
	m.out = append(m.out, f)
	return nil
}

// outputs shapes the responses into the mount's files, in object order,
// charging mb for each file as it is made.
func outputs(ctx context.Context, objects []config.Object, responses map[string]*vault.Response, mb *budget.Mount) ([]file, error) {
	var (
		files  = &made{mb: mb}
		inputs map[string]map[string]any // the templates' .Objects, built once
	)
	for i, o := range objects {
		if o.NoWrite {
			continue
		}
		spec, err := json.Marshal(o)
		if err != nil {
			return nil, fmt.Errorf("object %q (%s): encode its configuration: %w", o.Name, o.Path, err)
		}
		r := responses[o.RequestKey()]
		one := func(contents []byte, kv2 string, charged bool) error {
			return files.add(file{path: o.Name, mode: o.Mode, contents: contents, index: i, object: o, kv2: kv2, spec: spec}, charged)
		}
		switch {
		case o.Template != nil:
			if inputs == nil {
				inputs = templateObjects(objects, responses)
			}
			var b []byte
			if b, err = execute(ctx, i, o, inputs, responses, mb); err == nil {
				err = one(b, "", true) // charged as the template wrote it
			}
		case o.Expand == config.ExpandKeys:
			err = expandKeys(files, i, o, spec, o.Name, r)
		case o.Expand == config.ExpandTree:
			err = expandTree(files, i, o, spec, r, responses)
		case o.Format == config.FormatPEMSplit || o.Format == config.FormatPEMBundle:
			var fs []file
			if fs, err = pemFiles(i, o, r); err == nil {
				for _, f := range fs {
					f.spec = spec
					if err = files.add(f, false); err != nil {
						break
					}
				}
			}
		default:
			var b []byte
			if b, err = content(o, r); err == nil {
				err = one(b, r.KV2Version(), false)
			}
		}
		if err != nil {
			var ce *config.Error
			if errors.As(err, &ce) {
				return nil, err // names its parameter already
			}
			return nil, fmt.Errorf("object %q (%s): %w", o.Name, o.Path, err)
		}
	}
	return files.out, checkPaths(files.out)
}

// templateObjects are the secrets of the objects a template may call by
// name: every object that reads one (a tree object lists, it has none).
func templateObjects(objects []config.Object, responses map[string]*vault.Response) map[string]map[string]any {
	in := map[string]map[string]any{}
	for _, o := range objects {
		if o.Path != "" && o.Expand != config.ExpandTree {
			in[o.Name] = responses[o.RequestKey()].Data
		}
	}
	return in
}

// execute renders object i's template. Its failures are InvalidArgument,
// naming objects[i].template.
func execute(ctx context.Context, i int, o config.Object, objects map[string]map[string]any, responses map[string]*vault.Response, mb *budget.Mount) ([]byte, error) {
	in := render.Input{Objects: objects, Secrets: map[string]map[string]any{}, Budget: mb}
	if o.Path != "" {
		in.Data = responses[o.RequestKey()].Data
	}
	for lit, req := range o.Inputs {
		in.Secrets[lit] = responses[req.RequestKey()].Data
	}
	b, err := o.Template.Execute(ctx, in)
	var re *render.Error
	switch {
	case err != nil && (ctx.Err() != nil || errors.Is(err, budget.ErrExhausted)):
		return nil, fmt.Errorf("objects[%d].template: %w", i, err) // the mount's deadline or budget: not the template's fault
	case errors.As(err, &re) && re.Line > 0:
		return nil, &config.Error{Param: fmt.Sprintf("objects[%d].template", i), Reason: fmt.Sprintf("line %d of the template: %s", re.Line, re.Reason)}
	case err != nil:
		return nil, &config.Error{Param: fmt.Sprintf("objects[%d].template", i), Reason: err.Error()}
	}
	return b, nil
}

// expandKeys writes dir/<key> for each key of r's secret, each file
// charged before the next is made.
func expandKeys(files *made, i int, o config.Object, spec []byte, dir string, r *vault.Response) error {
	if len(r.Data) > o.MaxObjects {
		return fmt.Errorf("%w: the secret has %d keys, more than maxObjects (%d)", errUnfit, len(r.Data), o.MaxObjects)
	}
	for _, k := range slices.Sorted(maps.Keys(r.Data)) {
		if why := config.CheckFileName(k); why != "" {
			return fmt.Errorf("%w: key %s", errUnfit, why)
		}
		raw, err := value(r.Data, k)
		if err != nil {
			return err
		}
		b, err := decode(o.Encoding, raw)
		if err != nil {
			return fmt.Errorf("key %q: %w", k, err)
		}
		if err := files.add(file{path: dir + "/" + k, mode: o.Mode, contents: b, index: i, object: o, kv2: r.KV2Version(), spec: spec}, false); err != nil {
			return err
		}
	}
	return nil
}

// treeReads are the reads the expand: tree objects need once their
// directories are listed: one per secret directly in each directory. They
// are checked before any is made: names that are not safe file names, or
// more secrets than maxObjects, fail the mount.
func treeReads(objects []config.Object, responses map[string]*vault.Response) ([]config.Object, error) {
	var out []config.Object
	for _, o := range objects {
		if o.Expand != config.ExpandTree {
			continue
		}
		names, err := listed(o, responses[o.RequestKey()])
		if err != nil {
			return nil, fmt.Errorf("object %q (%s): %w", o.Name, o.Path, err)
		}
		for _, n := range names {
			out = append(out, treeSecret(o, n))
		}
	}
	return out, nil
}

// listed are the secrets a LIST response names. Sub-directories (names
// ending in "/") are not descended into.
func listed(o config.Object, r *vault.Response) ([]string, error) {
	raw, _ := r.Data["keys"].([]any)
	var names []string
	for _, k := range raw {
		name, ok := k.(string)
		if !ok {
			return nil, fmt.Errorf("%w: the listing is not a list of names", errUnfit)
		}
		if strings.HasSuffix(name, "/") {
			continue
		}
		if why := config.CheckFileName(name); why != "" {
			return nil, fmt.Errorf("%w: secret %s", errUnfit, why)
		}
		names = append(names, name)
	}
	if len(names) > o.MaxObjects {
		return nil, fmt.Errorf("%w: the directory has %d secrets, more than maxObjects (%d)", errUnfit, len(names), o.MaxObjects)
	}
	slices.Sort(names)
	return names, nil
}

// treeSecret is the read of secret name of tree object o, named after o so
// that its errors name o. It is optional: a secret deleted since (or whose
// current version is deleted) is left out.
func treeSecret(o config.Object, name string) config.Object {
	return config.Object{Name: o.Name, Path: o.TreeData + "/" + name, Method: http.MethodGet, Optional: true}
}

// expandTree writes objectName/<secret>/<key> for each listed secret that
// has a current version.
func expandTree(files *made, i int, o config.Object, spec []byte, list *vault.Response, responses map[string]*vault.Response) error {
	names, err := listed(o, list)
	if err != nil {
		return err
	}
	for _, n := range names {
		r, ok := responses[treeSecret(o, n).RequestKey()]
		if !ok {
			continue
		}
		if err := expandKeys(files, i, o, spec, o.Name+"/"+n, r); err != nil {
			return fmt.Errorf("secret %q: %w", n, err)
		}
	}
	return nil
}

// checkPaths keeps the driver's rule for the files expansions generate, as
// config does for objectNames: one path is one file, never also a directory.
func checkPaths(files []file) error {
	at := make(map[string]int, len(files))
	for i, f := range files {
		at[f.path] = i
	}
	for _, f := range files {
		for k := range len(f.path) {
			if f.path[k] != '/' {
				continue
			}
			if j, ok := at[f.path[:k]]; ok {
				return &config.Error{Param: fmt.Sprintf("objects[%d].objectName", f.index), Reason: fmt.Sprintf("%q needs %q to be a directory, but objects[%d] writes a file there", f.path, f.path[:k], files[j].index)}
			}
		}
	}
	seen := make(map[string]int, len(files))
	for _, f := range files {
		if j, ok := seen[f.path]; ok {
			return &config.Error{Param: fmt.Sprintf("objects[%d].objectName", f.index), Reason: fmt.Sprintf("writes %q, which objects[%d] writes too", f.path, j)}
		}
		seen[f.path] = f.index
	}
	return nil
}

// content is the file for o from its response.
func content(o config.Object, r *vault.Response) ([]byte, error) {
	var raw []byte
	switch {
	case o.Key != "":
		v, err := value(r.Data, o.Key)
		if err != nil {
			return nil, err
		}
		raw = v
	case o.Format == config.FormatData:
		b, err := json.Marshal(r.Data)
		if err != nil {
			return nil, fmt.Errorf("encode secret data: %w", err)
		}
		raw = b
	default:
		b, err := peerEnvelope(r.Body)
		if err != nil {
			return nil, err
		}
		raw = b
	}
	return decode(o.Encoding, raw)
}

// peerEnvelope is the whole response as the peer writes it, so that files
// stay byte for byte the same across a migration: vault/api's Secret,
// decoded the way api.ParseSecret decodes and encoded with its tags (keys
// in its field order, omitempty fields such as auth and wrap_info left out
// when null, fields it lacks dropped, data's keys sorted).
func peerEnvelope(body []byte) ([]byte, error) {
	s, err := api.ParseSecret(bytes.NewReader(body))
	if err != nil || s == nil {
		return nil, fmt.Errorf("%w: the response is not a Vault secret", errUnfit)
	}
	b, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("encode the response: %w", err)
	}
	return b, nil
}

// value is key's value: a string as it is, anything else as JSON.
func value(data map[string]any, key string) ([]byte, error) {
	v, ok := data[key]
	if !ok {
		return nil, fmt.Errorf("%w: secretKey %q is not in the secret", errMissingKey, key)
	}
	if str, isString := v.(string); isString {
		return []byte(str), nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode value of key %q: %w", key, err)
	}
	return b, nil
}

func decode(enc config.Encoding, raw []byte) ([]byte, error) {
	switch enc {
	case config.EncodingBase64:
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(raw)))
		if err != nil {
			return nil, fmt.Errorf("%w: encoding is base64 but the value is not valid base64", errBadContent)
		}
		return b, nil
	case config.EncodingHex:
		b, err := hex.DecodeString(strings.TrimSpace(string(raw)))
		if err != nil {
			return nil, fmt.Errorf("%w: encoding is hex but the value is not valid hex", errBadContent)
		}
		return b, nil
	}
	return raw, nil
}
