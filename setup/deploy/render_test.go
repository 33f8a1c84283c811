package deploy

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func etcdSpec(size int) *Spec {
	return &Spec{
		Name:      "t",
		Namespace: "vault",
		Vault: Vault{
			Name: "vault", Size: 3, Image: "docker.io/hashicorp/vault:1.21.4",
			BankVaultsImage: "ghcr.io/bank-vaults/bank-vaults:v1.33.1", ServiceAccount: "vault",
			CANamespaces: []string{"vault-csi-provider"}, UnsealSecret: "vault-unseal-keys",
			Etcd: &Etcd{Name: "vault-etcd", Size: size, ImageRegistry: "gcr.io/etcd-development/etcd", Version: "v3.6.16", StorageSize: "1Gi"},
		},
	}
}

// vaultConfig is the CR's Vault configuration, decoded.
func vaultConfig(t *testing.T, s *Spec) map[string]any {
	t.Helper()
	v, err := VaultObject(s)
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(v.Spec.Config.Raw, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestEtcdStorageIsPlainHTTP: Vault lists every member's advertised client
// URL (the etcd operator v0.2.0 advertises only http://) and carries no
// TLS files or volumes for etcd.
func TestEtcdStorageIsPlainHTTP(t *testing.T) {
	s := etcdSpec(3)
	etcd := vaultConfig(t, s)["storage"].(map[string]any)["etcd"].(map[string]any)
	want := map[string]any{
		"address": "http://vault-etcd-0.vault-etcd.vault.svc.cluster.local:2379," +
			"http://vault-etcd-1.vault-etcd.vault.svc.cluster.local:2379," +
			"http://vault-etcd-2.vault-etcd.vault.svc.cluster.local:2379",
		"etcd_api":   "v3",
		"ha_enabled": "true",
		"path":       "/vault/",
	}
	if d := cmp.Diff(want, etcd); d != "" {
		t.Errorf("etcd storage (-want +got):\n%s", d)
	}
	v, err := VaultObject(s)
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Spec.Volumes) > 0 || len(v.Spec.VolumeMounts) > 0 {
		t.Errorf("volumes %v, mounts %v: want none for etcd", v.Spec.Volumes, v.Spec.VolumeMounts)
	}
	ec := etcdCluster(s)
	if _, ok := ec.Object["spec"].(map[string]any)["tls"]; ok {
		t.Error("EtcdCluster has tls: the operator v0.2.0 never gives etcd its certificates")
	}
}

func TestEtcdNetworkPolicy(t *testing.T) {
	s := etcdSpec(3)
	np := etcdNetworkPolicy(s, "etcd-ops")
	if d := cmp.Diff(map[string]string{"app": "vault-etcd", "controller": "vault-etcd"}, np.Spec.PodSelector.MatchLabels); d != "" {
		t.Errorf("selects (-want +got):\n%s", d)
	}
	if len(np.Spec.Ingress) != 2 {
		t.Fatalf("%d ingress rules, want 2 (client, peer)", len(np.Spec.Ingress))
	}
	type rule struct {
		Port int32
		From []string
	}
	var got []rule
	for _, in := range np.Spec.Ingress {
		r := rule{Port: in.Ports[0].Port.IntVal}
		for _, f := range in.From {
			switch {
			case f.NamespaceSelector != nil:
				r.From = append(r.From, "namespace "+f.NamespaceSelector.MatchLabels[corev1.LabelMetadataName])
			case f.PodSelector.MatchLabels["vault_cr"] != "":
				r.From = append(r.From, "vault pods "+f.PodSelector.MatchLabels["app.kubernetes.io/name"]+"/"+f.PodSelector.MatchLabels["vault_cr"])
			default:
				r.From = append(r.From, "etcd pods "+f.PodSelector.MatchLabels["app"])
			}
		}
		got = append(got, r)
	}
	want := []rule{
		{Port: 2379, From: []string{"vault pods vault/vault", "namespace etcd-ops", "etcd pods vault-etcd"}},
		{Port: 2380, From: []string{"etcd pods vault-etcd"}},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("ingress (-want +got):\n%s", d)
	}
}

// TestEtcdOperatorNamespace: the policy admits the namespace the manifest
// actually runs the operator in.
func TestEtcdOperatorNamespace(t *testing.T) {
	embedded, err := decodeYAML(EtcdOperatorManifest)
	if err != nil {
		t.Fatal(err)
	}
	if got := etcdOperatorNS(embedded); got != "etcd-operator-system" {
		t.Errorf("embedded manifest: %q", got)
	}
	own := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apps/v1", "kind": "Deployment",
		"metadata": map[string]any{"name": "x", "namespace": "ops", "labels": map[string]any{"app.kubernetes.io/name": "etcd-operator"}},
	}}
	if got := etcdOperatorNS([]*unstructured.Unstructured{own}); got != "ops" {
		t.Errorf("own manifest: %q", got)
	}
}

