package provider

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

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
		{"whole response like the peer", config.Object{}, string(body), nil},
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

// outputs over parsed objects and responses as the vault package returns
// them: which files, in which order, with which version inputs.
func TestOutputs(t *testing.T) {
	m, err := config.Parse(`{"roleName":"r","csi.storage.k8s.io/pod.name":"p","csi.storage.k8s.io/pod.namespace":"n","objects":"`+
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
