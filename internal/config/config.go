package config

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/okevault/vault-csi-provider/internal/redact"
)

// AuthType is the Vault auth method used to log in; both take the body {role, jwt}.
type AuthType string

// The auth methods: Kubernetes (TokenReview) and JWT (signature checks).
const (
	AuthKubernetes AuthType = "kubernetes"
	AuthJWT        AuthType = "jwt"
)

// Encoding says how the value read from Vault is decoded before it is written.
type Encoding string

// The encodings of the value in Vault: text as is, or decoded to bytes.
const (
	EncodingUTF8   Encoding = "utf-8"
	EncodingBase64 Encoding = "base64"
	EncodingHex    Encoding = "hex"
)

// Format says what is written when no secretKey picks a single value.
type Format string

const (
	// FormatEnvelope writes the whole Vault response as JSON, like the peer.
	FormatEnvelope Format = ""
	// FormatData writes only the secret's key/value map (data.data for KV v2).
	FormatData Format = "data"
	// FormatPEMSplit writes a PKI issue/sign response as objectName/tls.crt,
	// tls.key, ca.crt and ca-chain.crt.
	FormatPEMSplit Format = "pem-split"
	// FormatPEMBundle writes a PKI issue response as one file: the key, then
	// the certificate and its chain, as a kubernetes.io/tls Secret takes it.
	FormatPEMBundle Format = "pem-bundle"
)

// TLS is how the provider reaches Vault over TLS.
type TLS struct {
	CACert, CADirectory, ServerName, ClientCert, ClientKey string
	SkipVerify                                             bool
}

// Defaults are the provider-wide settings from the environment and flags (env < flags < SecretProviderClass parameters).
type Defaults struct {
	VaultAddress   string // "" means https://127.0.0.1:8200, the peer's default
	VaultNamespace string
	AuthMountPath  string // "" means "kubernetes" (or "jwt" when vaultAuthType is jwt)
	TLS            TLS
	// AllowedAddresses are the only Vault addresses a mount may name;
	// empty: any.
	AllowedAddresses Addresses
	// AllowedTLSDirectories are where a class's TLS files may be
	// (-allowed-tls-directories), besides the TLS flags' own paths.
	AllowedTLSDirectories []string
}

// Pod is the pod the volume is mounted for, as the driver reports it.
type Pod struct{ Name, Namespace, UID, ServiceAccount string }

// Mount is a validated MountRequest.
type Mount struct {
	Role                string
	VaultAddress        string
	VaultNamespace      string
	AuthType            AuthType
	AuthMountPath       string // mount name without "auth/" prefix or slashes, e.g. "kubernetes"
	Audience            string // default "vault"
	TLS                 TLS
	Objects             []Object
	Pod                 Pod
	SecretProviderClass string
	// Tokens are the pod's service-account tokens by audience, from csi.storage.k8s.io/serviceAccount.tokens.
	Tokens     map[string]Token
	TargetPath string
	// UnknownParams are the attribute keys this provider does not read,
	// sorted; only names, so they can be logged.
	UnknownParams []string
}

// Unknown returns the attribute keys this provider does not read, sorted.
func (m *Mount) Unknown() []string { return slices.Clone(m.UnknownParams) }

// Token is a service-account token the driver obtained for the pod.
type Token struct {
	Value     redact.Secret
	ExpiresAt time.Time // zero when absent
}

const (
	// DefaultVaultAddress is the peer's default Vault address.
	DefaultVaultAddress = "https://127.0.0.1:8200"
	defaultAudience     = "vault"
)

