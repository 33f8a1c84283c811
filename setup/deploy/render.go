package deploy

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	vaultv1alpha1 "github.com/bank-vaults/vault-operator/pkg/apis/vault/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	extv1beta1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1beta1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// EtcdOperatorManifest is the etcd operator's v0.2.0 install manifest.
//
//go:embed manifests/etcd-operator-install-v0.2.0.yaml
var EtcdOperatorManifest []byte

const (
	// LabelManagedBy marks every object deploy applies ("vault-oke-setup").
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// LabelSetup names the setup (metadata.name) an object belongs to; prune selects on it.
	LabelSetup = "setup.okevault.io/name"
	managedBy  = "vault-oke-setup"

	// etcdOperatorNamespace is where the embedded manifest runs the etcd
	// operator, which calls each member's client port.
	etcdOperatorNamespace = "etcd-operator-system"
	etcdClientPort        = 2379
	etcdPeerPort          = 2380
)

// Render returns the objects of s in apply order: namespaces, CRDs, the
// operators, RBAC and service accounts, then the custom resources.
func Render(ctx context.Context, s *Spec) ([]*unstructured.Unstructured, error) {
	var objs []*unstructured.Unstructured
	add := func(o any) error {
		u, err := toUnstructured(o)
		if err != nil {
			return err
		}
		objs = append(objs, u)
		return nil
	}

	namespaces := []string{s.Namespace}
	for _, sa := range slices.Concat(s.ServiceAccounts, s.AuthDelegators) {
		if !slices.Contains(namespaces, sa.Namespace) && !isSystemNamespace(sa.Namespace) {
			namespaces = append(namespaces, sa.Namespace)
		}
	}
	// The operator copies Vault's CA only into namespaces that exist when it
	// reconciles (distributeCACertificate skips the others until its next
	// sync, a minute or more later): made here, the provider's namespace has
	// the CA before its chart is installed.
	for _, ns := range s.Vault.CANamespaces {
		if ns != "*" && !slices.Contains(namespaces, ns) && !isSystemNamespace(ns) {
			namespaces = append(namespaces, ns)
		}
	}
	for _, ns := range namespaces {
		if err := add(&corev1.Namespace{TypeMeta: typeMeta("v1", "Namespace"), ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return nil, err
		}
	}

	// The operator watches Vault's namespace only; scopeVaultOperator
	// narrows its RBAC to match.
	operator := s.Operator
	operator.Values = maps.Clone(operator.Values)
	if operator.Values == nil {
		operator.Values = map[string]any{}
	}
	operator.Values["watchNamespace"] = s.Namespace
	chartObjs, err := RenderChart(ctx, operator, s.Namespace)
	if err != nil {
		return nil, fmt.Errorf("render chart %s: %w", s.Operator.Ref, err)
	}
	rbac, err := scopeVaultOperator(chartObjs, s)
	if err != nil {
		return nil, fmt.Errorf("render chart %s: %w", s.Operator.Ref, err)
	}
	objs = append(objs, chartObjs...)

	if s.EtcdOperatorManifest != nil {
		etcdObjs, err := decodeYAML(s.EtcdOperatorManifest)
		if err != nil {
			return nil, fmt.Errorf("etcd operator manifest: %w", err)
		}
		etcdObjs, etcdRBAC, err := scopeEtcdOperator(etcdObjs, s)
		if err != nil {
			return nil, fmt.Errorf("etcd operator manifest: %w", err)
		}
		objs = append(objs, etcdObjs...)
		rbac = append(rbac, etcdRBAC...)
	}
	for _, o := range rbac {
		if err := add(o); err != nil {
			return nil, err
		}
	}

	for _, o := range vaultRBAC(s) {
		if err := add(o); err != nil {
			return nil, err
		}
	}
	for _, sa := range s.ServiceAccounts {
		if err := add(serviceAccount(sa)); err != nil {
			return nil, err
		}
	}
	for _, sa := range s.AuthDelegators {
		if err := add(serviceAccount(sa)); err != nil {
			return nil, err
		}
		if err := add(authDelegator(sa.Name+"-auth-delegator", sa)); err != nil {
			return nil, err
		}
	}
	if s.Vault.Etcd != nil {
		objs = append(objs, etcdCluster(s))
		if err := add(etcdNetworkPolicy(s, etcdOperatorNS(objs))); err != nil {
			return nil, err
		}
		if pdb := etcdPDB(s); pdb != nil {
			if err := add(pdb); err != nil {
				return nil, err
			}
		}
	}
	v, err := VaultObject(s)
	if err != nil {
		return nil, err
	}
	if err := add(v); err != nil {
		return nil, err
	}
	if err := add(vaultPDB(s)); err != nil {
		return nil, err
	}

	for _, o := range objs {
		labels := o.GetLabels()
		if labels == nil {
			labels = map[string]string{}
		}
		labels[LabelManagedBy] = managedBy
		labels[LabelSetup] = s.Name
		o.SetLabels(labels)
	}
	sortForApply(objs)
	return objs, nil
}

// VaultObject builds the bank-vaults Vault custom resource from the
// operator's own Go types, so field names follow the operator's API.
func VaultObject(s *Spec) (*vaultv1alpha1.Vault, error) {
	v := s.Vault
	scheme := "https"
	listener := map[string]any{"address": "0.0.0.0:8200", "tls_cert_file": "/vault/tls/server.crt", "tls_key_file": "/vault/tls/server.key"}
	if v.TLSDisabled {
		scheme = "http"
		listener = map[string]any{"address": "0.0.0.0:8200", "tls_disable": true}
	}
	// Each pod advertises its own address, through the per-pod Service the
	// operator makes (perInstanceServicesForVault) and its certificate
	// names (<pod>.<namespace>); bank-vaults' template init container fills
	// in ${.Env.POD_NAME}. The operator sets neither itself: withClusterAddr
	// only does for multi-cluster Raft behind a load balancer.
	podAddr := "${.Env.POD_NAME}." + s.Namespace
	config := map[string]any{
		"listener":     map[string]any{"tcp": listener},
		"api_addr":     fmt.Sprintf("%s://%s:8200", scheme, podAddr),
		"cluster_addr": fmt.Sprintf("https://%s:8201", podAddr),
		"ui":           true,
	}
	spec := vaultv1alpha1.VaultSpec{
		Size:                       v.Size,
		Image:                      v.Image,
		BankVaultsImage:            v.BankVaultsImage,
		ServiceAccount:             v.ServiceAccount,
		ServiceType:                string(corev1.ServiceTypeClusterIP),
		ServiceRegistrationEnabled: true,
		ExistingTLSSecretName:      v.ExistingTLSSecret,
		StatsDDisabled:             true,
		UnsealConfig: vaultv1alpha1.UnsealConfig{
			Kubernetes: vaultv1alpha1.KubernetesUnsealConfig{SecretNamespace: s.Namespace, SecretName: v.UnsealSecret},
		},
		Affinity:     vaultAffinity(s),
		VaultPodSpec: &vaultv1alpha1.EmbeddedPodSpec{TopologySpreadConstraints: vaultTopologySpread(s)},
		Resources:    vaultResources(),
	}
	if !v.TLSDisabled {
		spec.TLSAdditionalHosts = tlsHosts(s)
		spec.CANamespaces = v.CANamespaces
	}
	switch {
	case v.Raft != nil:
		config["storage"] = map[string]any{"raft": map[string]any{"path": "/vault/file"}}
		// HashiCorp: mlock does not interact well with the memory-mapped
		// BoltDB files of integrated storage; disabling it is "strongly
		// recommended" there. The operator then adds no IPC_LOCK.
		config["disable_mlock"] = true
		size, err := resource.ParseQuantity(v.Raft.Size)
		if err != nil {
			return nil, fmt.Errorf("raft size %q: %w", v.Raft.Size, err)
		}
		pvc := vaultv1alpha1.EmbeddedPersistentVolumeClaim{
			EmbeddedObjectMetadata: vaultv1alpha1.EmbeddedObjectMetadata{Name: "vault-raft"},
			Spec: corev1.PersistentVolumeClaimSpec{
				AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: size}},
			},
		}
		if v.Raft.StorageClass != "" {
			pvc.Spec.StorageClassName = &v.Raft.StorageClass
		}
		spec.VolumeClaimTemplates = []vaultv1alpha1.EmbeddedPersistentVolumeClaim{pvc}
		spec.VolumeMounts = []corev1.VolumeMount{{Name: "vault-raft", MountPath: "/vault/file"}}
	case v.Etcd != nil:
		// The scenario's storage: etcd v3 with HA, over plain HTTP: the etcd
		// operator v0.2.0 starts every member with http:// URLs only
		// (internal/controller/utils.go, defaultArgs). Every member is
		// listed, so Vault starts with any quorum of them up.
		config["storage"] = map[string]any{"etcd": map[string]any{
			"address":    strings.Join(EtcdMemberURLs(s), ","),
			"etcd_api":   "v3",
			"ha_enabled": "true",
			"path":       "/vault/",
		}}
	default:
		return nil, errors.New("vault: no storage (raft or etcd)")
	}
	if k := v.OCIKMS; k != nil {
		config["seal"] = map[string]any{"ocikms": map[string]any{
			"key_id":              k.KeyID,
			"crypto_endpoint":     k.CryptoEndpoint,
			"management_endpoint": k.ManagementEndpoint,
			"auth_type_api_key":   fmt.Sprint(k.AuthTypeAPIKey),
		}}
	}
	raw, err := json.Marshal(config)
	if err != nil {
		return nil, err
	}
	spec.Config = extv1beta1.JSON{Raw: raw}
	return &vaultv1alpha1.Vault{
		TypeMeta:   typeMeta(vaultv1alpha1.SchemeGroupVersion.String(), "Vault"),
		ObjectMeta: metav1.ObjectMeta{Name: v.Name, Namespace: s.Namespace},
		Spec:       spec,
	}, nil
}

