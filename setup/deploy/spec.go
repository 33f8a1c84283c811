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
	Name            string
	Size            int32
	Image           string
	BankVaultsImage string
	ServiceAccount  string
	TLSDisabled     bool
	// ExistingTLSSecret names the listener's certificate; empty: the
	// operator makes a CA and the Secret <Name>-tls.
	ExistingTLSSecret string
	// TLSAdditionalHosts are added to the names of the operator's
	// certificate (Render adds <Name>.<Namespace>.svc).
	TLSAdditionalHosts []string
	// CANamespaces receive a copy of the CA Secret from the operator.
	CANamespaces []string
	Raft         *Raft // one of Raft and Etcd
	Etcd         *Etcd
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

// Etcd is an EtcdCluster for Vault, reached over plain HTTP (the etcd
// operator v0.2.0 knows no other way).
type Etcd struct {
	Name          string
	Size          int
	ImageRegistry string
	Version       string
	StorageSize   string
	StorageClass  string
}

// OCIKMS is Vault's seal "ocikms" (auto-unseal).
type OCIKMS struct {
	KeyID              string
	CryptoEndpoint     string
	ManagementEndpoint string
	AuthTypeAPIKey     bool
}
