package chart_test

import (
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"helm.sh/helm/v3/pkg/chartutil"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	secretsstorev1 "sigs.k8s.io/secrets-store-csi-driver/apis/v1"
)

var readValuesFile = chartutil.ReadValuesFile

// TestExamples checks that the examples fit together without an apiserver
// (TestAPIServer applies them to a real one): every class a pod mounts
// exists, every synced Secret a pod reads comes from a class the same pod
// mounts, and the values files say what the README promises.
func TestExamples(t *testing.T) {
	files := exampleFiles(t)
	var names []string
	for _, f := range files {
		names = append(names, f.rel)
	}
	for _, want := range []string{
		"pod.yaml", "secretproviderclass.yaml", "deployment.yaml",
		"secretproviderclass-sync.yaml", "deployment-sync.yaml",
		"csi-driver-values.yaml", "vault-csi-provider-values.yaml",
	} {
		if !slices.Contains(names, want) {
			t.Errorf("examples/%s is missing (have %q)", want, names)
		}
	}

	// Every class, by namespace/name, and the pod templates that mount them.
	classes := map[string]secretsstorev1.SecretProviderClass{}
	type podOf struct {
		file, name string
		spec       corev1.PodSpec
		namespace  string
	}
	var pods []podOf
	for _, f := range files {
		if f.values {
			continue
		}
		for _, u := range f.objects(t) {
			key := u.GetNamespace() + "/" + u.GetName()
			switch u.GetKind() {
			case "SecretProviderClass":
				var spc secretsstorev1.SecretProviderClass
				typed(t, u, &spc)
				if spc.Spec.Provider != "vault" {
					t.Errorf("%s: SecretProviderClass %s: provider %q, want vault", f.rel, key, spc.Spec.Provider)
				}
				if spc.Spec.Parameters["roleName"] == "" || spc.Spec.Parameters["objects"] == "" {
					t.Errorf("%s: SecretProviderClass %s lacks roleName or objects", f.rel, key)
				}
				classes[key] = spc
			case "Deployment":
				var d appsv1.Deployment
				typed(t, u, &d)
				pods = append(pods, podOf{f.rel, key, d.Spec.Template.Spec, u.GetNamespace()})
			case "Pod":
				var p corev1.Pod
				typed(t, u, &p)
				pods = append(pods, podOf{f.rel, key, p.Spec, u.GetNamespace()})
			}
		}
	}
	if len(pods) == 0 || len(classes) == 0 {
		t.Fatalf("found %d pods and %d classes in examples/", len(pods), len(classes))
	}

	for _, p := range pods {
		if p.spec.ServiceAccountName != "testapp" || p.namespace != "default" {
			t.Errorf("%s: %s runs as %s/%s, want the seed's default/testapp", p.file, p.name, p.namespace, p.spec.ServiceAccountName)
		}
		// Secrets a mounted class syncs, as name -> keys.
		synced := map[string][]string{}
		for _, v := range p.spec.Volumes {
			if v.CSI == nil {
				continue
			}
			if v.CSI.Driver != "secrets-store.csi.k8s.io" {
				t.Errorf("%s: volume %s: driver %q", p.file, v.Name, v.CSI.Driver)
			}
			cls := v.CSI.VolumeAttributes["secretProviderClass"]
			spc, ok := classes[p.namespace+"/"+cls]
			if !ok {
				t.Errorf("%s: volume %s mounts SecretProviderClass %s/%s, which no example defines", p.file, v.Name, p.namespace, cls)
				continue
			}
			if !slices.ContainsFunc(p.spec.Containers, func(c corev1.Container) bool {
				return slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == v.Name })
			}) {
				t.Errorf("%s: volume %s is not mounted by any container", p.file, v.Name)
			}
			for _, so := range spc.Spec.SecretObjects {
				for _, d := range so.Data {
					synced[so.SecretName] = append(synced[so.SecretName], d.Key)
				}
			}
		}
		for _, c := range p.spec.Containers {
			for _, e := range c.Env {
				if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
					continue
				}
				ref := e.ValueFrom.SecretKeyRef
				if !slices.Contains(synced[ref.Name], ref.Key) {
					t.Errorf("%s: env %s reads Secret %s key %s, which no class mounted by this pod syncs (synced: %v); the driver syncs only for mounted classes",
						p.file, e.Name, ref.Name, ref.Key, synced)
				}
			}
		}
	}

	// The sync example: Secret testapp-credentials, Opaque, username/password.
	sync, ok := classes["default/testapp-sync"]
	if !ok {
		t.Fatal("no SecretProviderClass default/testapp-sync")
	}
	want := []*secretsstorev1.SecretObject{{
		SecretName: "testapp-credentials",
		Type:       "Opaque",
		Labels:     map[string]string{"app": "testapp-sync"},
		Data: []*secretsstorev1.SecretObjectData{
			{ObjectName: "username", Key: "username"},
			{ObjectName: "password", Key: "password"},
		},
	}}
	if diff := cmp.Diff(want, sync.Spec.SecretObjects); diff != "" {
		t.Errorf("testapp-sync secretObjects (-want +got):\n%s", diff)
	}

	t.Run("csi-driver-values.yaml", func(t *testing.T) {
		vals, err := readValuesFile(moduleDir(t, "examples", "csi-driver-values.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]any{
			"tokenRequests":        []any{map[string]any{"audience": "vault"}},
			"syncSecret":           map[string]any{"enabled": true},
			"enableSecretRotation": true,
			"rotationPollInterval": "2m",
		}
		if diff := cmp.Diff(want, map[string]any(vals)); diff != "" {
			t.Errorf("values (-want +got):\n%s", diff)
		}
	})

	t.Run("vault-csi-provider-values.yaml", func(t *testing.T) {
		vals, err := readValuesFile(moduleDir(t, "examples", "vault-csi-provider-values.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		objs := decodeObjects(t, []byte(mustRender(t.Context(), t, releaseNamespace, vals).Manifest))
		checkInvariants(t, objs, false)
		c := providerContainer(t, objs)
		for _, arg := range []string{"-vault-addr=https://vault.vault.svc:8200", "-vault-tls-ca-cert=/etc/vault-csi-provider/tls/ca.crt"} {
			if !slices.Contains(c.Args, arg) {
				t.Errorf("args %q lack %s", c.Args, arg)
			}
		}
		vol, _ := caVolume(t, objs)
		if vol.Secret == nil || vol.Secret.SecretName != "vault-tls" {
			t.Errorf("CA volume %+v, want the Secret vault-tls (where the operator copies Vault's CA)", vol.VolumeSource)
		}
	})
}
