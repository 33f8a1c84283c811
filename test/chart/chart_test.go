// Tests of the Helm chart charts/vault-csi-provider: helm lint with the real
// helm binary, rendering through helm's library against golden files, the
// values schema, and (in kube_test.go) every rendered object and example
// applied to a real kube-apiserver.
package chart_test

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/strvals"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/okevault/vault-csi-provider/test/testbed"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.yaml from the chart")

// renderCase is one set of values: its golden file is testdata/<name>.golden.yaml.
type renderCase struct {
	name   string
	values string
	// check asserts what this case is about, beyond the golden file (which
	// -update would accept blindly).
	check func(t *testing.T, objs objects)
	// hostNetwork: the case asks for the node's network (vault-helm's
	// csi.hostNetwork); no other case may get it.
	hostNetwork bool
}

var renderCases = []renderCase{
	{
		name: "default",
		check: func(t *testing.T, objs objects) {
			if diff := cmp.Diff([]string{
				"ServiceAccount/vault-csi-provider", "ClusterRole/vault-csi-provider-pods",
				"ClusterRoleBinding/vault-csi-provider-pods", "Role/vault-csi-provider",
				"RoleBinding/vault-csi-provider", "DaemonSet/vault-csi-provider",
			}, objs.names()); diff != "" {
				t.Errorf("objects (-want +got):\n%s", diff)
			}
			c := providerContainer(t, objs)
			wantArgs := []string{
				"-endpoint=/var/run/secrets-store-csi-providers/vault.sock",
				"-health-addr=:8080",
				"-log-level=info",
				"-log-format=json",
				"-hmac-secret-name=" + hmacSecretName,
				"-allowed-tls-directories=/etc/vault-csi-provider/tls",
				"-revoke-on-pod-delete",
			}
			if diff := cmp.Diff(wantArgs, c.Args); diff != "" {
				t.Errorf("args (-want +got):\n%s", diff)
			}
			var ds appsv1.DaemonSet
			typed(t, objs.get(t, "DaemonSet", releaseName), &ds)
			pod := ds.Spec.Template.Spec
			if pod.ServiceAccountName != releaseName {
				t.Errorf("serviceAccountName = %q", pod.ServiceAccountName)
			}
			if diff := cmp.Diff(map[string]string{"kubernetes.io/os": "linux"}, pod.NodeSelector); diff != "" {
				t.Errorf("nodeSelector (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]corev1.Toleration{{Operator: corev1.TolerationOpExists}}, pod.Tolerations); diff != "" {
				t.Errorf("tolerations (-want +got):\n%s", diff)
			}
			var rb rbacv1.RoleBinding
			typed(t, objs.get(t, "RoleBinding", releaseName), &rb)
			wantSubjects := []rbacv1.Subject{{Kind: "ServiceAccount", Name: releaseName, Namespace: releaseNamespace}}
			if diff := cmp.Diff(wantSubjects, rb.Subjects); diff != "" {
				t.Errorf("RoleBinding subjects (-want +got):\n%s", diff)
			}
		},
	},
	{
		name: "metrics-servicemonitor",
		values: `
metrics:
  enabled: true
  serviceMonitor:
    enabled: true
    selectors:
      release: prometheus
`,
		check: func(t *testing.T, objs objects) {
			c := providerContainer(t, objs)
			if !slices.Contains(c.Args, "-metrics-addr=:9090") {
				t.Errorf("args %q lack -metrics-addr=:9090", c.Args)
			}
			if !slices.Contains(c.Ports, corev1.ContainerPort{Name: "metrics", ContainerPort: 9090, Protocol: corev1.ProtocolTCP}) {
				t.Errorf("ports %+v lack metrics 9090", c.Ports)
			}
			var svc corev1.Service
			typed(t, objs.get(t, "Service", releaseName+"-metrics"), &svc)
			var ds appsv1.DaemonSet
			typed(t, objs.get(t, "DaemonSet", releaseName), &ds)
			if diff := cmp.Diff(ds.Spec.Selector.MatchLabels, svc.Spec.Selector); diff != "" {
				t.Errorf("Service selector differs from the DaemonSet's (-ds +svc):\n%s", diff)
			}
			if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 9090 || svc.Spec.Ports[0].TargetPort.String() != "metrics" {
				t.Errorf("Service ports = %+v", svc.Spec.Ports)
			}
			sm := objs.get(t, "ServiceMonitor", releaseName)
			if sm.GetAPIVersion() != "monitoring.coreos.com/v1" {
				t.Errorf("ServiceMonitor apiVersion = %s", sm.GetAPIVersion())
			}
			if sm.GetLabels()["release"] != "prometheus" {
				t.Errorf("ServiceMonitor labels %v lack the selectors", sm.GetLabels())
			}
			match, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
			for k, v := range match {
				if svc.Labels[k] != v {
					t.Errorf("ServiceMonitor selects %s=%s, the Service has %q", k, v, svc.Labels[k])
				}
			}
			eps, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
			if len(eps) != 1 || eps[0].(map[string]any)["port"] != "metrics" {
				t.Errorf("ServiceMonitor endpoints = %v", eps)
			}
		},
	},
	{
		name: "allowed-pod-attributes",
		// The pod watch off: get alone is what this value adds.
		values: "allowedPodAttributes: [objects, vaultNamespace]\nrevokeOnPodDelete: false\n",
		check: func(t *testing.T, objs objects) {
			if c := providerContainer(t, objs); !slices.Contains(c.Args, "-allowed-pod-attributes=objects,vaultNamespace") {
				t.Errorf("args %q lack -allowed-pod-attributes=objects,vaultNamespace", c.Args)
			}
			var cr rbacv1.ClusterRole
			typed(t, objs.get(t, "ClusterRole", releaseName+"-pods"), &cr)
			want := []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get"}}}
			if diff := cmp.Diff(want, cr.Rules); diff != "" {
				t.Errorf("ClusterRole rules (-want +got):\n%s", diff)
			}
		},
	},
	{
		name:   "allowed-vault-addresses",
		values: "allowedVaultAddresses: [\"https://vault-0.vault:8200\", \"https://vault-1.vault:8200\"]\n",
		check: func(t *testing.T, objs objects) {
			if c := providerContainer(t, objs); !slices.Contains(c.Args, "-allowed-vault-addresses=https://vault-0.vault:8200,https://vault-1.vault:8200") {
				t.Errorf("args %q lack -allowed-vault-addresses", c.Args)
			}
		},
	},
	{
		name:   "revoke-on-pod-delete",
		values: "revokeOnPodDelete: true\n",
		check: func(t *testing.T, objs objects) {
			c := providerContainer(t, objs)
			if !slices.Contains(c.Args, "-revoke-on-pod-delete") {
				t.Errorf("args %q lack -revoke-on-pod-delete", c.Args)
			}
			if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
				return e.Name == "NODE_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName"
			}) {
				t.Errorf("env %v lacks NODE_NAME from spec.nodeName", c.Env)
			}
			var cr rbacv1.ClusterRole
			typed(t, objs.get(t, "ClusterRole", releaseName+"-pods"), &cr)
			want := []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list", "watch"}}}
			if diff := cmp.Diff(want, cr.Rules); diff != "" {
				t.Errorf("ClusterRole rules (-want +got):\n%s", diff)
			}
			var crb rbacv1.ClusterRoleBinding
			typed(t, objs.get(t, "ClusterRoleBinding", releaseName+"-pods"), &crb)
			if crb.RoleRef.Name != cr.Name || len(crb.Subjects) != 1 || crb.Subjects[0].Name != releaseName {
				t.Errorf("ClusterRoleBinding %+v does not bind the provider to %s", crb, cr.Name)
			}
		},
	},
	{
		name:   "token-request-fallback",
		values: "tokenRequestFallback: true\n",
		check: func(t *testing.T, objs objects) {
			if c := providerContainer(t, objs); !slices.Contains(c.Args, "-token-request-fallback") {
				t.Errorf("args %q lack -token-request-fallback", c.Args)
			}
			var cr rbacv1.ClusterRole
			typed(t, objs.get(t, "ClusterRole", releaseName+"-token-request"), &cr)
			want := []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"serviceaccounts/token"}, Verbs: []string{"create"}}}
			if diff := cmp.Diff(want, cr.Rules); diff != "" {
				t.Errorf("ClusterRole rules (-want +got):\n%s", diff)
			}
			var crb rbacv1.ClusterRoleBinding
			typed(t, objs.get(t, "ClusterRoleBinding", releaseName+"-token-request"), &crb)
			wantSubjects := []rbacv1.Subject{{Kind: "ServiceAccount", Name: releaseName, Namespace: releaseNamespace}}
			if diff := cmp.Diff(wantSubjects, crb.Subjects); diff != "" {
				t.Errorf("ClusterRoleBinding subjects (-want +got):\n%s", diff)
			}
			if crb.RoleRef.Name != cr.Name || crb.RoleRef.Kind != "ClusterRole" {
				t.Errorf("ClusterRoleBinding roleRef = %+v", crb.RoleRef)
			}
		},
	},
	{
		name: "tls-ca-secret",
		values: `
vault:
  address: https://vault.vault.svc:8200
  authMountPath: kubernetes-oke
  namespace: team-a
  tls:
    caCert:
      secretName: vault-ca
    serverName: vault.vault.svc
`,
		check: func(t *testing.T, objs objects) {
			c := providerContainer(t, objs)
			want := []string{
				"-allowed-vault-addresses=https://vault.vault.svc:8200", // vault.address alone, by default
				"-allowed-tls-directories=/etc/vault-csi-provider/tls",
				"-revoke-on-pod-delete",
				"-vault-addr=https://vault.vault.svc:8200",
				"-vault-mount=kubernetes-oke",
				"-vault-namespace=team-a",
				"-vault-tls-ca-cert=/etc/vault-csi-provider/tls/ca.crt",
				"-vault-tls-server-name=vault.vault.svc",
			}
			// After the five of the default case.
			if diff := cmp.Diff(want, c.Args[5:]); diff != "" {
				t.Errorf("Vault args (-want +got):\n%s", diff)
			}
			vol, mount := caVolume(t, objs)
			if vol.Secret == nil || vol.Secret.SecretName != "vault-ca" || vol.ConfigMap != nil {
				t.Errorf("CA volume = %+v, want Secret vault-ca", vol.VolumeSource)
			}
			if !mount.ReadOnly || mount.MountPath != "/etc/vault-csi-provider/tls" {
				t.Errorf("CA mount = %+v, want read-only at /etc/vault-csi-provider/tls", mount)
			}
		},
	},
	{
		name: "tls-ca-configmap",
		values: `
vault:
  tls:
    caCert:
      configMapName: kube-root-ca.crt
`,
		check: func(t *testing.T, objs objects) {
			vol, mount := caVolume(t, objs)
			if vol.ConfigMap == nil || vol.ConfigMap.Name != "kube-root-ca.crt" || vol.Secret != nil {
				t.Errorf("CA volume = %+v, want ConfigMap kube-root-ca.crt", vol.VolumeSource)
			}
			if !mount.ReadOnly {
				t.Errorf("CA mount %+v is writable", mount)
			}
		},
	},
	{
		// The csi: section of a vault-helm values file, copied as it was:
		// vault-helm's own forms (strings rendered with tpl, pull secrets as
		// names, debug, hostNetwork, global) and its agent, which is ignored.
		name: "vault-helm-values",
		values: `
global:
  imagePullSecrets: [ocir-pull]
  externalVaultAddr: https://vault.example.com:8200
enabled: true
debug: true
logLevel: info
hostNetwork: true
imagePullSecrets:
  - name: ocir-pull
  - name: mirror
hmacSecretName: vault-csi-provider-hmac-key
pod:
  annotations: |
    release: {{ .Release.Name }}
  nodeSelector: |
    oci.oraclecloud.com/fault-domain: FAULT-DOMAIN-1
  tolerations: |
    - key: dedicated
      operator: Equal
      value: {{ .Release.Namespace }}
      effect: NoSchedule
  affinity: |
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms:
          - matchExpressions:
              - {key: kubernetes.io/arch, operator: In, values: [arm64]}
agent:
  enabled: true
  image:
    repository: hashicorp/vault
    tag: "1.21.4"
`,
		hostNetwork: true,
		check: func(t *testing.T, objs objects) {
			c := providerContainer(t, objs)
			for _, want := range []string{"-log-level=debug", "-vault-addr=https://vault.example.com:8200"} {
				if !slices.Contains(c.Args, want) {
					t.Errorf("args %q lack %s", c.Args, want)
				}
			}
			var ds appsv1.DaemonSet
			typed(t, objs.get(t, "DaemonSet", releaseName), &ds)
			pod := ds.Spec.Template.Spec
			if ru := ds.Spec.UpdateStrategy.RollingUpdate; ru == nil || ru.MaxSurge.String() != "0" || ru.MaxUnavailable.String() != "1" {
				t.Errorf("rollingUpdate %+v with hostNetwork: a surge provider could not bind the node's ports; want maxSurge 0, maxUnavailable 1", ru)
			}
			if pod.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
				t.Errorf("dnsPolicy %q with hostNetwork: cluster names would not resolve", pod.DNSPolicy)
			}
			if diff := cmp.Diff([]corev1.LocalObjectReference{{Name: "ocir-pull"}, {Name: "mirror"}}, pod.ImagePullSecrets); diff != "" {
				t.Errorf("imagePullSecrets (-want +got):\n%s", diff)
			}
			if got := ds.Spec.Template.Annotations["release"]; got != releaseName {
				t.Errorf("pod annotation release = %q, want the tpl-rendered %q", got, releaseName)
			}
			if diff := cmp.Diff(map[string]string{"oci.oraclecloud.com/fault-domain": "FAULT-DOMAIN-1"}, pod.NodeSelector); diff != "" {
				t.Errorf("nodeSelector (-want +got):\n%s", diff)
			}
			wantTol := []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: releaseNamespace, Effect: corev1.TaintEffectNoSchedule}}
			if diff := cmp.Diff(wantTol, pod.Tolerations); diff != "" {
				t.Errorf("tolerations (-want +got):\n%s", diff)
			}
			if a := pod.Affinity; a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
				t.Errorf("affinity %+v: the string form was not rendered", a)
			}
			if len(pod.Containers) != 1 {
				t.Errorf("%d containers: the agent must not add a sidecar", len(pod.Containers))
			}
		},
	},
	{
		name: "providers-dir",
		values: `
daemonSet:
  providersDir: /etc/kubernetes/secrets-store-csi-providers/
`,
		check: func(t *testing.T, objs objects) {
			const dir = "/etc/kubernetes/secrets-store-csi-providers"
			if c := providerContainer(t, objs); c.Args[0] != "-endpoint="+dir+"/vault.sock" {
				t.Errorf("first arg = %q", c.Args[0])
			}
			if got := providersHostPath(t, objs); got != dir {
				t.Errorf("hostPath = %q, want %q", got, dir)
			}
		},
	},
}

