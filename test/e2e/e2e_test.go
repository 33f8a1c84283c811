package e2e

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"
)

// The seed scenario, as a user meets it: pod testapp mounts secret/testapp.
func TestInlineVolumeSeedScenario(t *testing.T) {
	shared(t)
	sc := bed.vault.Scenario()
	applyClass(t, sc.Namespace, "testapp", map[string]string{
		"roleName": sc.Role,
		"objects": `
- objectName: username
  secretPath: secret/data/testapp
  secretKey: username
- objectName: db/password
  secretPath: secret/data/testapp
  secretKey: password
  filePermission: "0600"
- objectName: testapp.json
  secretPath: secret/data/testapp
  objectFormat: data
`,
	})
	pod := podFor(t, sc.Namespace, sc.ServiceAccount, "testapp")
	v := mustPublish(t, pod, "testapp")

	got := files(t, v)
	if got["username"] != sc.SecretData["username"] || got["db/password"] != sc.SecretData["password"] {
		t.Errorf("pod sees %v, want the scenario's secret", got)
	}
	if !strings.Contains(got["testapp.json"], `"password":"`+sc.SecretData["password"]+`"`) {
		t.Errorf("testapp.json = %s", got["testapp.json"])
	}
	modes, err := v.Modes()
	if err != nil {
		t.Fatal(err)
	}
	if modes["username"].Perm() != 0o644 || modes["db/password"].Perm() != 0o600 {
		t.Errorf("modes = %v, want username 0644 and db/password 0600", modes)
	}
	versions := objectVersions(t, pod, "testapp")
	if len(versions) != 3 || versions["username"] == "" {
		t.Errorf("SecretProviderClassPodStatus versions = %v, want three non-empty", versions)
	}
}

// A pod whose service account the role does not bind gets PermissionDenied
// from Vault's real TokenReview check, and no files.
func TestWrongServiceAccountDenied(t *testing.T) {
	shared(t)
	sc := bed.vault.Scenario()
	applyClass(t, sc.Namespace, "testapp-denied", map[string]string{
		"roleName": sc.Role,
		"objects":  "- {objectName: username, secretPath: secret/data/testapp, secretKey: username}",
	})
	pod := podFor(t, sc.Namespace, "intruder", "testapp-denied")
	v, err := publish(t, pod, "testapp-denied", "")
	wantMountError(t, v, err, "PermissionDenied", "login")
}

// A SecretProviderClass in another namespace is invisible to the pod.
func TestClassOfAnotherNamespace(t *testing.T) {
	shared(t)
	sc := bed.vault.Scenario()
	applyClass(t, "elsewhere", "foreign", map[string]string{
		"roleName": sc.Role,
		"objects":  "- {objectName: username, secretPath: secret/data/testapp, secretKey: username}",
	})
	pod := podFor(t, sc.Namespace, sc.ServiceAccount, "foreign")
	v, err := publish(t, pod, "foreign", "")
	if err == nil {
		t.Fatalf("the pod mounted another namespace's class: %v", files(t, v))
	}
	if !strings.Contains(err.Error(), "not found") {
		t.Errorf("error %q, want the driver's not found", err)
	}
}

// Several SecretProviderClasses in one pod: each volume gets its own files.
func TestSeveralClassesInOnePod(t *testing.T) {
	shared(t)
	sc := bed.vault.Scenario()
	applyClass(t, sc.Namespace, "part-user", map[string]string{"roleName": sc.Role, "objects": "- {objectName: user, secretPath: secret/data/testapp, secretKey: username}"})
	applyClass(t, sc.Namespace, "part-pass", map[string]string{"roleName": sc.Role, "objects": "- {objectName: pass, secretPath: secret/data/testapp, secretKey: password}"})
	pod := newPod(t, sc.Namespace, sc.ServiceAccount, map[string]string{"user-vol": "part-user", "pass-vol": "part-pass"})
	a, err := publish(t, pod, "part-user", "user-vol")
	if err != nil {
		t.Fatal(err)
	}
	b, err := publish(t, pod, "part-pass", "pass-vol")
	if err != nil {
		t.Fatal(err)
	}
	if got := files(t, a); len(got) != 1 || got["user"] != sc.SecretData["username"] {
		t.Errorf("first volume: %v", got)
	}
	if got := files(t, b); len(got) != 1 || got["pass"] != sc.SecretData["password"] {
		t.Errorf("second volume: %v", got)
	}
}