// VaultAddress is the in-cluster address of the active Vault: the
// operator's Service, under a name its certificate carries (tlsHosts).
func VaultAddress(s *Spec) string {
	scheme := "https"
	if s.Vault.TLSDisabled {
		scheme = "http"
	}
	return fmt.Sprintf("%s://%s.%s.svc:8200", scheme, s.Vault.Name, s.Namespace)
}

// tlsHosts adds <name>.<namespace>.svc to the certificate's names: the
// operator names <name>, <name>.<namespace> and
// <name>.<namespace>.svc.cluster.local (hostsForService), not the .svc
// form that Kubernetes documents and VaultAddress uses.
func tlsHosts(s *Spec) []string {
	hosts := []string{s.Vault.Name + "." + s.Namespace + ".svc"}
	for _, h := range s.Vault.TLSAdditionalHosts {
		if !slices.Contains(hosts, h) {
			hosts = append(hosts, h)
		}
	}
	return hosts
}

// vaultLabels are the operator's labels on Vault's pods (LabelsForVault).
func vaultLabels(s *Spec) map[string]string {
	return map[string]string{"app.kubernetes.io/name": "vault", "vault_cr": s.Vault.Name}
}

// vaultAffinity prefers one Vault pod per node: preferred, so that a
// single-node cluster still runs them all.
func vaultAffinity(s *Spec) *corev1.Affinity {
	return &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
		PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{{
			Weight: 100,
			PodAffinityTerm: corev1.PodAffinityTerm{
				LabelSelector: &metav1.LabelSelector{MatchLabels: vaultLabels(s)},
				TopologyKey:   corev1.LabelHostname,
			},
		}},
	}}
}