// TestRender compares each case with its golden file and checks what the
// case is about, plus what must hold for every case.
func TestRender(t *testing.T) {
	for _, tc := range renderCases {
		t.Run(tc.name, func(t *testing.T) {
			rel := mustRender(t.Context(), t, releaseNamespace, parseValues(t, tc.values))
			golden := filepath.Join("testdata", tc.name+".golden.yaml")
			if *update {
				if err := os.WriteFile(golden, []byte(rel.Manifest), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), rel.Manifest); diff != "" {
				t.Errorf("%s differs (-golden +rendered; -update refreshes it):\n%s", golden, diff)
			}
			objs := decodeObjects(t, []byte(rel.Manifest))
			checkInvariants(t, objs, tc.hostNetwork)
			tc.check(t, objs)
		})
	}
}

// checkInvariants asserts what every set of values keeps: the hardening,
// the least RBAC, the socket path, probes and the pod namespace.
func checkInvariants(t *testing.T, objs objects, hostNetwork bool) {
	t.Helper()
	for _, u := range objs {
		if ns := u.GetNamespace(); u.GetKind() != "ClusterRole" && u.GetKind() != "ClusterRoleBinding" && ns != releaseNamespace {
			t.Errorf("%s %s in namespace %q, want the release namespace", u.GetKind(), u.GetName(), ns)
		}
	}

	var ds appsv1.DaemonSet
	typed(t, objs.get(t, "DaemonSet", releaseName), &ds)
	pod := ds.Spec.Template.Spec
	if pod.HostNetwork != hostNetwork || pod.HostPID || pod.HostIPC {
		t.Errorf("host namespaces: network=%v (want %v) pid=%v ipc=%v", pod.HostNetwork, hostNetwork, pod.HostPID, pod.HostIPC)
	}
	if pod.SecurityContext == nil || pod.SecurityContext.SeccompProfile == nil || pod.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod seccompProfile is not RuntimeDefault: %+v", pod.SecurityContext)
	}
	if len(pod.Containers) != 1 || len(pod.InitContainers) != 0 {
		t.Fatalf("want one container and no init container, got %d and %d", len(pod.Containers), len(pod.InitContainers))
	}
	c := pod.Containers[0]
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Fatal("no container securityContext")
	case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0:
		t.Errorf("capabilities = %+v, want drop [ALL] and no add", sc.Capabilities)
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Error("readOnlyRootFilesystem is not true")
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Error("allowPrivilegeEscalation is not false")
	case sc.Privileged != nil && *sc.Privileged:
		t.Error("privileged")
	case sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
		t.Errorf("container seccompProfile = %+v", sc.SeccompProfile)
	}

	// The socket: one hostPath, the providers directory, mounted at the same
	// path that -endpoint names.
	dir := providersHostPath(t, objs)
	if c.Args[0] != "-endpoint="+dir+"/vault.sock" {
		t.Errorf("first arg %q does not name %s/vault.sock", c.Args[0], dir)
	}
	if !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool {
		return m.Name == "providers-dir" && m.MountPath == dir && !m.ReadOnly
	}) {
		t.Errorf("volumeMounts %+v: the providers directory is not mounted writable at %s", c.VolumeMounts, dir)
	}

	if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
		return e.Name == "POD_NAMESPACE" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace"
	}) {
		t.Errorf("env %+v lacks POD_NAMESPACE from the downward API", c.Env)
	}
	checkProbe(t, "readiness", c.ReadinessProbe, "/health/ready")
	checkProbe(t, "liveness", c.LivenessProbe, "/healthz")
	if !slices.Contains(c.Ports, corev1.ContainerPort{Name: "health", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}) {
		t.Errorf("ports %+v lack health 8080", c.Ports)
	}
	if slices.Contains(c.Args, "-vault-tls-skip-verify") {
		t.Error("-vault-tls-skip-verify is set")
	}

	var role rbacv1.Role
	typed(t, objs.get(t, "Role", releaseName), &role)
	wantRules := []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "list", "watch"}, ResourceNames: []string{hmacSecretName}},
		{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"create"}},
	}
	if diff := cmp.Diff(wantRules, role.Rules); diff != "" {
		t.Errorf("Role rules (-want +got):\n%s", diff)
	}
	fallback := slices.Contains(c.Args, "-token-request-fallback")
	pods := slices.Contains(c.Args, "-revoke-on-pod-delete") ||
		slices.ContainsFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, "-allowed-pod-attributes=") })
	// Cluster-wide rights only for the flags that need them.
	for _, kind := range []string{"ClusterRole", "ClusterRoleBinding"} {
		if objs.hasNamed(kind, releaseName+"-token-request") != fallback || objs.hasNamed(kind, releaseName+"-pods") != pods {
			t.Errorf("%s objects %v, with -token-request-fallback = %v and -allowed-pod-attributes or -revoke-on-pod-delete = %v", kind, objs.names(), fallback, pods)
		}
	}
}

