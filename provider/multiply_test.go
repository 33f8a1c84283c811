package provider

import (
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/okevault/vault-csi-provider/internal/budget"
	"github.com/okevault/vault-csi-provider/internal/config"
	"github.com/okevault/vault-csi-provider/internal/vault"
)

// wideMount is objects objects that each expand every key of one secret of
// keys keys with empty values, and that secret's one response: the files
// multiply (objects × keys) while the response's bytes stay a few KiB.
func wideMount(t *testing.T, objects, keys int) (*config.Mount, map[string]*vault.Response) {
	t.Helper()
	var list strings.Builder
	for i := range objects {
		fmt.Fprintf(&list, "- {objectName: e%d, secretPath: secret/data/wide, expand: keys, maxObjects: 1000, secretArgs: {pad: %q}}\n", i, strings.Repeat("p", 512))
	}
	attrs, err := json.Marshal(map[string]string{"roleName": "r", "csi.storage.k8s.io/pod.name": "p", "csi.storage.k8s.io/pod.namespace": "n", "csi.storage.k8s.io/serviceAccount.name": "sa", "csi.storage.k8s.io/pod.uid": "u", "objects": list.String()})
	if err != nil {
		t.Fatal(err)
	}
	m, err := config.Parse(string(attrs), "/mnt", "420", config.Defaults{})
	if err != nil {
		t.Fatal(err)
	}
	data := make(map[string]any, keys)
	for k := range keys {
		data[fmt.Sprintf("k%04d", k)] = ""
	}
	r := &vault.Response{Data: data, KVVersion: 2, Metadata: map[string]any{"version": json.Number("1")}}
	return m, map[string]*vault.Response{m.Objects[0].RequestKey(): r}
}

// TestExpandChargesFiles: 200 objects expanding one secret of 1,000 empty
// keys make 200,000 files whose contents are empty, so charging contents
// alone let them all be made (hundreds of MiB of files, paths, versions
// of secretArgs re-encoded per file). Each file and what its version
// hashes is charged as it is made: the mount fails with the budget's error
// at the same object every time, having allocated a bounded amount.
func TestExpandChargesFiles(t *testing.T) {
	const limit = 16 << 20
	m, responses := wideMount(t, 200, 1000)
	var errs []string
	for range 2 {
		pool := budget.NewPool(1 << 40)
		mb := pool.Mount("n", limit)
		var (
			fs            []file
			err           error
			before, after runtime.MemStats
		)
		runtime.ReadMemStats(&before)
		fs, err = outputs(t.Context(), m.Objects, responses, mb)
		runtime.ReadMemStats(&after)
		if !errors.Is(err, budget.ErrExhausted) {
			t.Fatalf("outputs made %d files (err %v), want the mount's budget exhausted", len(fs), err)
		}
		if n := after.TotalAlloc - before.TotalAlloc; n > 4*limit {
			t.Errorf("allocated %d MiB before refusing, over 4 x the mount's %d MiB", n>>20, limit>>20)
		}
		mb.Close()
		errs = append(errs, err.Error())
	}
	if errs[0] != errs[1] {
		t.Errorf("refused at different points:\n%s\n%s", errs[0], errs[1])
	}
	t.Log(errs[0])
}