// vaultTopologySpread spreads Vault's pods over zones (OKE's availability
// or fault domains) when it can, and schedules them anyway when it cannot.
func vaultTopologySpread(s *Spec) []corev1.TopologySpreadConstraint {
	return []corev1.TopologySpreadConstraint{{
		MaxSkew:           1,
		TopologyKey:       corev1.LabelTopologyZone,
		WhenUnsatisfiable: corev1.ScheduleAnyway,
		LabelSelector:     &metav1.LabelSelector{MatchLabels: vaultLabels(s)},
	}}
}

// vaultResources are requests a small node holds three times over (the
// operator's defaults ask 350m CPU per pod); memory is limited, CPU is not,
// so that unsealing and a mount storm are not throttled.
func vaultResources() *vaultv1alpha1.Resources {
	return &vaultv1alpha1.Resources{
		Vault: &corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("512Mi")},
		},
		BankVaults: &corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("25m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi")},
		},
	}
}

// vaultPDB lets a node drain evict one Vault pod at a time.
func vaultPDB(s *Spec) *policyv1.PodDisruptionBudget {
	one := intstr.FromInt32(1)
	return &policyv1.PodDisruptionBudget{
		TypeMeta:   typeMeta("policy/v1", "PodDisruptionBudget"),
		ObjectMeta: metav1.ObjectMeta{Name: s.Vault.Name, Namespace: s.Namespace},
		Spec: policyv1.PodDisruptionBudgetSpec{
			MaxUnavailable: &one,
			Selector:       &metav1.LabelSelector{MatchLabels: vaultLabels(s)},
		},
	}
}

// etcdLabels are the etcd operator's labels on a cluster's pods
// (createOrPatchStatefulSet).
func etcdLabels(e *Etcd) map[string]string {
	return map[string]string{"app": e.Name, "controller": e.Name}
}