// Attribute keys: the peer's SecretProviderClass parameters, our additions,
// and what the driver adds.
const (
	keyRole            = "roleName"
	keyAddress         = "vaultAddress"
	keyNamespace       = "vaultNamespace"
	keyKubernetesMount = "vaultKubernetesMountPath"
	keyAuthMount       = "vaultAuthMountPath"
	keyAuthType        = "vaultAuthType"
	keyAudience        = "audience"
	keyCACert          = "vaultCACertPath"
	keyCADirectory     = "vaultCADirectory"
	keyServerName      = "vaultTLSServerName"
	keyClientCert      = "vaultTLSClientCertPath"
	keyClientKey       = "vaultTLSClientKeyPath"
	keySkipVerify      = "vaultSkipTLSVerify"
	keyObjects         = "objects"
	keyObjectFormat    = "objectFormat"
	keyClass           = "secretProviderClass"
	keyPodName         = "csi.storage.k8s.io/pod.name"
	keyPodNamespace    = "csi.storage.k8s.io/pod.namespace"
	keyPodUID          = "csi.storage.k8s.io/pod.uid"
	keyServiceAccount  = "csi.storage.k8s.io/serviceAccount.name"
	keyEphemeral       = "csi.storage.k8s.io/ephemeral"
	keyTokens          = "csi.storage.k8s.io/serviceAccount.tokens" //nolint:gosec // G101: an attribute name, not a credential
)

// Error.Param values for the rest of the MountRequest.
const (
	paramTargetPath = "targetPath"
	paramPermission = "permission"
	paramAttributes = "attributes"
)

// maxAttributes bounds the attributes JSON. The gRPC server refuses larger
// requests already (4 MiB, its default); the bound is repeated here so the
// parser never decodes more, however the server is configured.
const maxAttributes = 4 << 20

// maxMode is the largest file mode accepted: permission bits only, since
// setuid, setgid and sticky make no sense for secret files.
const maxMode uint64 = 0o777

var knownKeys = map[string]bool{
	keyRole: true, keyAddress: true, keyNamespace: true, keyKubernetesMount: true,
	keyAuthMount: true, keyAuthType: true, keyAudience: true, keyCACert: true,
	keyCADirectory: true, keyServerName: true, keyClientCert: true, keyClientKey: true,
	keySkipVerify: true, keyObjects: true, keyObjectFormat: true, keyClass: true,
	keyPodName: true, keyPodNamespace: true, keyPodUID: true, keyServiceAccount: true,
	keyEphemeral: true, keyTokens: true,
}

// Parse validates a MountRequest's attributes JSON, target path and permission (decimal string like "420").
// Every error it returns is an *Error.
func Parse(attributes, targetPath, permission string, d Defaults) (*Mount, error) {
	if len(attributes) > maxAttributes {
		return nil, &Error{Param: paramAttributes, Reason: fmt.Sprintf("are %d bytes, more than the %d a mount may carry; a SecretProviderClass should list objects, not hold data", len(attributes), maxAttributes)}
	}
	var attrs map[string]string
	if err := json.Unmarshal([]byte(attributes), &attrs); err != nil {
		// The JSON error would quote the offending input, which may be a token.
		return nil, &Error{Param: paramAttributes, Reason: "must be a JSON object whose values are all strings"}
	}
	if targetPath == "" {
		return nil, &Error{Param: paramTargetPath, Reason: "is required: the directory the driver mounts the volume at"}
	}
	mode, err := parsePermission(permission)
	if err != nil {
		return nil, err
	}

	m := &Mount{
		Role:                attrs[keyRole],
		SecretProviderClass: attrs[keyClass],
		TargetPath:          targetPath,
		Pod: Pod{
			Name:           attrs[keyPodName],
			Namespace:      attrs[keyPodNamespace],
			UID:            attrs[keyPodUID],
			ServiceAccount: attrs[keyServiceAccount],
		},
	}
	if m.Pod.Namespace == "" {
		return nil, &Error{Param: keyPodNamespace, Reason: "is required: the driver sends it with every mount; is the CSIDriver object's podInfoOnMount true?"}
	}
	if m.Pod.Name == "" {
		return nil, &Error{Param: keyPodName, Reason: "is required: the driver sends it with every mount; is the CSIDriver object's podInfoOnMount true?"}
	}
	// The pod's token is matched against these before any login
	// (internal/auth): without them there is nothing to match.
	if m.Pod.ServiceAccount == "" {
		return nil, &Error{Param: keyServiceAccount, Reason: "is required: the driver sends it with every mount; is the CSIDriver object's podInfoOnMount true?"}
	}
	if m.Pod.UID == "" {
		return nil, &Error{Param: keyPodUID, Reason: "is required: the driver sends it with every mount; is the CSIDriver object's podInfoOnMount true?"}
	}
	if m.Role == "" {
		return nil, &Error{Param: keyRole, Reason: "is required: the Vault role to log in as"}
	}

	// An empty value counts as unset everywhere: templated classes often
	// render optional parameters as "".
	if err := m.parseVault(attrs, d); err != nil {
		return nil, err
	}
	if err := m.parseTLS(attrs, d); err != nil {
		return nil, err
	}

	format, ok := parseFormat(attrs[keyObjectFormat])
	if !ok {
		return nil, &Error{Param: keyObjectFormat, Reason: "must be \"json\" (the whole Vault response, the default) or \"data\" (only the secret's key/value map), not " + quote(attrs[keyObjectFormat])}
	}
	raw, ok := attrs[keyObjects]
	if !ok || strings.TrimSpace(raw) == "" {
		return nil, &Error{Param: keyObjects, Reason: "is required: a YAML list of objects, each with objectName and secretPath"}
	}
	if m.Objects, err = parseObjects(raw, format, mode); err != nil {
		return nil, err
	}

	if m.Tokens, err = parseTokens(attrs[keyTokens]); err != nil {
		return nil, err
	}

	for k := range attrs {
		if !knownKeys[k] {
			m.UnknownParams = append(m.UnknownParams, k)
		}
	}
	slices.Sort(m.UnknownParams)
	return m, nil
}

