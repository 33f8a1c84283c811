package chart_test

import (
	"encoding/json"
	"testing"

	secretsstorev1 "sigs.k8s.io/secrets-store-csi-driver/apis/v1"

	"github.com/okevault/vault-csi-provider/internal/config"
)

// TestExampleClassesParse runs every example SecretProviderClass through the
// provider's own parser, as a mount would: the apiserver's dry run checks
// the CRD's schema, not the objects YAML inside the parameters.
func TestExampleClassesParse(t *testing.T) {
	var n int
	for _, f := range exampleFiles(t) {
		if f.values {
			continue
		}
		for _, u := range f.objects(t) {
			if u.GetKind() != "SecretProviderClass" {
				continue
			}
			var spc secretsstorev1.SecretProviderClass
			typed(t, u, &spc)
			attrs := map[string]string{
				"csi.storage.k8s.io/pod.name":      "example",
				"csi.storage.k8s.io/pod.namespace": u.GetNamespace(),
				// kubelet sends these with every mount; the provider requires them.
				"csi.storage.k8s.io/pod.uid":             "example-uid",
				"csi.storage.k8s.io/serviceAccount.name": "example",
			}
			for k, v := range spc.Spec.Parameters {
				attrs[k] = v
			}
			b, err := json.Marshal(attrs)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := config.Parse(string(b), "/mnt", "420", config.Defaults{}); err != nil {
				t.Errorf("%s: SecretProviderClass %s: %v", f.rel, u.GetName(), err)
			}
			n++
		}
	}
	if n == 0 {
		t.Fatal("no SecretProviderClass in examples/")
	}
}