// EtcdMemberURLs are the client URLs the etcd operator's members
// advertise: http://<name>-<i>.<name>.<namespace>.svc.cluster.local:2379.
func EtcdMemberURLs(s *Spec) []string {
	e := s.Vault.Etcd
	urls := make([]string, e.Size)
	for i := range urls {
		urls[i] = fmt.Sprintf("http://%s-%d.%s.%s.svc.cluster.local:%d", e.Name, i, e.Name, s.Namespace, etcdClientPort)
	}
	return urls
}

// etcdPDB keeps a quorum of etcd members through voluntary evictions. A
// single member gets none: it would block every drain of its node.
func etcdPDB(s *Spec) *policyv1.PodDisruptionBudget {
	e := s.Vault.Etcd
	if e.Size < 3 {
		return nil
	}
	quorum := intstr.FromInt32(int32(e.Size/2 + 1)) //nolint:gosec // G115: the size is validated (at most 7)
	return &policyv1.PodDisruptionBudget{
		TypeMeta:   typeMeta("policy/v1", "PodDisruptionBudget"),
		ObjectMeta: metav1.ObjectMeta{Name: e.Name, Namespace: s.Namespace},
		Spec: policyv1.PodDisruptionBudgetSpec{
			MinAvailable: &quorum,
			Selector:     &metav1.LabelSelector{MatchLabels: etcdLabels(e)},
		},
	}
}

// etcdNetworkPolicy admits to etcd's client port only Vault's pods and
// the etcd operator (it manages members through that port), and to the
// peer port only the members themselves. etcd speaks plain HTTP, so this
// is what keeps other pods from reading Vault's (encrypted) storage or
// writing to it; it needs a CNI that enforces NetworkPolicies.
func etcdNetworkPolicy(s *Spec, operatorNS string) *networkingv1.NetworkPolicy {
	e := s.Vault.Etcd
	client := intstr.FromInt32(etcdClientPort)
	peer := intstr.FromInt32(etcdPeerPort)
	tcp := corev1.ProtocolTCP
	members := networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{MatchLabels: etcdLabels(e)}}
	return &networkingv1.NetworkPolicy{
		TypeMeta:   typeMeta("networking.k8s.io/v1", "NetworkPolicy"),
		ObjectMeta: metav1.ObjectMeta{Name: e.Name, Namespace: s.Namespace},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: etcdLabels(e)},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{
				{
					Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &client}},
					From: []networkingv1.NetworkPolicyPeer{
						{PodSelector: &metav1.LabelSelector{MatchLabels: vaultLabels(s)}},
						{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: operatorNS}}},
						members,
					},
				},
				{
					Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &peer}},
					From:  []networkingv1.NetworkPolicyPeer{members},
				},
			},
		},
	}
}

// etcdOperatorNS is the namespace of the etcd operator's Deployment among
// objs (the manifest may be the user's), or the embedded manifest's.
func etcdOperatorNS(objs []*unstructured.Unstructured) string {
	for _, o := range objs {
		if o.GetKind() == "Deployment" && o.GetLabels()["app.kubernetes.io/name"] == "etcd-operator" && o.GetNamespace() != "" {
			return o.GetNamespace()
		}
	}
	return etcdOperatorNamespace
}

// Notes are what a user must know about the rendered setup that no object
// shows: plan and apply print them.
func Notes(s *Spec) []string {
	var notes []string
	if e := s.Vault.Etcd; e != nil {
		notes = append(notes,
			fmt.Sprintf("Vault reaches etcd (%s) over plain HTTP inside the cluster: the etcd operator v0.2.0 cannot serve TLS. "+
				"The NetworkPolicy %s/%s admits only Vault's pods and the etcd operator to port %d; "+
				"it protects only with a CNI that enforces NetworkPolicies (flannel and OKE's VCN-native CNI without Calico do not). "+
				"Where TLS to storage matters, use storage type raft.", e.Name, s.Namespace, e.Name, etcdClientPort))
	}
	return notes
}

