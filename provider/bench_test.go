package provider

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/okevault/vault-csi-provider/internal/config"
	"github.com/okevault/vault-csi-provider/internal/objectversion"
	"github.com/okevault/vault-csi-provider/internal/vault"
)

// The mount's hot path without I/O: parse the attributes of a 5-object
// class, build each file from its response, and version it.
// go test -run '^$' -bench . -benchmem ./provider/
func BenchmarkMountHotPath(b *testing.B) {
	var objects strings.Builder
	for i := range 5 {
		fmt.Fprintf(&objects, "- {objectName: key-%d, secretPath: secret/data/app, secretKey: k%d}\n", i, i)
	}
	attrs, err := json.Marshal(map[string]string{
		"roleName": "app", "objects": objects.String(), "secretProviderClass": "app",
		"csi.storage.k8s.io/pod.name": "p", "csi.storage.k8s.io/pod.namespace": "default",
		"csi.storage.k8s.io/pod.uid": "u", "csi.storage.k8s.io/serviceAccount.name": "app",
		"csi.storage.k8s.io/serviceAccount.tokens": `{"vault":{"token":"a.b.c","expirationTimestamp":"2030-01-01T00:00:00Z"}}`,
	})
	if err != nil {
		b.Fatal(err)
	}
	data := map[string]any{}
	for i := range 5 {
		data[fmt.Sprintf("k%d", i)] = strings.Repeat("x", 200)
	}
	body, _ := json.Marshal(map[string]any{"data": map[string]any{"data": data, "metadata": map[string]any{"version": 1}}})
	resp := &vault.Response{Body: body, Data: data, KVVersion: 2}
	key := bytes.Repeat([]byte{1}, 32)

	b.ReportAllocs()
	for b.Loop() {
		m, err := config.Parse(string(attrs), "/t", "420", config.Defaults{})
		if err != nil {
			b.Fatal(err)
		}
		for _, o := range m.Objects {
			c, err := content(o, resp)
			if err != nil {
				b.Fatal(err)
			}
			spec, _ := json.Marshal(o)
			_ = objectversion.Version(key, spec, c)
		}
	}
}
