package setup

import (
	"fmt"
	"os"
	"regexp"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/okevault/vault-csi-provider/setup/deploy"
)

// The images deploy runs unless the file names others; the test bed
// builds exactly these.
const (
	defaultNamespace         = "vault"
	defaultVaultImage        = "docker.io/hashicorp/vault:1.21.4"
	defaultBankVaultsImage   = "ghcr.io/bank-vaults/bank-vaults:v1.33.1"
	defaultEtcdRegistry      = "gcr.io/etcd-development/etcd"
	defaultEtcd              = "v3.6.16"
	defaultProviderNamespace = "vault-csi-provider"
)

var ocidKey = regexp.MustCompile(`^ocid1\.key\.[a-z0-9-]+\.[a-z0-9-]*\.[a-z0-9-]+\.[a-z0-9]+$`)

// pinnedImage reports whether ref names a tag or a digest: an image
// without one is whatever "latest" is on the day a node pulls it.
func pinnedImage(ref string) bool {
	if strings.Contains(ref, "@sha256:") {
		return true
	}
	_, tag, ok := strings.Cut(ref[strings.LastIndex(ref, "/")+1:], ":")
	return ok && tag != "" && tag != "latest"
}

func prepareDeploy(f *File, o Overrides, errs *fieldErrs) *deploy.Spec {
	d := f.Spec.Deploy
	s := &deploy.Spec{Name: f.Metadata.Name, Namespace: firstNonEmpty(d.Namespace, defaultNamespace)}
	if !dnsLabel.MatchString(s.Namespace) {
		errs.add("spec.deploy.namespace", "%q is not a DNS label", s.Namespace)
	}

	op := d.Operator
	s.Operator = deploy.Chart{
		Ref:         firstNonEmpty(o.OperatorChart, op.Chart, DefaultOperatorChart),
		Version:     firstNonEmpty(op.Version, DefaultOperatorChartVersion),
		ReleaseName: firstNonEmpty(op.ReleaseName, "vault-operator"),
		Values:      op.Values,
	}
	if o.OperatorChart == "" && op.Chart != "" && !strings.Contains(op.Chart, "://") {
		s.Operator.Ref = f.path(op.Chart)
	}
	if !strings.Contains(s.Operator.Ref, "://") {
		if _, err := os.Stat(s.Operator.Ref); err != nil {
			errs.add("spec.deploy.operator.chart", "%v", err)
		}
	}

	v := d.Vault
	vs := deploy.Vault{
		Name:               firstNonEmpty(v.Name, "vault"),
		Size:               v.Size,
		Image:              firstNonEmpty(v.Image, defaultVaultImage),
		BankVaultsImage:    firstNonEmpty(v.BankVaultsImage, defaultBankVaultsImage),
		ServiceAccount:     firstNonEmpty(v.ServiceAccount, "vault"),
		TLSDisabled:        v.TLS.Disabled,
		ExistingTLSSecret:  v.TLS.ExistingSecret,
		TLSAdditionalHosts: v.TLS.AdditionalHost,
		CANamespaces:       v.TLS.CANamespaces,
	}
	for field, img := range map[string]string{"spec.deploy.vault.image": vs.Image, "spec.deploy.vault.bankVaultsImage": vs.BankVaultsImage} {
		if !pinnedImage(img) {
			errs.add(field, "%q: want a pinned image, with a tag or digest", img)
		}
	}
	if vs.Size == 0 {
		vs.Size = 3
	}
	if vs.Size < 1 {
		errs.add("spec.deploy.vault.size", "%d: want at least 1", v.Size)
	}
	if !dnsLabel.MatchString(vs.Name) {
		errs.add("spec.deploy.vault.name", "%q is not a DNS label", vs.Name)
	}
	if v.TLS.Disabled && v.TLS.ExistingSecret != "" {
		errs.add("spec.deploy.vault.tls", "existingSecret with disabled")
	}
	switch {
	case v.TLS.Disabled && len(v.TLS.CANamespaces) > 0:
		errs.add("spec.deploy.vault.tls.caNamespaces", "with disabled: there is no CA to copy")
	case v.TLS.CANamespaces == nil && !v.TLS.Disabled:
		// The operator copies its CA where the provider's chart reads it.
		vs.CANamespaces = []string{defaultProviderNamespace}
	}
	for i, ns := range vs.CANamespaces {
		if !dnsLabel.MatchString(ns) && (ns != "*" || len(vs.CANamespaces) > 1) {
			errs.add(fmt.Sprintf("spec.deploy.vault.tls.caNamespaces[%d]", i), "%q is not a DNS label (or \"*\" alone, for every namespace)", ns)
		}
	}

	switch typ := firstNonEmpty(v.Storage.Type, "raft"); typ {
	case "raft":
		if v.Storage.Etcd != nil {
			errs.add("spec.deploy.vault.storage.etcd", "only for type etcd")
		}
		r := &deploy.Raft{Size: "10Gi"}
		if v.Storage.Raft != nil {
			r.Size = firstNonEmpty(v.Storage.Raft.Size, r.Size)
			r.StorageClass = v.Storage.Raft.StorageClass
		}
		if _, err := resource.ParseQuantity(r.Size); err != nil {
			errs.add("spec.deploy.vault.storage.raft.size", "%q: %v", r.Size, err)
		}
		vs.Raft = r
		if d.EtcdOperator != nil {
			errs.add("spec.deploy.etcdOperator", "only with storage type etcd")
		}
	case "etcd":
		if v.Storage.Raft != nil {
			errs.add("spec.deploy.vault.storage.raft", "only for type raft")
		}
		e := v.Storage.Etcd
		if e == nil {
			e = &EtcdStorage{}
		}
		if e.ClientTLSSecret != "" {
			// etcd-operator v0.2.0 starts etcd with http:// URLs only and
			// never mounts the certificates it makes (internal/controller/utils.go).
			errs.add("spec.deploy.vault.storage.etcd.clientTLSSecret",
				"TLS to etcd is not possible: the etcd operator v0.2.0 serves etcd over plain HTTP only; "+
					"remove the field (Vault reaches etcd over HTTP inside the cluster, behind a NetworkPolicy), "+
					"or use storage type raft where TLS to storage matters")
		}
		es := &deploy.Etcd{
			Name:          firstNonEmpty(e.Name, vs.Name+"-etcd"),
			Size:          e.Size,
			ImageRegistry: firstNonEmpty(e.ImageRegistry, defaultEtcdRegistry),
			Version:       firstNonEmpty(e.Version, defaultEtcd),
			StorageSize:   firstNonEmpty(e.StorageSize, "1Gi"),
			StorageClass:  e.StorageClass,
		}
		// The operator runs <imageRegistry>:<version>.
		if last := es.ImageRegistry[strings.LastIndex(es.ImageRegistry, "/")+1:]; strings.ContainsAny(last, ":@") {
			errs.add("spec.deploy.vault.storage.etcd.imageRegistry", "%q: the repository only; the tag is version", es.ImageRegistry)
		}
		if !pinnedImage(es.ImageRegistry + ":" + es.Version) {
			errs.add("spec.deploy.vault.storage.etcd.version", "%q: want an image tag such as %s", es.Version, defaultEtcd)
		}
		if es.Size == 0 {
			es.Size = 3
		}
		if es.Size < 1 || es.Size > 7 || es.Size%2 == 0 {
			// An even etcd cluster tolerates no more failures than one
			// smaller; beyond 7 members writes slow down for nothing.
			errs.add("spec.deploy.vault.storage.etcd.size", "%d: want an odd number (1, 3, 5, 7)", es.Size)
		}
		if !dnsLabel.MatchString(es.Name) {
			errs.add("spec.deploy.vault.storage.etcd.name", "%q is not a DNS label", es.Name)
		}
		if _, err := resource.ParseQuantity(es.StorageSize); err != nil {
			errs.add("spec.deploy.vault.storage.etcd.storageSize", "%q: %v", es.StorageSize, err)
		}
		vs.Etcd = es
		s.EtcdOperatorManifest = deploy.EtcdOperatorManifest
		if d.EtcdOperator != nil && d.EtcdOperator.Manifest != "" {
			b, err := os.ReadFile(f.path(d.EtcdOperator.Manifest))
			if err != nil {
				errs.add("spec.deploy.etcdOperator.manifest", "%v", err)
			}
			s.EtcdOperatorManifest = b
		}
	default:
		errs.add("spec.deploy.vault.storage.type", "%q: want raft or etcd", typ)
	}

	u := v.Unseal
	switch typ := firstNonEmpty(u.Type, "kubernetesSecret"); typ {
	case "kubernetesSecret":
		if u.OCIKMS != nil {
			errs.add("spec.deploy.vault.unseal.ocikms", "only for type ocikms")
		}
		vs.UnsealSecret = vs.Name + "-unseal-keys"
		if u.KubernetesSecret != nil && u.KubernetesSecret.Name != "" {
			vs.UnsealSecret = u.KubernetesSecret.Name
		}
	case "ocikms":
		k := u.OCIKMS
		if k == nil {
			errs.add("spec.deploy.vault.unseal.ocikms", "required for type ocikms")
			break
		}
		field := "spec.deploy.vault.unseal.ocikms"
		if !ocidKey.MatchString(k.KeyID) {
			errs.add(field+".keyID", "%q is not a key OCID (ocid1.key.oc1...)", k.KeyID)
		}
		for name, ep := range map[string]string{"cryptoEndpoint": k.CryptoEndpoint, "managementEndpoint": k.ManagementEndpoint} {
			if !strings.HasPrefix(ep, "https://") {
				errs.add(field+"."+name, "%q: want an https:// endpoint of the vault", ep)
			}
		}
		vs.OCIKMS = &deploy.OCIKMS{KeyID: k.KeyID, CryptoEndpoint: k.CryptoEndpoint, ManagementEndpoint: k.ManagementEndpoint, AuthTypeAPIKey: k.AuthTypeAPIKey}
		vs.UnsealSecret = firstNonEmpty(k.RecoveryKeysSecret, vs.Name+"-recovery-keys")
	default:
		errs.add("spec.deploy.vault.unseal.type", "%q: want kubernetesSecret or ocikms", typ)
	}
	s.Vault = vs

	for i, sa := range d.ServiceAccounts {
		if !dnsLabel.MatchString(sa.Namespace) || !dnsLabel.MatchString(sa.Name) {
			errs.add(fmt.Sprintf("spec.deploy.serviceAccounts[%d]", i), "namespace and name are required DNS labels")
			continue
		}
		s.ServiceAccounts = append(s.ServiceAccounts, deploy.NamespacedName(sa))
	}
	// Reviewer service accounts of Kubernetes auth methods are made and
	// bound here, so that configure can request their tokens.
	if c := f.Spec.Configure; c != nil {
		for _, am := range c.Auth {
			if am.Kubernetes != nil && am.Kubernetes.Reviewer != nil && am.Kubernetes.Reviewer.ServiceAccount != nil {
				s.AuthDelegators = append(s.AuthDelegators, deploy.NamespacedName(*am.Kubernetes.Reviewer.ServiceAccount))
			}
		}
	}
	return s
}