func checkProbe(t *testing.T, name string, p *corev1.Probe, path string) {
	t.Helper()
	if p == nil || p.HTTPGet == nil {
		t.Errorf("%s probe: not an HTTP probe: %+v", name, p)
		return
	}
	if p.HTTPGet.Path != path || p.HTTPGet.Port.String() != "health" {
		t.Errorf("%s probe: GET %s on port %s, want %s on health (8080)", name, p.HTTPGet.Path, p.HTTPGet.Port.String(), path)
	}
}

// providerContainer returns the DaemonSet's container.
func providerContainer(t *testing.T, objs objects) corev1.Container {
	t.Helper()
	var ds appsv1.DaemonSet
	typed(t, objs.get(t, "DaemonSet", releaseName), &ds)
	if len(ds.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(ds.Spec.Template.Spec.Containers))
	}
	return ds.Spec.Template.Spec.Containers[0]
}

// providersHostPath returns the path of the only hostPath volume.
func providersHostPath(t *testing.T, objs objects) string {
	t.Helper()
	var ds appsv1.DaemonSet
	typed(t, objs.get(t, "DaemonSet", releaseName), &ds)
	var paths []string
	for _, v := range ds.Spec.Template.Spec.Volumes {
		if v.HostPath != nil {
			paths = append(paths, v.HostPath.Path)
		}
	}
	if len(paths) != 1 {
		t.Fatalf("hostPath volumes %q, want exactly the providers directory", paths)
	}
	return paths[0]
}

