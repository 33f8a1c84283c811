package deploy

// Spec is the resolved, validated Kubernetes side of a setup.
type Spec struct {
	// Name is the setup's name; it labels every object.
	Name      string
	Namespace string
	Operator  Chart
	// EtcdOperatorManifest is the etcd operator's install manifest; nil
	// installs no etcd operator.
	EtcdOperatorManifest []byte
	Vault                Vault
	// ServiceAccounts are workload identities to create.
	ServiceAccounts []NamespacedName
	// AuthDelegators are reviewer service accounts to create and bind to
	// system:auth-delegator (for a Vault outside the cluster).
	AuthDelegators []NamespacedName
}

// NamespacedName names a namespaced object.
type NamespacedName struct{ Namespace, Name string }

// Chart is a Helm chart: an oci:// or repository reference with Version, or
// a local directory.
type Chart struct {
	Ref         string
	Version     string
	ReleaseName string
	Values      map[string]any
}

// Vault is the Vault custom resource's settings.
type Vault struct {
	Name               string
	Size               int32
	Image              string
	ServiceAccount     string
	TLSDisabled        bool
	ExistingTLSSecret  string
	TLSAdditionalHosts []string
	Raft               *Raft // one of Raft and Etcd
	Etcd               *Etcd
	// UnsealSecret is the Secret for unseal keys (or, with OCIKMS, recovery
	// keys) and the root token.
	UnsealSecret string
	OCIKMS       *OCIKMS
}

// Raft is integrated storage on a PersistentVolumeClaim per pod.
type Raft struct {
	Size         string
	StorageClass string
}

// Etcd is an EtcdCluster for Vault.
type Etcd struct {
	Name            string
	Size            int
	Version         string
	ClientTLSSecret string
	StorageSize     string
}

// OCIKMS is Vault's seal "ocikms" (auto-unseal).
type OCIKMS struct {
	KeyID              string
	CryptoEndpoint     string
	ManagementEndpoint string
	AuthTypeAPIKey     bool
}
