package provider

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/vault/api"

	"github.com/okevault/vault-csi-provider/internal/config"
	"github.com/okevault/vault-csi-provider/internal/vault"
)

func TestContent(t *testing.T) {
	body := []byte(`{"request_id":"r","data":{"data":{"password":"p@ss","port":5432,"nested":{"a":[1,2]},"b64":"aGVsbG8=","hx":"68656c6c6f","bad":"%%%"},"metadata":{"version":3}}}`)
	r := &vault.Response{Body: body}
	var env struct {
		Data map[string]any `json:"data"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber() // as the vault package decodes
	if err := dec.Decode(&env); err != nil {
		t.Fatal(err)
	}
	r.Data = env.Data["data"].(map[string]any)

	for _, tc := range []struct {
		name    string
		obj     config.Object
		want    string
		wantErr error
	}{
		{"string key", config.Object{Key: "password"}, "p@ss", nil},
		{"number key as JSON", config.Object{Key: "port"}, "5432", nil},
		{"map key as JSON", config.Object{Key: "nested"}, `{"a":[1,2]}`, nil},
		{"whole response like the peer", config.Object{}, `{"request_id":"r","lease_id":"","lease_duration":0,"renewable":false,"data":{"data":{"b64":"aGVsbG8=","bad":"%%%","hx":"68656c6c6f","nested":{"a":[1,2]},"password":"p@ss","port":5432},"metadata":{"version":3}},"warnings":null}`, nil},
		{"data only", config.Object{Format: config.FormatData}, `{"b64":"aGVsbG8=","bad":"%%%","hx":"68656c6c6f","nested":{"a":[1,2]},"password":"p@ss","port":5432}`, nil},
		{"base64", config.Object{Key: "b64", Encoding: config.EncodingBase64}, "hello", nil},
		{"hex", config.Object{Key: "hx", Encoding: config.EncodingHex}, "hello", nil},
		{"utf-8 keeps the text", config.Object{Key: "b64", Encoding: config.EncodingUTF8}, "aGVsbG8=", nil},
		{"missing key", config.Object{Key: "nope"}, "", errMissingKey},
		{"not base64", config.Object{Key: "bad", Encoding: config.EncodingBase64}, "", errBadContent},
		{"not hex", config.Object{Key: "bad", Encoding: config.EncodingHex}, "", errBadContent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := content(tc.obj, r)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if err == nil && string(got) != tc.want {
				t.Errorf("content = %s, want %s", got, tc.want)
			}
			if err != nil && (strings.Contains(err.Error(), "p@ss") || strings.Contains(err.Error(), "%%%")) {
				t.Errorf("error shows a secret value: %v", err)
			}
		})
	}
}

// TestWholeSecretIsThePeers holds the file of an object without secretKey
// to what the peer writes, json.Marshal of vault/api's Secret: checked
// against that type's fields and tags, not a list of fields seen in one
// response, so a field the type gains is covered too.
func TestWholeSecretIsThePeers(t *testing.T) {
	typ := reflect.TypeFor[api.Secret]()
	var keys []string              // the type's JSON keys, in field order
	omitEmpty := map[string]bool{} // keys left out when empty
	for f := range typ.Fields() {
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		keys = append(keys, name)
		omitEmpty[name] = strings.Contains(opts, "omitempty")
	}
	if len(keys) < 9 || !omitEmpty["auth"] || !omitEmpty["wrap_info"] {
		t.Fatalf("api.Secret's keys %q (omitempty %v): not the type this test knows", keys, omitEmpty)
	}

	for _, tc := range []struct {
		name string
		body string
		want string // "" when checked against the type only
	}{
		{
			// What Vault answers a KV v2 read, byte for byte.
			name: "kv2 read",
			body: `{"request_id":"9e6a","lease_id":"","renewable":false,"lease_duration":0,"data":{"data":{"username":"app","password":"<p&ss>"},"metadata":{"created_time":"2026-11-29T10:00:00Z","custom_metadata":null,"deletion_time":"","destroyed":false,"version":3}},"wrap_info":null,"warnings":null,"auth":null,"mount_type":"kv"}` + "\n",
			want: `{"request_id":"9e6a","lease_id":"","lease_duration":0,"renewable":false,"data":{"data":{"password":"\u003cp\u0026ss\u003e","username":"app"},"metadata":{"created_time":"2026-11-29T10:00:00Z","custom_metadata":null,"deletion_time":"","destroyed":false,"version":3}},"warnings":null,"mount_type":"kv"}`,
		},
		{
			name: "every field set, one the type lacks",
			body: `{"mount_type":"database","auth":{"client_token":"t","accessor":"a","policies":["p"],"lease_duration":60,"renewable":true},"wrap_info":{"token":"w","ttl":30},"warnings":["w1"],"data":{"username":"u","password":"p"},"renewable":true,"lease_duration":3600,"lease_id":"database/creds/app/x","request_id":"r","not_in_the_type":1}`,
		},
		{
			name: "no envelope",
			body: `{"keys":["a","b"]}`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := content(config.Object{Format: config.FormatEnvelope}, &vault.Response{Body: []byte(tc.body)})
			if err != nil {
				t.Fatal(err)
			}
			if tc.want != "" && string(got) != tc.want {
				t.Errorf("file\n%s\nwant the peer's\n%s", got, tc.want)
			}
			var in map[string]json.RawMessage
			if err := json.Unmarshal([]byte(tc.body), &in); err != nil {
				t.Fatal(err)
			}
			gotKeys := topLevelKeys(t, got)
			var wantKeys []string
			for _, k := range keys {
				v, present := in[k]
				empty := !present || string(v) == "null" || string(v) == `""` || string(v) == "[]" || string(v) == "{}"
				if _, isEnvelope := in["data"]; !isEnvelope && k == "data" {
					empty = false // the peer puts a body without one under data
				}
				if !omitEmpty[k] || !empty {
					wantKeys = append(wantKeys, k)
				}
			}
			if !slices.Equal(gotKeys, wantKeys) {
				t.Errorf("keys %q, want api.Secret's %q (its field order; omitempty ones only when set)", gotKeys, wantKeys)
			}
		})
	}
}

// topLevelKeys are the keys of the JSON object b, in the order written.
func topLevelKeys(t *testing.T, b []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	if _, err := dec.Token(); err != nil { // {
		t.Fatal(err)
	}
	var keys []string
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}

// outputs over parsed objects and responses as the vault package returns
// them: which files, in which order, with which version inputs.
func TestOutputs(t *testing.T) {
	m, err := config.Parse(`{"roleName":"r","csi.storage.k8s.io/pod.name":"p","csi.storage.k8s.io/pod.namespace":"n",`+
		`"csi.storage.k8s.io/pod.uid":"u","csi.storage.k8s.io/serviceAccount.name":"s","objects":"`+
		`- {objectName: db, secretPath: secret/data/db, write: false}\n`+
		`- {objectName: t, template: '{{ (object \"db\").user }}'}\n`+
		`- {objectName: k, secretPath: secret/data/db, secretKey: '*', encoding: base64}\n`+
		`- {objectName: tree, secretPath: secret/metadata/d, expand: tree}\n"}`, "/mnt", "420", config.Defaults{})
	if err != nil {
		t.Fatal(err)
	}
	kv2 := func(data map[string]any, version string) *vault.Response {
		return &vault.Response{Data: data, KVVersion: 2, Metadata: map[string]any{"version": json.Number(version)}}
	}
	db := m.Objects[0]
	responses := map[string]*vault.Response{
		db.RequestKey():           kv2(map[string]any{"user": "dXNlcg==", "n": "MQ=="}, "4"),
		m.Objects[3].RequestKey(): {Data: map[string]any{"keys": []any{"b", "a", "sub/", "gone"}}},
	}
	more, err := treeReads(m.Objects, responses)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, r := range more {
		paths = append(paths, r.Path)
		if !r.Optional || r.Name != "tree" {
			t.Errorf("tree read %+v: want optional, named after its object", r)
		}
		if r.Path != "secret/data/d/gone" { // deleted since the listing: no response
			responses[r.RequestKey()] = kv2(map[string]any{"x": r.Path}, "1")
		}
	}
	if want := "secret/data/d/a secret/data/d/b secret/data/d/gone"; strings.Join(paths, " ") != want {
		t.Errorf("tree reads %q, want %q (sorted, sub-directories skipped)", paths, want)
	}

	fs, err := outputs(t.Context(), m.Objects, responses, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range fs {
		got = append(got, f.path+"="+string(f.contents)+"@"+f.kv2)
	}
	want := []string{"t=dXNlcg==@", "k/n=1@4", "k/user=user@4", "tree/a/x=secret/data/d/a@1", "tree/b/x=secret/data/d/b@1"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("files\n%q\nwant\n%q", got, want)
	}

	// A listing with more secrets than maxObjects fails before any read.
	m.Objects[3].MaxObjects = 2
	if _, err := treeReads(m.Objects, responses); !errors.Is(err, errUnfit) || !strings.Contains(err.Error(), "3 secrets, more than maxObjects (2)") {
		t.Errorf("treeReads over maxObjects: %v", err)
	}
}