// caVolume returns the Vault CA volume and its mount.
func caVolume(t *testing.T, objs objects) (corev1.Volume, corev1.VolumeMount) {
	t.Helper()
	var ds appsv1.DaemonSet
	typed(t, objs.get(t, "DaemonSet", releaseName), &ds)
	i := slices.IndexFunc(ds.Spec.Template.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == "vault-ca" })
	c := ds.Spec.Template.Spec.Containers[0]
	j := slices.IndexFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == "vault-ca" })
	if i < 0 || j < 0 {
		t.Fatalf("no vault-ca volume (%d) or mount (%d)", i, j)
	}
	return ds.Spec.Template.Spec.Volumes[i], c.VolumeMounts[j]
}

// TestValuesRejected checks that the schema and the templates turn bad
// values away with a message that names the problem.
func TestValuesRejected(t *testing.T) {
	for _, tc := range []struct {
		name, values string
		want         []string // all in the error
	}{
		{"unknown top-level key", "replicas: 2\n", []string{"additional properties 'replicas' not allowed"}},
		{"misspelt nested key", "vault:\n  adress: https://vault:8200\n", []string{"/vault", "additional properties 'adress' not allowed"}},
		{"port of the wrong type", "metrics:\n  port: \"9090\"\n", []string{"/metrics/port", "want integer"}},
		{"metrics on the health port", "metrics:\n  enabled: true\n  port: 8080\n", []string{"/metrics/port", "not"}},
		{"bool of the wrong type", "tokenRequestFallback: \"yes\"\n", []string{"/tokenRequestFallback", "want boolean"}},
		{"list of the wrong type", "extraArgs: -cache-size=10\n", []string{"/extraArgs", "want array"}},
		{"pod attribute with a comma", "allowedPodAttributes: [\"objects,roleName\"]\n", []string{"/allowedPodAttributes/0", "does not match pattern"}},
		{"pod attributes as one string", "allowedPodAttributes: objects\n", []string{"/allowedPodAttributes", "want null or array"}},
		{"vault address without a scheme", "allowedVaultAddresses: [\"vault:8200\"]\n", []string{"/allowedVaultAddresses/0", "does not match pattern"}},
		{"log level out of the enum", "logLevel: verbose\n", []string{"/logLevel", "value must be one of 'trace', 'debug', 'info', 'warn', 'error'"}},
		{"relative providers dir", "daemonSet:\n  providersDir: var/run/x\n", []string{"/daemonSet/providersDir"}},
		{"both CA sources", "vault:\n  tls:\n    caCert:\n      secretName: a\n      configMapName: b\n", []string{"set secretName or configMapName, not both"}},
		{"ServiceMonitor without metrics", "metrics:\n  serviceMonitor:\n    enabled: true\n", []string{"metrics.serviceMonitor.enabled needs metrics.enabled"}},
		{"vault-helm's enabled: false", "enabled: false\n", []string{"enabled: false", "helm uninstall"}},
		{"vault-helm's image", "image:\n  repository: hashicorp/vault-csi-provider\n  tag: \"1.7.4\"\n", []string{"image.repository hashicorp/vault-csi-provider is the provider this chart replaces", "leave image out"}},
		{"pull secret without a name", "global:\n  imagePullSecrets: [{secret: x}]\n", []string{"/global/imagePullSecrets/0"}},
		{"tolerations as a map", "pod:\n  tolerations: {key: x}\n", []string{"/pod/tolerations"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := render(t.Context(), t, releaseNamespace, parseValues(t, tc.values))
			if err == nil {
				t.Fatal("accepted")
			}
			if miss := missingFrom(err.Error(), tc.want...); len(miss) > 0 {
				t.Errorf("error %q lacks %q", err, miss)
			}
		})
	}
}

