package deploy

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	vaultv1alpha1 "github.com/bank-vaults/vault-operator/pkg/apis/vault/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	extv1beta1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1beta1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
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

	etcdTLSDir = "/etcd/tls"
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
	for _, ns := range namespaces {
		if err := add(&corev1.Namespace{TypeMeta: typeMeta("v1", "Namespace"), ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return nil, err
		}
	}

	chartObjs, err := RenderChart(ctx, s.Operator, s.Namespace)
	if err != nil {
		return nil, fmt.Errorf("render chart %s: %w", s.Operator.Ref, err)
	}
	objs = append(objs, chartObjs...)

	if s.EtcdOperatorManifest != nil {
		etcdObjs, err := decodeYAML(s.EtcdOperatorManifest)
		if err != nil {
			return nil, fmt.Errorf("etcd operator manifest: %w", err)
		}
		objs = append(objs, etcdObjs...)
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
	}
	v, err := VaultObject(s)
	if err != nil {
		return nil, err
	}
	if err := add(v); err != nil {
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
	config := map[string]any{
		"listener": map[string]any{"tcp": listener},
		"api_addr": fmt.Sprintf("%s://%s.%s:8200", scheme, v.Name, s.Namespace),
		// bank-vaults templates ${.Env.POD_NAME} per pod.
		"cluster_addr": "https://${.Env.POD_NAME}:8201",
		"ui":           true,
	}
	spec := vaultv1alpha1.VaultSpec{
		Size:                       v.Size,
		Image:                      v.Image,
		ServiceAccount:             v.ServiceAccount,
		ServiceType:                string(corev1.ServiceTypeClusterIP),
		ServiceRegistrationEnabled: true,
		ExistingTLSSecretName:      v.ExistingTLSSecret,
		TLSAdditionalHosts:         v.TLSAdditionalHosts,
		StatsDDisabled:             true,
		UnsealConfig: vaultv1alpha1.UnsealConfig{
			Kubernetes: vaultv1alpha1.KubernetesUnsealConfig{SecretNamespace: s.Namespace, SecretName: v.UnsealSecret},
		},
	}
	switch {
	case v.Raft != nil:
		config["storage"] = map[string]any{"raft": map[string]any{"path": "/vault/file"}}
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
		// The scenario's storage: etcd v3 with HA, over TLS with the client
		// certificate the etcd cluster's CA signed.
		config["storage"] = map[string]any{"etcd": map[string]any{
			"address":       fmt.Sprintf("https://%s.%s.svc:2379", v.Etcd.Name, s.Namespace),
			"etcd_api":      "v3",
			"ha_enabled":    "true",
			"path":          "/vault/",
			"tls_ca_file":   etcdTLSDir + "/ca.crt",
			"tls_cert_file": etcdTLSDir + "/tls.crt",
			"tls_key_file":  etcdTLSDir + "/tls.key",
		}}
		spec.Volumes = []corev1.Volume{{Name: "etcd-tls", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: v.Etcd.ClientTLSSecret}}}}
		spec.VolumeMounts = []corev1.VolumeMount{{Name: "etcd-tls", MountPath: etcdTLSDir, ReadOnly: true}}
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

// etcdCluster is an operator.etcd.io/v1alpha1 EtcdCluster with TLS on,
// certificates made by the operator ("auto").
func etcdCluster(s *Spec) *unstructured.Unstructured {
	e := s.Vault.Etcd
	spec := map[string]any{
		"size":    int64(e.Size),
		"version": e.Version,
		"tls": map[string]any{
			"provider": "auto",
			"providerCfg": map[string]any{"autoCfg": map[string]any{
				"commonName": e.Name,
				"altNames": map[string]any{"dnsNames": []any{
					e.Name, e.Name + "." + s.Namespace + ".svc", "*." + e.Name + "." + s.Namespace + ".svc",
				}},
			}},
		},
	}
	if e.StorageSize != "" {
		spec["storageSpec"] = map[string]any{"accessModes": "ReadWriteOnce", "volumeSizeRequest": e.StorageSize}
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
// with name ""), which a server-side apply would otherwise claim as ours.
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