// etcdCluster is an operator.etcd.io/v1alpha1 EtcdCluster. It has no TLS:
// the operator v0.2.0 mounts none of its certificates into etcd, and its
// "auto" provider signs each one by itself.
func etcdCluster(s *Spec) *unstructured.Unstructured {
	e := s.Vault.Etcd
	spec := map[string]any{
		"size":          int64(e.Size),
		"imageRegistry": e.ImageRegistry,
		"version":       e.Version,
	}
	if e.StorageSize != "" {
		st := map[string]any{"accessModes": "ReadWriteOnce", "volumeSizeRequest": e.StorageSize}
		if e.StorageClass != "" {
			st["storageClassName"] = e.StorageClass
		}
		spec["storageSpec"] = st
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "operator.etcd.io/v1alpha1",
		"kind":       "EtcdCluster",
		"metadata":   map[string]any{"name": e.Name, "namespace": s.Namespace},
		"spec":       spec,
	}}
	return u
}

// vaultRBAC is the Vault pods' service account: bank-vaults keeps unseal
// keys in a Secret and labels pods, and Vault's Kubernetes auth reviews
// tokens as this account (system:auth-delegator).
func vaultRBAC(s *Spec) []any {
	sa := NamespacedName{Namespace: s.Namespace, Name: s.Vault.ServiceAccount}
	return []any{
		serviceAccount(sa),
		&rbacv1.Role{
			TypeMeta:   typeMeta("rbac.authorization.k8s.io/v1", "Role"),
			ObjectMeta: metav1.ObjectMeta{Name: sa.Name, Namespace: sa.Namespace},
			Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "create", "update", "patch"}},
				{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "update", "patch"}},
			},
		},
		&rbacv1.RoleBinding{
			TypeMeta:   typeMeta("rbac.authorization.k8s.io/v1", "RoleBinding"),
			ObjectMeta: metav1.ObjectMeta{Name: sa.Name, Namespace: sa.Namespace},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: sa.Name},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: sa.Name, Namespace: sa.Namespace}},
		},
		authDelegator(sa.Namespace+"-"+sa.Name+"-auth-delegator", sa),
	}
}

func serviceAccount(sa NamespacedName) *corev1.ServiceAccount {
	return &corev1.ServiceAccount{TypeMeta: typeMeta("v1", "ServiceAccount"), ObjectMeta: metav1.ObjectMeta{Name: sa.Name, Namespace: sa.Namespace}}
}

func authDelegator(name string, sa NamespacedName) *rbacv1.ClusterRoleBinding {
	return &rbacv1.ClusterRoleBinding{
		TypeMeta:   typeMeta("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:auth-delegator"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: sa.Name, Namespace: sa.Namespace}},
	}
}

func typeMeta(apiVersion, kind string) metav1.TypeMeta {
	return metav1.TypeMeta{APIVersion: apiVersion, Kind: kind}
}

func isSystemNamespace(ns string) bool {
	return ns == "default" || strings.HasPrefix(ns, "kube-")
}

// toUnstructured converts a typed object through JSON and drops the empty
// values that Go's zero structs leave (creationTimestamp: null, a container
// with name "", a PodDisruptionBudget's zero status), which a server-side
// apply would otherwise claim as ours.
func toUnstructured(o any) (*unstructured.Unstructured, error) {
	if u, ok := o.(*unstructured.Unstructured); ok {
		return u, nil
	}
	b, err := json.Marshal(o)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	delete(m, "status") // the controllers' to write
	compact(m)
	return &unstructured.Unstructured{Object: m}, nil
}

func compact(m map[string]any) {
	for k, v := range m {
		switch x := v.(type) {
		case nil:
			delete(m, k)
		case string:
			if x == "" {
				delete(m, k)
			}
		case map[string]any:
			compact(x)
			if len(x) == 0 {
				delete(m, k)
			}
		case []any:
			for _, e := range x {
				if em, ok := e.(map[string]any); ok {
					compact(em)
				}
			}
			if len(x) == 0 {
				delete(m, k)
			}
		}
	}
}

// decodeYAML splits multi-document YAML into objects, skipping empty documents.
func decodeYAML(data []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, err
		}
		if len(m) == 0 {
			continue
		}
		out = append(out, &unstructured.Unstructured{Object: m})
	}
}

// applyRank orders objects so that what others depend on exists first.
func applyRank(u *unstructured.Unstructured) int {
	switch gk := u.GroupVersionKind().GroupKind(); {
	case gk.Kind == "Namespace" && gk.Group == "":
		return 0
	case gk.Kind == "CustomResourceDefinition":
		return 1
	case gk.Group == "vault.banzaicloud.com" || gk.Group == "operator.etcd.io":
		return 3
	default:
		return 2
	}
}

func sortForApply(objs []*unstructured.Unstructured) {
	slices.SortStableFunc(objs, func(a, b *unstructured.Unstructured) int { return applyRank(a) - applyRank(b) })
}
