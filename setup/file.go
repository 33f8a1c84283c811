package setup

// The file model. Field names are the YAML keys; every struct is decoded
// with unknown fields refused, so a typo is an error with its line number.

const (
	// APIVersion identifies a setup file, with Kind.
	APIVersion = "setup.okevault.io/v1alpha1"
	// Kind identifies a setup file, with APIVersion.
	Kind = "VaultSetup"

	// FieldManager owns the Kubernetes fields that setup applies.
	FieldManager = "vault-oke-setup"

	// DefaultOperatorChart is the bank-vaults vault-operator chart.
	DefaultOperatorChart = "oci://ghcr.io/bank-vaults/helm-charts/vault-operator"
	// DefaultOperatorChartVersion pins it.
	DefaultOperatorChartVersion = "1.23.0"
)

// File is a setup file.
type File struct {
	APIVersion string   `yaml:"apiVersion"`
	Kind       string   `yaml:"kind"`
	Metadata   Metadata `yaml:"metadata"`
	Spec       Spec     `yaml:"spec"`

	baseDir string // folder of the file, for relative references
}

// Metadata names the setup; the name labels what deploy creates.
type Metadata struct {
	Name string `yaml:"name"`
}

// Spec is what the setup makes. Prune (off by default) removes what an
// earlier run made and the file no longer declares.
type Spec struct {
	Deploy    *Deploy    `yaml:"deploy"`
	Configure *Configure `yaml:"configure"`
	Prune     bool       `yaml:"prune"`
}

// Deploy is the Kubernetes side.
type Deploy struct {
	// Namespace of the operators' release and the Vault cluster (default "vault").
	Namespace    string        `yaml:"namespace"`
	Operator     Operator      `yaml:"operator"`
	EtcdOperator *EtcdOperator `yaml:"etcdOperator"`
	Vault        VaultCluster  `yaml:"vault"`
	// ServiceAccounts are the workloads' identities that roles bind.
	ServiceAccounts []ServiceAccountRef `yaml:"serviceAccounts"`
}

// Operator is the bank-vaults vault-operator Helm release.
type Operator struct {
	Chart       string         `yaml:"chart"`   // default DefaultOperatorChart; or a local chart directory
	Version     string         `yaml:"version"` // default DefaultOperatorChartVersion (ignored for a local chart)
	ReleaseName string         `yaml:"releaseName"`
	Values      map[string]any `yaml:"values"`
}

// EtcdOperator is the official etcd operator; its install manifest is
// embedded (v0.2.0) unless Manifest names a file.
type EtcdOperator struct {
	Manifest string `yaml:"manifest"`
}

// VaultCluster is the Vault custom resource.
type VaultCluster struct {
	Name string `yaml:"name"` // default "vault"
	Size int32  `yaml:"size"` // default 3
	// Image is Vault's image (default docker.io/hashicorp/vault:1.21.4);
	// BankVaultsImage the operator's unseal and configure sidecar (default
	// ghcr.io/bank-vaults/bank-vaults:v1.33.1). Pinned, so a private registry
	// can be named here.
	Image           string  `yaml:"image"`
	BankVaultsImage string  `yaml:"bankVaultsImage"`
	ServiceAccount  string  `yaml:"serviceAccount"`
	TLS             TLS     `yaml:"tls"`
	Storage         Storage `yaml:"storage"`
	Unseal          Unseal  `yaml:"unseal"`
}

// TLS of the Vault listener. Enabled by default: the operator makes a CA
// and certificates unless ExistingSecret names them.
type TLS struct {
	Disabled       bool   `yaml:"disabled"`
	ExistingSecret string `yaml:"existingSecret"`
	// AdditionalHosts are names the certificate carries besides the
	// operator's own; <name>.<namespace>.svc is always added.
	AdditionalHost []string `yaml:"additionalHosts"`
	// CANamespaces get a copy of the CA (the Secret <name>-tls, key ca.crt)
	// from the operator (default [vault-csi-provider], the provider chart's
	// documented namespace; [] for none).
	CANamespaces []string `yaml:"caNamespaces"`
}

