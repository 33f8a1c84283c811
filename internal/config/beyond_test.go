package config

import (
	"encoding/json"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Templates, expansion and PKI formats: the fields beyond the peer's.

func TestTemplateObjects(t *testing.T) {
	objs := objectsOf(t, `
- objectName: db
  secretPath: secret/data/db
  write: false
- objectName: pgpass
  template: |
    *:5432:app:{{ (object "db").username }}:{{ (object "db").password }}
    {{ (secret "/v1/secret/data/extra?version=2").x }}
- objectName: env
  secretPath: secret/data/app
  template: "USER={{ .Data.user }}"
`)
	if !objs[0].NoWrite || objs[1].NoWrite || objs[1].Path != "" || objs[2].Path != "secret/data/app" {
		t.Errorf("NoWrite/Path: %+v", objs)
	}
	if diff := cmp.Diff([]string{"db"}, objs[1].Template.Objects()); diff != "" {
		t.Errorf("template objects (-want +got):\n%s", diff)
	}
	in := objs[1].Inputs["/v1/secret/data/extra?version=2"]
	if in.Name != "pgpass" || in.Path != "secret/data/extra" || in.Method != "GET" || in.Query.Get("version") != "2" {
		t.Errorf("input request = %+v", in)
	}
	m := mustParse(t, map[string]string{"objects": `
- {objectName: a, secretPath: secret/data/a}
- {objectName: t, template: '{{ (secret "secret/data/a").x }}{{ (secret "secret/data/b").y }}'}
`}, Defaults{})
	var paths []string
	for _, r := range m.Requests() {
		paths = append(paths, r.Name+" "+r.Path)
	}
	if diff := cmp.Diff([]string{"a secret/data/a", "t secret/data/a", "t secret/data/b"}, paths); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
	if m.Requests()[0].RequestKey() != m.Requests()[1].RequestKey() {
		t.Error("an object and a template reading one path make two requests")
	}
}

func TestExpandAndPEM(t *testing.T) {
	objs := objectsOf(t, `
- {objectName: all, secretPath: secret/data/a, secretKey: "*"}
- {objectName: keys, secretPath: secret/data/a, expand: keys, maxObjects: 5, encoding: base64}
- {objectName: tree, secretPath: secret/metadata/apps/, expand: tree}
- {objectName: tree2, secretPath: /v1/team/kv/data/apps, expand: tree}
- {objectName: root, secretPath: secret/metadata, expand: tree}
- {objectName: tls, secretPath: pki/issue/web, method: PUT, secretArgs: {common_name: a.example.com}, objectFormat: pem-split}
- {objectName: bundle.pem, secretPath: pki/issue/web, method: PUT, objectFormat: PEM-Bundle, filePermission: "0640"}
- {objectName: tls/extra, secretPath: secret/data/a, secretKey: x}
`)
	type got struct {
		Expand     Expand
		Key        string
		MaxObjects int
		Path       string
		TreeData   string
		Query      url.Values
		Format     Format
		KeyMode    os.FileMode
		Dir        bool
	}
	want := []got{
		{Expand: ExpandKeys, MaxObjects: 100, Path: "secret/data/a", Dir: true},
		{Expand: ExpandKeys, MaxObjects: 5, Path: "secret/data/a", Dir: true},
		{Expand: ExpandTree, MaxObjects: 100, Path: "secret/metadata/apps/", TreeData: "secret/data/apps", Query: url.Values{"list": {"true"}}, Dir: true},
		{Expand: ExpandTree, MaxObjects: 100, Path: "team/kv/metadata/apps/", TreeData: "team/kv/data/apps", Query: url.Values{"list": {"true"}}, Dir: true},
		{Expand: ExpandTree, MaxObjects: 100, Path: "secret/metadata/", TreeData: "secret/data", Query: url.Values{"list": {"true"}}, Dir: true},
		{Path: "pki/issue/web", Format: FormatPEMSplit, KeyMode: 0o600, Dir: true},
		{Path: "pki/issue/web", Format: FormatPEMBundle, KeyMode: 0o640},
		{Key: "x", Path: "secret/data/a"},
	}
	for i, o := range objs {
		g := got{o.Expand, o.Key, o.MaxObjects, o.Path, o.TreeData, o.Query, o.Format, o.KeyMode, o.Dir()}
		if diff := cmp.Diff(want[i], g); diff != "" {
			t.Errorf("objects[%d] %s (-want +got):\n%s", i, o.Name, diff)
		}
	}
}

// Versions hash the object's JSON: fields an object does not use must not
// change it, or upgrading would move every version.
func TestObjectJSONUnchangedForPeerFields(t *testing.T) {
	o := objectsOf(t, "- {objectName: a, secretPath: secret/data/a, secretKey: k}")[0]
	b, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"Name":"a","Path":"secret/data/a","Query":null,"Key":"k","Method":"GET","Args":null,"Mode":420,"Encoding":"utf-8","Format":""}`
	if string(b) != want {
		t.Errorf("JSON = %s\nwant   %s", b, want)
	}
}

func TestBeyondErrors(t *testing.T) {
	for _, tc := range []struct {
		name, objects, param string
		msg                  []string
	}{
		{"template syntax", "- objectName: t\n  template: |\n    ok\n    {{ .Data.x }\n", "objects[0].template", []string{"line 2 of the template", "unexpected"}},
		{"template unknown function", `- {objectName: t, template: '{{ env "HOME" }}'}`, "objects[0].template", []string{`"env" not defined`}},
		{"template non-literal path", `- {objectName: t, template: '{{ $p := "a" }}{{ secret $p }}'}`, "objects[0].template", []string{"literal"}},
		{"template bad path", `- {objectName: t, template: '{{ secret "a/../b" }}'}`, "objects[0].template", []string{`calls secret "a/../b"`, ".."}},
		{"template empty", `- {objectName: t, template: ""}`, "objects[0].template", []string{"empty"}},
		{"template unknown object", `- {objectName: t, template: '{{ (object "db").x }}'}`, "objects[0].template", []string{`calls object "db"`, "not the objectName"}},
		{"template itself", `- {objectName: t, secretPath: a/b, template: '{{ (object "t").x }}'}`, "objects[0].template", []string{".Data"}},
		{"template object without secret", "- {objectName: u, template: x}\n- {objectName: t, template: '{{ (object \"u\").x }}'}", "objects[1].template", []string{"objects[0]", "no secretPath"}},
		{"template tree object", "- {objectName: u, secretPath: secret/metadata/x, expand: tree}\n- {objectName: t, template: '{{ (object \"u\").x }}'}", "objects[1].template", []string{"expand: tree"}},
		{"template with secretKey", `- {objectName: t, template: x, secretKey: k}`, "objects[0].secretKey", []string{"cannot be set with template"}},
		{"template with encoding", `- {objectName: t, template: x, encoding: base64}`, "objects[0].encoding", []string{"cannot be set with template"}},
		{"method without path", `- {objectName: t, template: x, method: PUT}`, "objects[0].method", []string{"needs secretPath"}},
		{"secretArgs without path", `- {objectName: t, template: x, secretArgs: {a: 1}}`, "objects[0].secretArgs", []string{"needs secretPath"}},
		{"no path, no template", `- {objectName: t}`, "objects[0].secretPath", []string{"is required"}},
		{"write not a bool", `- {objectName: t, secretPath: a/b, write: maybe}`, "objects[0].write", []string{"true", "false", `"maybe"`}},
		{"expand unknown", `- {objectName: t, secretPath: a/b, expand: all}`, "objects[0].expand", []string{`"keys"`, `"tree"`, `"all"`}},
		{"expand with a key", `- {objectName: t, secretPath: a/b, expand: keys, secretKey: k}`, "objects[0].secretKey", []string{"every key"}},
		{"star with tree", `- {objectName: t, secretPath: secret/metadata/x, expand: tree, secretKey: "*"}`, "objects[0].secretKey", []string{"expand: keys"}},
		{"maxObjects without expand", `- {objectName: t, secretPath: a/b, maxObjects: 3}`, "objects[0].maxObjects", []string{"only with expand"}},
		{"maxObjects zero", `- {objectName: t, secretPath: a/b, expand: keys, maxObjects: 0}`, "objects[0].maxObjects", []string{"1 to 1000"}},
		{"maxObjects huge", `- {objectName: t, secretPath: a/b, expand: keys, maxObjects: 5000}`, "objects[0].maxObjects", []string{"1 to 1000"}},
		{"expand with format", `- {objectName: t, secretPath: a/b, expand: keys, objectFormat: data}`, "objects[0].objectFormat", []string{"cannot be set with expand"}},
		{"tree not kv2", `- {objectName: t, secretPath: kv1/apps, expand: tree}`, "objects[0].secretPath", []string{"secret/metadata/app"}},
		{"tree with PUT", `- {objectName: t, secretPath: secret/metadata/x, expand: tree, method: PUT}`, "objects[0].method", []string{"expand: tree"}},
		{"tree with a query", `- {objectName: t, secretPath: "secret/metadata/x?version=1", expand: tree}`, "objects[0].secretPath", []string{"query"}},
		{"pem with a key", `- {objectName: t, secretPath: pki/issue/web, method: PUT, objectFormat: pem-split, secretKey: certificate}`, "objects[0].secretKey", []string{"pem-split"}},
		{"pem with encoding", `- {objectName: t, secretPath: pki/issue/web, method: PUT, objectFormat: pem-bundle, encoding: hex}`, "objects[0].encoding", []string{"PEM is text"}},
		{"unknown object format", `- {objectName: t, secretPath: a/b, objectFormat: pem}`, "objects[0].objectFormat", []string{"pem-split", "pem-bundle"}},
		{"file where an expansion writes", "- {objectName: a, secretPath: a/b, expand: keys}\n- {objectName: a, secretPath: a/c}", "objects[1].objectName", []string{"unique"}},
		{"expansion under a file", "- {objectName: a, secretPath: a/b}\n- {objectName: a/x, secretPath: a/c, secretKey: '*'}", "objects[1].objectName", []string{`needs "a" to be a directory`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseEdited(t, map[string]string{"objects": tc.objects}, Defaults{})
			wantError(t, err, tc.param, tc.msg...)
		})
	}
	// The class-wide objectFormat keeps to json and data.
	_, err := parseEdited(t, map[string]string{"objectFormat": "pem-split"}, Defaults{})
	wantError(t, err, "objectFormat", `"data"`)
}

func TestBeyondNames(t *testing.T) {
	for name, objects := range map[string]string{
		"write: false frees its name":          "- {objectName: db, secretPath: a/b, write: false}\n- {objectName: db/password, secretPath: a/b, secretKey: p}",
		"static file inside an expansion":      "- {objectName: db, secretPath: a/b, expand: keys}\n- {objectName: db/extra, secretPath: a/c, secretKey: x}",
		"expansion beside a static file below": "- {objectName: tls/ca.pem, secretPath: a/c, secretKey: x}\n- {objectName: tls, secretPath: pki/issue/web, method: PUT, objectFormat: pem-split}",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := parseEdited(t, map[string]string{"objects": objects}, Defaults{}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestCheckFileName(t *testing.T) {
	for name, want := range map[string]string{
		"password": "", "tls.crt": "", ".env": "", "a b": "",
		"":                       "an empty name",
		"..":                     `".." is not a safe file name: it is "." or ".."`,
		"a/b":                    `"a/b" is not a safe file name: it contains "/"`,
		`a\b`:                    `contains`,
		"a\x00":                  `NUL`,
		strings.Repeat("x", 256): "longer than 255 bytes",
	} {
		got := CheckFileName(name)
		if (want == "") != (got == "") || !strings.Contains(got, want) {
			t.Errorf("CheckFileName(%.20q) = %q, want %q", name, got, want)
		}
	}
}
