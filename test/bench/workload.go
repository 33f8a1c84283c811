package main

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/okevault/vault-csi-provider/test/testbed"
)

// The names the workload uses in Kubernetes and Vault.
const (
	namespace = "bench"     // every pod and service account
	kvMount   = "bench"     // KV v2 secrets engine
	pkiMount  = "bench-pki" // PKI engine of -dynamic
	// pkiIssue is the -dynamic object's path: its role has generate_lease.
	pkiIssue = pkiMount + "/issue/bench"
	// certPrefix is what the -dynamic object's file starts with; its value
	// is new on every issue, so only its shape is checked.
	certPrefix = "-----BEGIN CERTIFICATE-----"
	authMount  = "kubernetes" // Kubernetes auth method
	audience   = "vault"      // the tokens' audience, as the CSIDriver's tokenRequests
	// secretKeys and valueBytes make a secret of about 1 KiB: 5 keys of 200 characters.
	secretKeys = 5
	valueBytes = 100
	// tokenTTL is what kubelet asks for when tokenRequests sets no expirationSeconds.
	tokenTTL = time.Hour
)

// plan is the workload: S identities (a service account, its Vault role and
// policy, and its SecretProviderClass), P pods spread round-robin over them,
// and the KV v2 secrets they read.
type plan struct {
	identities []*identity
	pods       []*pod
	// secrets holds each secret's data by its API path (bench/data/...).
	secrets map[string]map[string]string
	// dynamic: each class also mounts a certificate whose issue is a lease.
	dynamic bool
}

// identity is a service account with a Vault role, and the class its pods
// mount: like a Deployment, all its pods mount the same objects.
type identity struct {
	sa, role, policy, class string
	objects                 []object
	// paths are the distinct API paths the objects read: the reads a mount needs.
	paths []string
}

// object is one entry of the class's objects parameter.
type object struct {
	Name   string         `yaml:"objectName"`
	Path   string         `yaml:"secretPath"`
	Key    string         `yaml:"secretKey"`
	Method string         `yaml:"method,omitempty"`
	Args   map[string]any `yaml:"secretArgs,omitempty"`
}

// dynamic reports whether o is the -dynamic certificate.
func (o object) dynamic() bool { return o.Path == pkiIssue }

// pod is one pod: its Kubernetes object and the token kubelet would send.
type pod struct {
	name, uid  string
	id         *identity
	token      string
	expires    time.Time
	targetPath string
}

// newPlan lays out the workload of cfg. Object j of a class reads, for even
// j, a key of the service account's own secret and, for odd j, a key of a
// shared secret, chosen so that neighbouring service accounts share some; a
// class of O objects thus reads ceil(O/2) keys of its own secret (one path)
// and floor(O/2) shared paths.
func newPlan(cfg Config) (*plan, error) {
	p := &plan{secrets: map[string]map[string]string{}, dynamic: cfg.Dynamic}
	addSecret := func(path string) error {
		if _, ok := p.secrets[path]; ok {
			return nil
		}
		data := make(map[string]string, secretKeys)
		for k := range secretKeys {
			v, err := randomValue()
			if err != nil {
				return err
			}
			data[fmt.Sprintf("key-%d", k)] = v
		}
		p.secrets[path] = data
		return nil
	}
	for k := range cfg.Secrets {
		if err := addSecret(sharedPath(k)); err != nil {
			return nil, err
		}
	}
	for s := range cfg.ServiceAccounts {
		sa := fmt.Sprintf("sa-%d", s)
		id := &identity{sa: sa, role: "bench-" + sa, policy: "bench-" + sa, class: "bench-" + sa}
		own := kvMount + "/data/own/" + sa
		if err := addSecret(own); err != nil {
			return nil, err
		}
		seen := map[string]bool{}
		for j := range cfg.Objects {
			slot := j / 2
			o := object{Key: fmt.Sprintf("key-%d", slot%secretKeys)}
			if j%2 == 0 {
				o.Path = own
				o.Name = fmt.Sprintf("%02d-own-%s", j, o.Key)
			} else {
				k := (s + slot) % cfg.Secrets
				o.Path = sharedPath(k)
				o.Name = fmt.Sprintf("%02d-shared-%d-%s", j, k, o.Key)
			}
			id.objects = append(id.objects, o)
			if !seen[o.Path] {
				seen[o.Path] = true
				id.paths = append(id.paths, o.Path)
			}
		}
		if cfg.Dynamic {
			id.objects = append(id.objects, object{Name: "dynamic.crt", Path: pkiIssue, Key: "certificate", Method: "PUT",
				Args: map[string]any{"common_name": sa + ".bench.example.com", "ttl": "1h"}})
		}
		p.identities = append(p.identities, id)
	}
	for i := range cfg.Pods {
		p.pods = append(p.pods, &pod{name: fmt.Sprintf("pod-%d", i), id: p.identities[i%cfg.ServiceAccounts]})
	}
	return p, nil
}