// Storage is "raft" (recommended for new clusters) or "etcd" (the scenario).
type Storage struct {
	Type string       `yaml:"type"`
	Raft *RaftStorage `yaml:"raft"`
	Etcd *EtcdStorage `yaml:"etcd"`
}

// RaftStorage is Vault's integrated storage on a volume per pod.
type RaftStorage struct {
	Size         string `yaml:"size"` // PVC size, default 10Gi
	StorageClass string `yaml:"storageClass"`
}

// EtcdStorage is an EtcdCluster made for Vault. The etcd operator v0.2.0
// serves etcd over plain HTTP only, so Vault reaches it over HTTP inside the
// cluster, restricted by a NetworkPolicy.
type EtcdStorage struct {
	Name string `yaml:"name"` // default "<vault>-etcd"
	Size int    `yaml:"size"` // default 3
	// The image is <imageRegistry>:<version> (default
	// gcr.io/etcd-development/etcd:v3.6.16).
	ImageRegistry string `yaml:"imageRegistry"`
	Version       string `yaml:"version"`
	StorageSize   string `yaml:"storageSize"` // default 1Gi
	StorageClass  string `yaml:"storageClass"`
	// ClientTLSSecret is refused: it was Vault's etcd client certificate,
	// which no etcd made by the operator v0.2.0 can check. Kept so that an
	// old file gets the reason rather than "unknown field".
	ClientTLSSecret string `yaml:"clientTLSSecret"`
}

// Unseal is how Vault is unsealed: "kubernetesSecret" keeps unseal keys and root token in a Secret
// (a lab); "ocikms" auto-unseals with OCI KMS (recovery keys in a Secret
// or, with bucket, encrypted in OCI Object Storage).
type Unseal struct {
	Type             string        `yaml:"type"`
	KubernetesSecret *SecretRef    `yaml:"kubernetesSecret"`
	OCIKMS           *OCIKMSUnseal `yaml:"ocikms"`
}

// SecretRef names a Secret in the deploy namespace.
type SecretRef struct {
	Name string `yaml:"name"`
}

// OCIKMSUnseal is Vault's seal "ocikms".
type OCIKMSUnseal struct {
	KeyID              string `yaml:"keyID"`
	CryptoEndpoint     string `yaml:"cryptoEndpoint"`
	ManagementEndpoint string `yaml:"managementEndpoint"`
	// AuthTypeAPIKey false (default): instance principal, as on OKE nodes.
	AuthTypeAPIKey bool `yaml:"authTypeAPIKey"`
	// RecoveryKeysSecret (default "<vault>-recovery-keys") holds the
	// recovery keys and root token bank-vaults made at init.
	RecoveryKeysSecret string `yaml:"recoveryKeysSecret"`
}

// ServiceAccountRef is a Kubernetes service account.
type ServiceAccountRef struct {
	Namespace string `yaml:"namespace"`
	Name      string `yaml:"name"`
}

// Configure is the Vault side.
type Configure struct {
	// VaultAddress: --vault-addr overrides it; without either, $VAULT_ADDR
	// when the command runs with --vault-env.
	VaultAddress   string         `yaml:"vaultAddress"`
	Auth           []AuthMethod   `yaml:"auth"`
	Policies       []Policy       `yaml:"policies"`
	SecretsEngines []SecretEngine `yaml:"secretsEngines"`
	Secrets        []InitSecret   `yaml:"secrets"`
	Audit          []AuditDevice  `yaml:"audit"`
	// RevokeRootToken (default true) applies when the token comes from the
	// operator's Secret: after a successful configure the root token is
	// revoked, and later runs generate a short-lived one from the unseal
	// keys. false keeps the stored root token valid.
	RevokeRootToken *bool `yaml:"revokeRootToken"`
}