// parseVault settles where and how to log in.
func (m *Mount) parseVault(attrs map[string]string, d Defaults) error {
	m.VaultAddress = firstSet(attrs[keyAddress], d.VaultAddress, DefaultVaultAddress)
	if !validAddress(m.VaultAddress) {
		// The address is not echoed: it may carry user:password@.
		return &Error{Param: keyAddress, Reason: `must be an http(s) URL with a host, such as "https://vault.example.com:8200", or a unix socket URL such as "unix:///var/run/vault.sock", without credentials (the provider's -vault-addr or VAULT_ADDR applies when the parameter is unset)`}
	}
	if u, _ := url.Parse(m.VaultAddress); !d.AllowedAddresses.Allows(u) { // validAddress parsed it
		return &Error{Param: keyAddress, Reason: fmt.Sprintf("%s is not an address this provider may reach; its operator allows only %s (-allowed-vault-addresses: scheme, host and port must match exactly)", quote(origin(u)), d.AllowedAddresses)}
	}
	m.VaultNamespace = firstSet(attrs[keyNamespace], d.VaultNamespace)
	m.Audience = firstSet(attrs[keyAudience], defaultAudience)

	switch t := attrs[keyAuthType]; strings.ToLower(t) {
	case "", string(AuthKubernetes):
		m.AuthType = AuthKubernetes
	case string(AuthJWT):
		m.AuthType = AuthJWT
	default:
		return &Error{Param: keyAuthType, Reason: `must be "kubernetes" (the default) or "jwt", not ` + quote(t)}
	}

	k8sMount, authMount := attrs[keyKubernetesMount], attrs[keyAuthMount]
	if k8sMount != "" && authMount != "" {
		return &Error{Param: keyAuthMount, Reason: "is set together with " + keyKubernetesMount + ", its older name; set only one"}
	}
	param, mount := keyAuthMount, authMount
	if k8sMount != "" {
		param, mount = keyKubernetesMount, k8sMount
	}
	mount = firstSet(mount, d.AuthMountPath, string(m.AuthType))
	var ok bool
	if m.AuthMountPath, ok = normaliseAuthMount(mount); !ok {
		return &Error{Param: param, Reason: `must name a Vault auth mount such as "kubernetes" or "auth/cluster-a/kubernetes" (no empty, "." or ".." segments, no "?", "#", "%" or "\"; the provider's -vault-mount applies when unset), not ` + quote(mount)}
	}
	return nil
}