// Failures name the object, carry the right code and leave no files.
func TestMountFailures(t *testing.T) {
	shared(t)
	sc := bed.vault.Scenario()
	for _, tc := range []struct {
		name, objects, code string
		extra               map[string]string
		words               []string
	}{
		{"missing key", "- {objectName: k, secretPath: secret/data/testapp, secretKey: nope}", "NotFound", nil, []string{`"k"`, `"nope"`}},
		{"missing path", "- {objectName: ok, secretPath: secret/data/testapp, secretKey: username}\n- {objectName: p, secretPath: secret/data/testapp/none, secretKey: x}", "NotFound", nil, []string{`"p"`}},
		{"bad parameter", "- {objectName: ../escape, secretPath: secret/data/testapp}", "InvalidArgument", nil, []string{"objects[0].objectName"}},
		{"vault down", "- {objectName: u, secretPath: secret/data/testapp, secretKey: username}", "Unavailable", map[string]string{"vaultAddress": "http://127.0.0.1:1"}, []string{"connection refused"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			params := map[string]string{"roleName": sc.Role, "objects": tc.objects}
			for k, v := range tc.extra {
				params[k] = v
			}
			class := "fail-" + strings.ReplaceAll(tc.name, " ", "-")
			applyClass(t, sc.Namespace, class, params)
			pod := podFor(t, sc.Namespace, sc.ServiceAccount, class)
			v, err := publish(t, pod, class, "")
			wantMountError(t, v, err, tc.code, tc.words...)
		})
	}
}

// The KV shapes users rely on, through the driver: KV v2 ?version=, the
// whole secret as the peer writes it, base64, nested names.
func TestKVShapes(t *testing.T) {
	shared(t)
	sc := bed.vault.Scenario()
	kv := bed.vault.Client.KVv2("secret")
	for _, v := range []string{"first", "second"} {
		if _, err := kv.Put(t.Context(), "testapp/shapes", map[string]any{"v": v, "blob": base64.StdEncoding.EncodeToString([]byte{0, 1, 2, 255})}); err != nil {
			t.Fatal(err)
		}
	}
	applyClass(t, sc.Namespace, "shapes", map[string]string{"roleName": sc.Role, "objects": `
- {objectName: now, secretPath: secret/data/testapp/shapes, secretKey: v}
- {objectName: old/v1, secretPath: "secret/data/testapp/shapes?version=1", secretKey: v}
- {objectName: blob.bin, secretPath: secret/data/testapp/shapes, secretKey: blob, encoding: base64}
- {objectName: whole.json, secretPath: secret/data/testapp/shapes}
`})
	pod := podFor(t, sc.Namespace, sc.ServiceAccount, "shapes")
	got := files(t, mustPublish(t, pod, "shapes"))
	if got["now"] != "second" || got["old/v1"] != "first" || got["blob.bin"] != "\x00\x01\x02\xff" {
		t.Errorf("files = %q", got)
	}
	if !strings.Contains(got["whole.json"], `"request_id"`) || !strings.Contains(got["whole.json"], `"v":"second"`) {
		t.Errorf("whole.json = %s, want Vault's whole response", got["whole.json"])
	}
}

// Rotation: the driver re-mounts every poll; a change in Vault reaches the
// files and moves the object version; without a change nothing moves.
func TestRotation(t *testing.T) {
	shared(t)
	sc := bed.vault.Scenario()
	kv := bed.vault.Client.KVv2("secret")
	if _, err := kv.Put(t.Context(), "testapp/rotating", map[string]any{"v": "before"}); err != nil {
		t.Fatal(err)
	}
	applyClass(t, sc.Namespace, "rotating", map[string]string{"roleName": sc.Role, "objects": "- {objectName: v, secretPath: secret/data/testapp/rotating, secretKey: v}\n- {objectName: user, secretPath: secret/data/testapp, secretKey: username}"})
	pod := podFor(t, sc.Namespace, sc.ServiceAccount, "rotating")
	vol := mustPublish(t, pod, "rotating")
	before := objectVersions(t, pod, "rotating")

	// Several polls without a change: versions stay.
	time.Sleep(3 * rotationPoll)
	if now := objectVersions(t, pod, "rotating"); now["v"] != before["v"] || now["user"] != before["user"] {
		t.Errorf("versions moved without a change: %v -> %v", before, now)
	}

	if _, err := kv.Put(t.Context(), "testapp/rotating", map[string]any{"v": "after"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*rotationPoll, "rotated value in the pod", func() (bool, string) {
		f := files(t, vol)
		return f["v"] == "after", f["v"]
	})
	// The driver writes the files before it records the new versions in the
	// SecretProviderClassPodStatus, so the version moves a moment later.
	var after map[string]string
	eventually(t, 10*rotationPoll, "version of v moved", func() (bool, string) {
		after = objectVersions(t, pod, "rotating")
		return after["v"] != before["v"], after["v"]
	})
	if after["user"] != before["user"] {
		t.Errorf("version of the unchanged user moved: %s -> %s", before["user"], after["user"])
	}
}