// TestNotes checks that NOTES.txt tells the user the next steps.
func TestNotes(t *testing.T) {
	rel := mustRender(t.Context(), t, releaseNamespace, nil)
	if miss := missingFrom(rel.Info.Notes,
		"tokenRequests[0].audience=vault",
		"kind: SecretProviderClass",
		"provider: vault",
		"pod-security.kubernetes.io/enforce=privileged",
		"/var/run/secrets-store-csi-providers/vault.sock",
		"kubectl logs -n vault-csi-provider -l app.kubernetes.io/name=vault-csi-provider,app.kubernetes.io/instance=vault-csi-provider",
		"docs/troubleshooting.md",
		"No allowedVaultAddresses is set",
		"Image: ghcr.io/okevault/vault-csi-provider:",
		"No public registry serves this image",
	); len(miss) > 0 {
		t.Errorf("NOTES lack %q:\n%s", miss, rel.Info.Notes)
	}
	rel = mustRender(t.Context(), t, releaseNamespace, parseValues(t, "image:\n  repository: fra.ocir.io/ns/vault/vault-csi-provider\n  digest: sha256:0000000000000000000000000000000000000000000000000000000000000007\n"))
	if miss := missingFrom(rel.Info.Notes, "Image: fra.ocir.io/ns/vault/vault-csi-provider@sha256:0000000000000000000000000000000000000000000000000000000000000007"); len(miss) > 0 || strings.Contains(rel.Info.Notes, "No public registry") {
		t.Errorf("NOTES with the user's registry: lack %q or still warn:\n%s", miss, rel.Info.Notes)
	}
	if strings.Contains(rel.Info.Notes, "agent is ignored") {
		t.Errorf("NOTES speak of an agent nobody configured:\n%s", rel.Info.Notes)
	}
	rel = mustRender(t.Context(), t, releaseNamespace, parseValues(t, "agent:\n  enabled: true\n"))
	if miss := missingFrom(rel.Info.Notes, "agent is ignored", "-read-cache-ttl"); len(miss) > 0 {
		t.Errorf("NOTES with vault-helm's agent values lack %q:\n%s", miss, rel.Info.Notes)
	}
	rel = mustRender(t.Context(), t, releaseNamespace, parseValues(t, "allowedVaultAddresses: [\"https://vault:8200\"]\n"))
	if strings.Contains(rel.Info.Notes, "allowedVaultAddresses") {
		t.Errorf("NOTES recommend allowedVaultAddresses though it is set:\n%s", rel.Info.Notes)
	}
	rel = mustRender(t.Context(), t, releaseNamespace, parseValues(t, "daemonSet:\n  providersDir: /opt/providers\n"))
	if miss := missingFrom(rel.Info.Notes, "--set linux.providersDir=/opt/providers"); len(miss) > 0 {
		t.Errorf("NOTES for a custom providers dir lack %q:\n%s", miss, rel.Info.Notes)
	}
}