func TestPodDisruptionBudgets(t *testing.T) {
	for _, tt := range []struct {
		size int
		want *intstr.IntOrString // etcd minAvailable; nil: no PDB
	}{
		{1, nil},
		{3, ptr(intstr.FromInt32(2))},
		{5, ptr(intstr.FromInt32(3))},
	} {
		pdb := etcdPDB(etcdSpec(tt.size))
		switch {
		case tt.want == nil && pdb != nil:
			t.Errorf("size %d: a PDB (%v) would block every drain", tt.size, pdb.Spec.MinAvailable)
		case tt.want != nil && (pdb == nil || pdb.Spec.MinAvailable.IntValue() != tt.want.IntValue()):
			t.Errorf("size %d: %v, want minAvailable %v", tt.size, pdb, tt.want)
		}
	}
	v := vaultPDB(etcdSpec(3))
	if v.Spec.MaxUnavailable.IntValue() != 1 || v.Spec.Selector.MatchLabels["vault_cr"] != "vault" {
		t.Errorf("vault PDB %+v", v.Spec)
	}
}

func ptr[T any](v T) *T { return &v }

// TestVaultAddressesAndCA: the certificate names the address setup
// documents; the CA goes to the provider's namespace; images are pinned.
func TestVaultAddressesAndCA(t *testing.T) {
	s := etcdSpec(3)
	s.Vault.TLSAdditionalHosts = []string{"vault.vault.svc", "vault.example.com"}
	v, err := VaultObject(s)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"vault.vault.svc", "vault.example.com"}, v.Spec.TLSAdditionalHosts); d != "" {
		t.Errorf("tlsAdditionalHosts (-want +got):\n%s", d)
	}
	if got := VaultAddress(s); got != "https://vault.vault.svc:8200" {
		t.Errorf("VaultAddress %q", got)
	}
	if d := cmp.Diff([]string{"vault-csi-provider"}, v.Spec.CANamespaces); d != "" {
		t.Errorf("caNamespaces (-want +got):\n%s", d)
	}
	if v.Spec.Image != "docker.io/hashicorp/vault:1.21.4" || v.Spec.BankVaultsImage != "ghcr.io/bank-vaults/bank-vaults:v1.33.1" {
		t.Errorf("images %q, %q", v.Spec.Image, v.Spec.BankVaultsImage)
	}
	spec := etcdCluster(s).Object["spec"].(map[string]any)
	if spec["imageRegistry"] != "gcr.io/etcd-development/etcd" || spec["version"] != "v3.6.16" {
		t.Errorf("etcd image %v:%v", spec["imageRegistry"], spec["version"])
	}
	c := vaultConfig(t, s)
	if c["api_addr"] != "https://${.Env.POD_NAME}.vault:8200" || c["cluster_addr"] != "https://${.Env.POD_NAME}.vault:8201" {
		t.Errorf("api_addr %v, cluster_addr %v", c["api_addr"], c["cluster_addr"])
	}
	if _, set := c["disable_mlock"]; set {
		t.Error("disable_mlock on etcd storage: keep mlock, as the operator does")
	}

	s.Vault.TLSDisabled = true
	v, err = VaultObject(s)
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Spec.TLSAdditionalHosts) > 0 || len(v.Spec.CANamespaces) > 0 {
		t.Errorf("TLS off: hosts %v, CA namespaces %v", v.Spec.TLSAdditionalHosts, v.Spec.CANamespaces)
	}
	if got := VaultAddress(s); got != "http://vault.vault.svc:8200" {
		t.Errorf("VaultAddress without TLS %q", got)
	}
}

// TestSchedulesOnOneNode: anti-affinity and spread are preferences only,
// so a single-node cluster still runs every pod.
func TestSchedulesOnOneNode(t *testing.T) {
	v, err := VaultObject(etcdSpec(3))
	if err != nil {
		t.Fatal(err)
	}
	aa := v.Spec.Affinity.PodAntiAffinity
	if len(aa.RequiredDuringSchedulingIgnoredDuringExecution) > 0 || len(aa.PreferredDuringSchedulingIgnoredDuringExecution) != 1 {
		t.Errorf("anti-affinity %+v: want one preferred term", aa)
	}
	for _, c := range v.Spec.VaultPodSpec.TopologySpreadConstraints {
		if c.WhenUnsatisfiable != corev1.ScheduleAnyway {
			t.Errorf("topology spread %s: %s", c.TopologyKey, c.WhenUnsatisfiable)
		}
	}
	if v.Spec.Resources.Vault.Requests.Cpu().MilliValue() > 250 {
		t.Errorf("Vault requests %v", v.Spec.Resources.Vault.Requests)
	}
}

func TestNotes(t *testing.T) {
	notes := strings.Join(Notes(etcdSpec(3)), "\n")
	for _, want := range []string{"plain HTTP", "NetworkPolicy vault/vault-etcd", "raft"} {
		if !strings.Contains(notes, want) {
			t.Errorf("notes %q lack %q", notes, want)
		}
	}
	s := etcdSpec(3)
	s.Vault.Etcd, s.Vault.Raft = nil, &Raft{Size: "10Gi"}
	if n := Notes(s); len(n) > 0 {
		t.Errorf("raft notes %q", n)
	}
}