// parseTLS layers the class's TLS parameters over the provider's. The
// provider's client certificate is its own identity to its own Vault: a
// class naming another address does not get it.
func (m *Mount) parseTLS(attrs map[string]string, d Defaults) error {
	m.TLS = d.TLS
	ownVault := m.atProvidersVault(d)
	if !ownVault {
		m.TLS.ClientCert, m.TLS.ClientKey = "", ""
	}
	// The CA pair and the client pair are each taken from one place: mixing
	// a class's CA directory with the provider's CA file would let the
	// provider's file win (it takes precedence) and silently ignore the
	// class, and half a client pair from each side is never what was meant.
	if ca, dir := attrs[keyCACert], attrs[keyCADirectory]; ca != "" || dir != "" {
		m.TLS.CACert, m.TLS.CADirectory = ca, dir
	}
	if v := attrs[keyServerName]; v != "" {
		m.TLS.ServerName = v
	}
	if cert, key := attrs[keyClientCert], attrs[keyClientKey]; cert != "" || key != "" {
		m.TLS.ClientCert, m.TLS.ClientKey = cert, key
	}
	if v := attrs[keySkipVerify]; v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return &Error{Param: keySkipVerify, Reason: `must be "true" or "false", not ` + quote(v)}
		}
		m.TLS.SkipVerify = b
	}
	switch {
	case m.TLS.ClientCert != "" && m.TLS.ClientKey == "":
		return &Error{Param: keyClientKey, Reason: "is required when " + keyClientCert + " is set: a client certificate needs its private key"}
	case m.TLS.ClientKey != "" && m.TLS.ClientCert == "":
		return &Error{Param: keyClientCert, Reason: "is required when " + keyClientKey + " is set: a client key needs its certificate"}
	}
	return checkTLSFiles(attrs, d, ownVault)
}

func parsePermission(s string) (os.FileMode, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n > maxMode {
		return 0, &Error{Param: paramPermission, Reason: `must be a decimal file mode no greater than 511 (0777), such as "420" for 0644, not ` + quote(s)}
	}
	return os.FileMode(n), nil
}

// tokenEntry is one audience's token as the driver serialises it
// (authenticationv1.TokenRequestStatus).
type tokenEntry struct {
	Token               string `json:"token"`
	ExpirationTimestamp string `json:"expirationTimestamp"`
}

func parseTokens(s string) (map[string]Token, error) {
	tokens := map[string]Token{}
	if s == "" {
		return tokens, nil
	}
	var entries map[string]tokenEntry
	if err := json.Unmarshal([]byte(s), &entries); err != nil {
		// Never the JSON error: it can quote the attribute, i.e. a token.
		return nil, &Error{Param: keyTokens, Reason: `must be a JSON object of audience to {"token", "expirationTimestamp"}, as the driver sends it`}
	}
	for aud, e := range entries {
		if e.Token == "" {
			return nil, &Error{Param: keyTokens, Reason: "has no token for audience " + quote(aud)}
		}
		t := Token{Value: redact.New(e.Token)}
		if e.ExpirationTimestamp != "" {
			exp, err := time.Parse(time.RFC3339, e.ExpirationTimestamp)
			if err != nil {
				return nil, &Error{Param: keyTokens, Reason: "has an expirationTimestamp that is not RFC 3339 for audience " + quote(aud)}
			}
			t.ExpiresAt = exp
		}
		tokens[aud] = t
	}
	return tokens, nil
}

func firstSet(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

func validAddress(s string) bool {
	u, err := url.Parse(s)
	if err != nil || u.User != nil {
		return false
	}
	switch u.Scheme {
	case "http", "https":
		return u.Host != ""
	case "unix":
		return u.Path != ""
	}
	return false
}

// normaliseAuthMount accepts the spellings users write ("kubernetes",
// "/kubernetes/", "auth/kubernetes") and refuses anything that could steer
// the login request to another Vault path.
func normaliseAuthMount(s string) (string, bool) {
	s = strings.TrimLeft(s, "/")
	s = strings.TrimPrefix(s, "auth/")
	s = strings.Trim(s, "/")
	if s == "" || strings.ContainsAny(s, "?#%\\") {
		return "", false
	}
	for seg := range strings.SplitSeq(s, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return "", false
		}
	}
	if strings.ContainsFunc(s, isControl) {
		return "", false
	}
	return s, true
}