func sharedPath(k int) string { return fmt.Sprintf("%s/data/shared/%d", kvMount, k) }

// randomValue is valueBytes random bytes, hex-encoded.
func randomValue() (string, error) {
	b := make([]byte, valueBytes)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// policyHCL lets the identity read exactly the paths its class reads, and
// issue its -dynamic certificate.
func (id *identity) policyHCL() string {
	var b strings.Builder
	for _, p := range id.paths {
		fmt.Fprintf(&b, "path %q {\n  capabilities = [\"read\"]\n}\n", p)
	}
	if slices.ContainsFunc(id.objects, object.dynamic) {
		fmt.Fprintf(&b, "path %q {\n  capabilities = [\"update\"]\n}\n", pkiIssue)
	}
	return b.String()
}

// want is what the provider must answer for each object: the key's value,
// or certPrefix for the -dynamic certificate.
func (p *plan) want(id *identity) map[string]string {
	w := make(map[string]string, len(id.objects))
	for _, o := range id.objects {
		if o.dynamic() {
			w[o.Name] = certPrefix
			continue
		}
		w[o.Name] = p.secrets[o.Path][o.Key]
	}
	return w
}

// floorReads is the reads the floor makes: each identity's distinct paths once.
func (p *plan) floorReads() int {
	n := 0
	for _, id := range p.identities {
		n += len(id.paths)
	}
	return n
}

// mountReads is the reads a provider that reads every distinct path of each
// mount once (and shares nothing across mounts) makes in one pass.
func (p *plan) mountReads() int {
	n := 0
	for _, pd := range p.pods {
		n += len(pd.id.paths)
	}
	return n
}

// setTargetPath places the pod's volume where kubelet would, under root.
func (pd *pod) setTargetPath(root string) {
	pd.targetPath = filepath.Join(root, "pods", pd.uid, "volumes", "kubernetes.io~csi", "secrets-store-inline", "mount")
}

// classParameters are the SecretProviderClass's spec.parameters.
func (id *identity) classParameters(vaultAddr string) (map[string]string, error) {
	objects, err := yaml.Marshal(id.objects)
	if err != nil {
		return nil, fmt.Errorf("objects of %s: %w", id.class, err)
	}
	return map[string]string{
		"roleName":     id.role,
		"vaultAddress": vaultAddr,
		"objects":      string(objects),
	}, nil
}

// Attribute keys the driver and kubelet add to the class's parameters.
const (
	attrClass          = "secretProviderClass"
	attrPodName        = "csi.storage.k8s.io/pod.name"
	attrPodNamespace   = "csi.storage.k8s.io/pod.namespace"
	attrPodUID         = "csi.storage.k8s.io/pod.uid"
	attrServiceAccount = "csi.storage.k8s.io/serviceAccount.name"
	attrEphemeral      = "csi.storage.k8s.io/ephemeral"
	attrTokens         = testbed.TokensAttribute
)

// attributes is the MountRequest attributes JSON the driver sends for pd.
// On NodePublishVolume (publish) the driver copies the pod's volume
// attributes and kubelet's pod information over the class's parameters; its
// rotation reconciler sets the pod fields itself and has no volume
// attributes (no secretProviderClass, no ephemeral).
func (pd *pod) attributes(params map[string]string, publish bool) (string, error) {
	attrs := make(map[string]string, len(params)+7)
	for k, v := range params {
		attrs[k] = v
	}
	attrs[attrPodName] = pd.name
	attrs[attrPodNamespace] = namespace
	attrs[attrPodUID] = pd.uid
	attrs[attrServiceAccount] = pd.id.sa
	if publish {
		attrs[attrClass] = pd.id.class
		attrs[attrEphemeral] = "true"
	}
	tokens, err := json.Marshal(map[string]any{audience: map[string]string{
		"token":               pd.token,
		"expirationTimestamp": pd.expires.UTC().Format(time.RFC3339),
	}})
	if err != nil {
		return "", err
	}
	attrs[attrTokens] = string(tokens)
	b, err := json.Marshal(attrs)
	return string(b), err
}

// tokenExpiry reads a JWT's exp claim, as the TokenRequest status reports it.
func tokenExpiry(jwt string) (time.Time, error) {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return time.Time{}, fmt.Errorf("token is not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return time.Time{}, fmt.Errorf("token payload: %w", err)
	}
	var c struct {
		Exp int64 `json:"exp"`
	}
	if err := json.Unmarshal(payload, &c); err != nil || c.Exp == 0 {
		return time.Time{}, fmt.Errorf("token has no exp claim")
	}
	return time.Unix(c.Exp, 0), nil
}
