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
