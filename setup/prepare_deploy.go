package setup

import (
	"fmt"
	"os"
	"regexp"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/okevault/vault-csi-provider/setup/deploy"
)

const (
	defaultNamespace  = "vault"
	defaultVaultImage = "hashicorp/vault:1.20.4"
	defaultEtcd       = "v3.5.21"
)

var ocidKey = regexp.MustCompile(`^ocid1\.key\.[a-z0-9-]+\.[a-z0-9-]*\.[a-z0-9-]+\.[a-z0-9]+$`)

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
		ServiceAccount:     firstNonEmpty(v.ServiceAccount, "vault"),
		TLSDisabled:        v.TLS.Disabled,
		ExistingTLSSecret:  v.TLS.ExistingSecret,
		TLSAdditionalHosts: v.TLS.AdditionalHost,
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
		es := &deploy.Etcd{
			Name:        firstNonEmpty(e.Name, vs.Name+"-etcd"),
			Size:        e.Size,
			Version:     firstNonEmpty(e.Version, defaultEtcd),
			StorageSize: firstNonEmpty(e.StorageSize, "1Gi"),
		}
		es.ClientTLSSecret = firstNonEmpty(e.ClientTLSSecret, es.Name+"-client-tls")
		if es.Size == 0 {
			es.Size = 3
		}
		if es.Size < 1 || es.Size%2 == 0 {
			// An even etcd cluster tolerates no more failures than one smaller.
			errs.add("spec.deploy.vault.storage.etcd.size", "%d: want an odd number (1, 3, 5)", es.Size)
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