// TestLint runs the real helm binary's lint, strict, with the defaults and
// with every render case's values.
func TestLint(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real helm binary; skipped under -short")
	}
	helm, err := testbed.Bin("helm")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, tc := range renderCases {
		t.Run(tc.name, func(t *testing.T) {
			values := filepath.Join(dir, tc.name+".yaml")
			if err := os.WriteFile(values, []byte(tc.values), 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.CommandContext(t.Context(), helm, "lint", "--strict", "--namespace", releaseNamespace, "-f", values, chartDir(t))
			cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+dir, "HELM_CONFIG_HOME="+dir, "HELM_DATA_HOME="+dir)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("helm lint: %v\n%s", err, out)
			}
			if !strings.Contains(string(out), "0 chart(s) failed") {
				t.Errorf("helm lint output:\n%s", out)
			}
		})
	}
}

// TestReadmeCommands renders the chart with the values of every
// `helm ... charts/vault-csi-provider` command in the chart's README, the
// project's README and docs/ (its --set flags and -f files), so the
// commands shown keep matching the chart: the schema rejects a value that
// does not exist.
func TestReadmeCommands(t *testing.T) {
	docs, err := filepath.Glob(moduleDir(t, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	var cmds []string
	for _, path := range append([]string{filepath.Join(chartDir(t), "README.md"), moduleDir(t, "README.md")}, docs...) {
		text, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var cur strings.Builder
		for line := range strings.SplitSeq(string(text), "\n") {
			line = strings.TrimSpace(line)
			cont := strings.HasSuffix(line, `\`)
			cur.WriteString(strings.TrimSuffix(line, `\`) + " ")
			if !cont {
				if c := strings.TrimSpace(cur.String()); strings.HasPrefix(c, "helm ") && strings.Contains(c, " charts/vault-csi-provider") {
					cmds = append(cmds, c)
				}
				cur.Reset()
			}
		}
	}
	if len(cmds) < 4 {
		t.Fatalf("found %d helm commands for the chart in the READMEs and docs, want the install examples", len(cmds))
	}
	for _, c := range cmds {
		t.Run(c, func(t *testing.T) {
			vals := map[string]any{}
			args := strings.Fields(c)
			for i := 0; i < len(args); i++ {
				if i+1 >= len(args) {
					break
				}
				switch args[i] {
				case "--set":
					i++
					if err := strvals.ParseInto(strings.Trim(args[i], `'"`), vals); err != nil {
						t.Fatalf("--set %s: %v", args[i], err)
					}
				case "-f", "--values":
					i++
					if !strings.HasPrefix(args[i], "examples/") {
						t.Logf("-f %s: the reader's own file", args[i])
						continue
					}
					file, err := chartutil.ReadValuesFile(moduleDir(t, args[i]))
					if err != nil {
						t.Fatal(err)
					}
					vals = chartutil.CoalesceTables(vals, file)
				case "--namespace", "-n":
					i++
					if args[i] != releaseNamespace {
						t.Errorf("namespace %s; the README installs into %s", args[i], releaseNamespace)
					}
				}
			}
			if _, err := render(t.Context(), t, releaseNamespace, vals); err != nil {
				t.Errorf("the README's command does not render: %v", err)
			}
		})
	}
}

// TestArgsAcceptedByProvider runs the real provider binary with the
// arguments each render case gives it, plus -version: the binary parses and
// validates every flag, then prints its version and exits, so a flag the
// chart passes that the provider does not know (or rejects) fails here.
func TestArgsAcceptedByProvider(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the provider; skipped under -short")
	}
	bin, err := testbed.BuildProvider(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range renderCases {
		t.Run(tc.name, func(t *testing.T) {
			objs := decodeObjects(t, []byte(mustRender(t.Context(), t, releaseNamespace, parseValues(t, tc.values)).Manifest))
			args := slices.Concat(providerContainer(t, objs).Args, []string{"-version"})
			cmd := exec.CommandContext(t.Context(), bin, args...)
			// What the downward API gives the container.
			cmd.Env = []string{"POD_NAMESPACE=" + releaseNamespace, "NODE_NAME=node-a"}
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("vault-csi-provider %q: %v\n%s", args, err, out)
			}
		})
	}
}