// AuditDevice is a Vault audit device at Path (default: its type).
type AuditDevice struct {
	Type    string            `yaml:"type"` // file, socket or syslog
	Path    string            `yaml:"path"`
	Options map[string]string `yaml:"options"` // e.g. file_path: stdout
}

// AuthMethod is an auth method at Path (default: its type).
type AuthMethod struct {
	Type       string          `yaml:"type"` // kubernetes | jwt
	Path       string          `yaml:"path"`
	Kubernetes *KubernetesAuth `yaml:"kubernetes"`
	JWT        *JWTAuth        `yaml:"jwt"`
	Roles      []Role          `yaml:"roles"`
}

// KubernetesAuth is Vault's Kubernetes auth config. With no host Vault uses
// its in-cluster defaults (it runs in the cluster); with no reviewer Vault
// calls TokenReview as itself, which needs system:auth-delegator on its
// service account (deploy binds it).
type KubernetesAuth struct {
	Host       string    `yaml:"host"`
	CACert     string    `yaml:"caCert"`     // PEM
	CACertFile string    `yaml:"caCertFile"` // or a file
	Reviewer   *Reviewer `yaml:"reviewer"`
}

// Reviewer is the identity Vault calls TokenReview with, when Vault runs
// outside the cluster: a JWT from a file or an environment variable, or a
// service account (bound to system:auth-delegator) whose token setup
// requests at configure time.
type Reviewer struct {
	JWTFile        string             `yaml:"jwtFile"`
	JWTEnv         string             `yaml:"jwtEnv"`
	ServiceAccount *ServiceAccountRef `yaml:"serviceAccount"`
	TTL            string             `yaml:"ttl"` // of a requested token, default 24h
}

// JWTAuth verifies service-account tokens offline.
type JWTAuth struct {
	OIDCDiscoveryURL string   `yaml:"oidcDiscoveryURL"`
	JWKSURL          string   `yaml:"jwksURL"`
	PublicKeys       []string `yaml:"publicKeys"`
	PublicKeyFiles   []string `yaml:"publicKeyFiles"`
	BoundIssuer      string   `yaml:"boundIssuer"`
}

// Role binds service accounts to policies.
type Role struct {
	Name            string   `yaml:"name"`
	ServiceAccounts []string `yaml:"serviceAccounts"`
	Namespaces      []string `yaml:"namespaces"`
	Audience        string   `yaml:"audience"`
	Policies        []string `yaml:"policies"`
	TTL             string   `yaml:"ttl"`    // default 1h
	MaxTTL          string   `yaml:"maxTTL"` // default: Vault's
	Verify          *Verify  `yaml:"verify"`
}

// Verify says what verify checks for a role, beyond login and policies.
type Verify struct {
	Read        []string `yaml:"read"`        // API paths that must be readable
	DeniedWrite []string `yaml:"deniedWrite"` // API paths that must not be writable
	// Outsider (default "default") is a service account in the role's first
	// namespace that must be refused.
	Outsider string `yaml:"outsider"`
}

// Policy is an ACL policy, inline or from a file.
type Policy struct {
	Name string `yaml:"name"`
	HCL  string `yaml:"hcl"`
	File string `yaml:"file"`
}

// SecretEngine is a secrets engine at Path.
type SecretEngine struct {
	Path    string            `yaml:"path"`
	Type    string            `yaml:"type"`    // kv, or any engine type
	Version int               `yaml:"version"` // KV only: 1 or 2 (default 2)
	Options map[string]string `yaml:"options"`
}

// InitSecret is written once, if absent. Values come from files or the
// environment; inline values only with allowInline, for labs.
type InitSecret struct {
	Path        string                 `yaml:"path"` // "<kv mount>/<path>", e.g. secret/testapp
	Data        map[string]SecretValue `yaml:"data"`
	AllowInline bool                   `yaml:"allowInline"`
}

// SecretValue is one key's source.
type SecretValue struct {
	File  string `yaml:"file"`
	Env   string `yaml:"env"`
	Value string `yaml:"value"`
}
