package setup

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/hcl"

	"github.com/okevault/vault-csi-provider/internal/redact"
	"github.com/okevault/vault-csi-provider/setup/deploy"
	"github.com/okevault/vault-csi-provider/setup/vaultconfig"
)

// Overrides are command-line settings that win over the file.
type Overrides struct {
	VaultAddr string
	// KubernetesHost and KubernetesCAFile replace every Kubernetes auth
	// method's host and CA: for a Vault outside the cluster.
	KubernetesHost   string
	KubernetesCAFile string
	// ReviewerJWTFile gives every Kubernetes auth method this reviewer JWT.
	ReviewerJWTFile string
	// OperatorChart replaces the vault-operator chart reference (a local directory).
	OperatorChart string
}

// Env looks up environment variables; os.Getenv in the command, a map in tests.
type Env func(string) string

// Prepared is a validated setup with every file and variable it refers to
// read: nothing after Prepare can fail for a reason that was knowable before
// the first write.
type Prepared struct {
	Name      string
	Deploy    *deploy.Spec         // nil: no deploy stage
	Vault     *vaultconfig.Desired // nil: no configure stage
	VaultAddr string
	Probes    []vaultconfig.Probe
	// Prune removes what an earlier run made and the file no longer declares.
	Prune bool
	// RevokeRootToken: a root token taken from the operator's Secret is
	// revoked after a successful configure (spec.configure.revokeRootToken).
	RevokeRootToken bool
	// reviewers are service accounts whose tokens become reviewer JWTs,
	// requested once Kubernetes is reachable (see Setup.resolveReviewers).
	reviewers   map[string]ServiceAccountRef // auth path → service account
	reviewerTTL map[string]time.Duration
}

// fieldErrs collects validation errors, each naming its field.
type fieldErrs []error

func (e *fieldErrs) add(field, format string, args ...any) {
	*e = append(*e, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
}

var (
	dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	// vaultName is a policy or role name. Lower case only: Vault lowercases
	// policy names, so "TestApp" would be stored as "testapp" and never
	// compare equal (and prune would take it for undeclared).
	vaultName = regexp.MustCompile(`^[a-z0-9][-_.a-z0-9]*$`)
)

// Prepare validates the file for every stage it has: PrepareFor with all stages.
func Prepare(f *File, o Overrides, env Env) (*Prepared, error) {
	return PrepareFor(Stages{Deploy: true, Configure: true, Verify: true}, f, o, env)
}

// PrepareFor applies the overrides, fills defaults, validates the file and
// resolves its references for the stages in st only: deploy needs nothing
// but the file, configure the Vault side's inputs (initial secret values,
// reviewer JWTs), verify only what it logs in with. Each error names the
// stage that needs it, and all problems are reported together.
func PrepareFor(st Stages, f *File, o Overrides, env Env) (*Prepared, error) {
	if env == nil {
		env = os.Getenv
	}
	var errs []error
	p := &Prepared{Name: f.Metadata.Name, Prune: f.Spec.Prune}
	if !dnsLabel.MatchString(f.Metadata.Name) {
		errs = append(errs, fmt.Errorf("metadata.name: %q is not a DNS label", f.Metadata.Name))
	}
	if f.Spec.Deploy == nil && f.Spec.Configure == nil {
		errs = append(errs, errors.New("spec: neither deploy nor configure: nothing to do"))
	}
	if f.Spec.Deploy != nil {
		// Prepared even when the deploy stage does not run: configure and
		// verify find the deployed Vault (its pods, CA, unseal Secret) from it.
		var de fieldErrs
		p.Deploy = prepareDeploy(f, o, &de)
		if st.Deploy {
			errs = append(errs, inStage("deploy", de)...)
		}
	}
	if c := f.Spec.Configure; c != nil && (st.Configure || st.Verify) {
		stage := "verify"
		if st.Configure {
			stage = "configure"
		}
		var ce fieldErrs
		p.VaultAddr = firstNonEmpty(o.VaultAddr, c.VaultAddress, env("VAULT_ADDR"))
		switch {
		case p.VaultAddr == "" && f.Spec.Deploy == nil:
			ce.add("spec.configure.vaultAddress", "no Vault address: set it or --vault-addr (or $VAULT_ADDR with --vault-env; with spec.deploy, setup reaches the Vault it deployed by itself)")
		case p.VaultAddr != "":
			if u, err := url.Parse(p.VaultAddr); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				ce.add("spec.configure.vaultAddress", "%q is not an http(s) URL", p.VaultAddr)
			}
		}
		p.Vault = prepareConfigure(f, p, o, env, &ce, st.Configure)
		p.Vault.Prune = f.Spec.Prune
		p.RevokeRootToken = c.RevokeRootToken == nil || *c.RevokeRootToken
		errs = append(errs, inStage(stage, ce)...)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return p, nil
}

// inStage prefixes each error with the stage that needs the field.
func inStage(stage string, errs fieldErrs) []error {
	out := make([]error, 0, len(errs))
	for _, e := range errs {
		out = append(out, fmt.Errorf("%s: %w", stage, e))
	}
	return out
}

// prepareConfigure validates spec.configure. resolve: read what the
// configure stage writes (initial secret values, reviewer JWTs); verify
// does not need them.
func prepareConfigure(f *File, p *Prepared, o Overrides, env Env, errs *fieldErrs, resolve bool) *vaultconfig.Desired {
	c := f.Spec.Configure
	d := &vaultconfig.Desired{}

	policies := map[string]bool{"default": true}
	for i, pol := range c.Policies {
		field := fmt.Sprintf("spec.configure.policies[%d]", i)
		switch {
		case !vaultName.MatchString(pol.Name):
			errs.add(field+".name", "%q is not a policy name (lower-case letters, digits, -_.)", pol.Name)
			continue
		case pol.Name == "root" || pol.Name == "default":
			errs.add(field+".name", "%q is Vault's own policy", pol.Name)
			continue
		case policies[pol.Name]:
			errs.add(field+".name", "%q declared twice", pol.Name)
			continue
		}
		policies[pol.Name] = true
		text := pol.HCL
		switch {
		case (pol.HCL == "") == (pol.File == ""):
			errs.add(field, "give exactly one of hcl and file")
			continue
		case pol.File != "":
			b, err := os.ReadFile(f.path(pol.File))
			if err != nil {
				errs.add(field+".file", "%v", err)
				continue
			}
			text = string(b)
		}
		// Vault parses policies with HCL v1; a syntax error caught here keeps
		// a broken policy from being half-written after other changes.
		if _, err := hcl.Parse(text); err != nil {
			errs.add(field, "policy %s is not valid HCL: %v", pol.Name, err)
			continue
		}
		d.Policies = append(d.Policies, vaultconfig.Policy{Name: pol.Name, HCL: text})
	}

	kvVersion := map[string]int{}
	for i, se := range c.SecretsEngines {
		field := fmt.Sprintf("spec.configure.secretsEngines[%d]", i)
		path := strings.Trim(se.Path, "/")
		if !validMountPath(path) {
			errs.add(field+".path", "%q is not a mount path", se.Path)
			continue
		}
		if _, dup := kvVersion[path]; dup || slices.ContainsFunc(d.Mounts, func(m vaultconfig.Mount) bool { return m.Path == path }) {
			errs.add(field+".path", "%q declared twice", path)
			continue
		}
		if isReservedMount(path) {
			errs.add(field+".path", "%q is reserved by Vault", path)
			continue
		}
		opts := map[string]string{}
		for k, v := range se.Options {
			opts[k] = v
		}
		switch se.Type {
		case "":
			errs.add(field+".type", "required (kv, or an engine type)")
			continue
		case "kv":
			v := se.Version
			if v == 0 {
				v = 2
			}
			if v != 1 && v != 2 {
				errs.add(field+".version", "KV version %d: want 1 or 2", se.Version)
				continue
			}
			if _, set := se.Options["version"]; set {
				errs.add(field+".options.version", "use version, not options.version")
				continue
			}
			opts["version"] = fmt.Sprint(v)
			kvVersion[path] = v
		default:
			if se.Version != 0 {
				errs.add(field+".version", "only for type kv")
				continue
			}
		}
		d.Mounts = append(d.Mounts, vaultconfig.Mount{Path: path, Type: se.Type, Options: opts})
	}

	authPaths := map[string]bool{}
	p.reviewers = map[string]ServiceAccountRef{}
	p.reviewerTTL = map[string]time.Duration{}
	for i, am := range c.Auth {
		field := fmt.Sprintf("spec.configure.auth[%d]", i)
		path := strings.Trim(am.Path, "/")
		if path == "" {
			path = am.Type
		}
		if !validMountPath(path) || path == "token" {
			errs.add(field+".path", "%q is not a usable auth path", path)
			continue
		}
		if authPaths[path] {
			errs.add(field+".path", "%q declared twice", path)
			continue
		}
		authPaths[path] = true
		a := vaultconfig.AuthMethod{Path: path, Type: am.Type, Config: map[string]any{}, WriteOnly: map[string]redact.Secret{}}
		switch am.Type {
		case "kubernetes":
			if am.JWT != nil {
				errs.add(field+".jwt", "only for type jwt")
			}
			prepareKubernetesAuth(f, p, o, env, errs, field, &a, am.Kubernetes, resolve)
		case "jwt":
			if am.Kubernetes != nil {
				errs.add(field+".kubernetes", "only for type kubernetes")
			}
			prepareJWTAuth(f, errs, field, &a, am.JWT)
		default:
			errs.add(field+".type", "%q: want kubernetes or jwt", am.Type)
			continue
		}
		for j, r := range am.Roles {
			rf := fmt.Sprintf("%s.roles[%d]", field, j)
			role, probe, ok := prepareRole(errs, rf, am.Type, path, r, policies)
			if !ok {
				continue
			}
			a.Roles = append(a.Roles, role)
			p.Probes = append(p.Probes, probe)
		}
		d.Auth = append(d.Auth, a)
	}

	for i, a := range c.Audit {
		field := fmt.Sprintf("spec.configure.audit[%d]", i)
		if !slices.Contains([]string{"file", "socket", "syslog"}, a.Type) {
			errs.add(field+".type", "%q: want file, socket or syslog", a.Type)
			continue
		}
		path := strings.Trim(firstNonEmpty(a.Path, a.Type), "/")
		if !validMountPath(path) {
			errs.add(field+".path", "%q is not a device path", a.Path)
			continue
		}
		if slices.ContainsFunc(d.Audit, func(x vaultconfig.AuditDevice) bool { return x.Path == path }) {
			errs.add(field+".path", "%q declared twice", path)
			continue
		}
		if a.Type == "file" && a.Options["file_path"] == "" {
			// Vault refuses a file device without it; stdout suits a pod.
			errs.add(field+".options.file_path", "required for type file (a path, or stdout)")
			continue
		}
		opts := map[string]string{}
		for k, v := range a.Options {
			opts[k] = v
		}
		d.Audit = append(d.Audit, vaultconfig.AuditDevice{Path: path, Type: a.Type, Options: opts})
	}

	for i, s := range c.Secrets {
		field := fmt.Sprintf("spec.configure.secrets[%d]", i)
		mount, rest, _ := strings.Cut(strings.Trim(s.Path, "/"), "/")
		v, ok := kvVersion[mount]
		if !ok || rest == "" {
			errs.add(field+".path", "%q is not <kv mount>/<path> under a KV engine declared in secretsEngines", s.Path)
			continue
		}
		if len(s.Data) == 0 {
			errs.add(field+".data", "empty")
			continue
		}
		data := map[string]redact.Secret{}
		for _, k := range sortedKeys(s.Data) {
			sv := s.Data[k]
			kf := fmt.Sprintf("%s.data.%s", field, k)
			n := 0
			for _, set := range []bool{sv.File != "", sv.Env != "", sv.Value != ""} {
				if set {
					n++
				}
			}
			if n != 1 {
				errs.add(kf, "give exactly one of file, env and value")
				continue
			}
			switch {
			case !resolve:
				// Not this stage's input: left unread.
			case sv.File != "":
				b, err := os.ReadFile(f.path(sv.File))
				if err != nil {
					errs.add(kf+".file", "%v", err)
					continue
				}
				data[k] = redact.New(strings.TrimRight(string(b), "\n"))
			case sv.Env != "":
				val := env(sv.Env)
				if val == "" {
					errs.add(kf+".env", "$%s is not set", sv.Env)
					continue
				}
				data[k] = redact.New(val)
			default:
				// Inline values end up in version control; only on request.
				if !s.AllowInline {
					errs.add(kf+".value", "inline secret values need allowInline: true (use file or env)")
					continue
				}
				data[k] = redact.New(sv.Value)
			}
		}
		d.Secrets = append(d.Secrets, vaultconfig.Secret{Mount: mount, Path: rest, KVVersion: v, Data: data})
	}
	return d
}

func prepareKubernetesAuth(f *File, p *Prepared, o Overrides, env Env, errs *fieldErrs, field string, a *vaultconfig.AuthMethod, k *KubernetesAuth, resolve bool) {
	if k == nil {
		k = &KubernetesAuth{}
	}
	field += ".kubernetes"
	host := firstNonEmpty(o.KubernetesHost, k.Host)
	if host == "" {
		// In the cluster Vault finds the apiserver itself, but the config
		// write requires a host: the in-cluster service name.
		host = "https://kubernetes.default.svc:443"
	}
	if u, err := url.Parse(host); err != nil || u.Scheme != "https" || u.Host == "" {
		errs.add(field+".host", "%q is not an https URL", host)
	}
	a.Config["kubernetes_host"] = host

	ca := k.CACert
	caFile := k.CACertFile
	if o.KubernetesCAFile != "" {
		ca, caFile = "", o.KubernetesCAFile
	} else if caFile != "" {
		caFile = f.path(caFile)
	}
	if ca != "" && k.CACertFile != "" && o.KubernetesCAFile == "" {
		errs.add(field, "give at most one of caCert and caCertFile")
	}
	if caFile != "" {
		b, err := os.ReadFile(caFile) //nolint:gosec // G304: a CA file the user named
		if err != nil {
			errs.add(field+".caCertFile", "%v", err)
		}
		ca = string(b)
	}
	if ca != "" {
		if !strings.Contains(ca, "-----BEGIN CERTIFICATE-----") {
			errs.add(field+".caCert", "not a PEM certificate")
		}
		a.Config["kubernetes_ca_cert"] = ca
	}

	r := k.Reviewer
	if o.ReviewerJWTFile != "" {
		r = &Reviewer{JWTFile: o.ReviewerJWTFile}
	} else if r != nil && r.JWTFile != "" {
		r = &Reviewer{JWTFile: f.path(r.JWTFile), TTL: r.TTL}
	}
	if r == nil {
		// Since Kubernetes 1.24 no service-account token Secrets exist by
		// default: Vault in the cluster reviews with its own identity.
		a.Config["disable_local_ca_jwt"] = false
		return
	}
	// A Vault outside the cluster cannot use its pod's identity.
	a.Config["disable_local_ca_jwt"] = true
	n := 0
	for _, set := range []bool{r.JWTFile != "", r.JWTEnv != "", r.ServiceAccount != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		errs.add(field+".reviewer", "give exactly one of jwtFile, jwtEnv and serviceAccount")
		return
	}
	switch {
	case !resolve && r.ServiceAccount == nil:
		// A JWT is only written by configure: left unread.
	case r.JWTFile != "":
		b, err := os.ReadFile(r.JWTFile)
		if err != nil {
			errs.add(field+".reviewer.jwtFile", "%v", err)
			return
		}
		a.WriteOnly["token_reviewer_jwt"] = redact.New(strings.TrimSpace(string(b)))
	case r.JWTEnv != "":
		v := env(r.JWTEnv)
		if v == "" {
			errs.add(field+".reviewer.jwtEnv", "$%s is not set", r.JWTEnv)
			return
		}
		a.WriteOnly["token_reviewer_jwt"] = redact.New(v)
	default:
		sa := *r.ServiceAccount
		if !dnsLabel.MatchString(sa.Namespace) || !dnsLabel.MatchString(sa.Name) {
			errs.add(field+".reviewer.serviceAccount", "namespace and name are required DNS labels")
			return
		}
		ttl := 24 * time.Hour
		if r.TTL != "" {
			d, err := time.ParseDuration(r.TTL)
			if err != nil || d < 10*time.Minute {
				errs.add(field+".reviewer.ttl", "%q: want a duration of at least 10m", r.TTL)
				return
			}
			ttl = d
		}
		p.reviewers[a.Path] = sa
		p.reviewerTTL[a.Path] = ttl
	}
}

func prepareJWTAuth(f *File, errs *fieldErrs, field string, a *vaultconfig.AuthMethod, j *JWTAuth) {
	field += ".jwt"
	if j == nil {
		errs.add(field, "required for type jwt")
		return
	}
	keys := slices.Clone(j.PublicKeys)
	for i, kf := range j.PublicKeyFiles {
		b, err := os.ReadFile(f.path(kf))
		if err != nil {
			errs.add(fmt.Sprintf("%s.publicKeyFiles[%d]", field, i), "%v", err)
			continue
		}
		keys = append(keys, string(b))
	}
	n := 0
	for _, set := range []bool{j.OIDCDiscoveryURL != "", j.JWKSURL != "", len(keys) > 0} {
		if set {
			n++
		}
	}
	if n != 1 {
		errs.add(field, "give exactly one of oidcDiscoveryURL, jwksURL and publicKeys/publicKeyFiles")
		return
	}
	switch {
	case j.OIDCDiscoveryURL != "":
		a.Config["oidc_discovery_url"] = j.OIDCDiscoveryURL
	case j.JWKSURL != "":
		a.Config["jwks_url"] = j.JWKSURL
	default:
		a.Config["jwt_validation_pubkeys"] = keys
	}
	if j.BoundIssuer != "" {
		a.Config["bound_issuer"] = j.BoundIssuer
	}
}

// prepareRole validates a role and renders what is written to Vault.
func prepareRole(errs *fieldErrs, field, typ, authPath string, r Role, policies map[string]bool) (vaultconfig.Role, vaultconfig.Probe, bool) {
	n := len(*errs)
	if !vaultName.MatchString(r.Name) {
		errs.add(field+".name", "%q is not a role name (lower-case letters, digits, -_.)", r.Name)
	}
	checkNames := func(f string, names []string) {
		if len(names) == 0 {
			errs.add(field+"."+f, "required: at least one")
		}
		for _, s := range names {
			// A wildcard would let any service account (or namespace) in.
			if strings.Contains(s, "*") {
				errs.add(field+"."+f, "%q: wildcards are refused; list the names", s)
			} else if !dnsLabel.MatchString(s) {
				errs.add(field+"."+f, "%q is not a DNS label", s)
			}
		}
	}
	checkNames("serviceAccounts", r.ServiceAccounts)
	checkNames("namespaces", r.Namespaces)
	if r.Audience == "" {
		errs.add(field+".audience", "required (the CSI driver's tokenRequests audience, e.g. vault)")
	}
	if len(r.Policies) == 0 {
		errs.add(field+".policies", "required: at least one")
	}
	for _, pol := range r.Policies {
		if !policies[pol] {
			errs.add(field+".policies", "%q is not declared in spec.configure.policies", pol)
		}
	}
	ttl, maxTTL := int64(3600), int64(0)
	if r.TTL != "" {
		d, err := time.ParseDuration(r.TTL)
		if err != nil || d <= 0 {
			errs.add(field+".ttl", "%q is not a positive duration", r.TTL)
		}
		ttl = int64(d / time.Second)
	}
	if r.MaxTTL != "" {
		d, err := time.ParseDuration(r.MaxTTL)
		if err != nil || d <= 0 {
			errs.add(field+".maxTTL", "%q is not a positive duration", r.MaxTTL)
		}
		maxTTL = int64(d / time.Second)
		if maxTTL < ttl {
			errs.add(field+".maxTTL", "shorter than ttl")
		}
	}
	if len(*errs) > n {
		return vaultconfig.Role{}, vaultconfig.Probe{}, false
	}
	data := map[string]any{
		"token_policies": r.Policies,
		"token_ttl":      ttl,
		"token_max_ttl":  maxTTL,
	}
	switch typ {
	case "kubernetes":
		data["bound_service_account_names"] = r.ServiceAccounts
		data["bound_service_account_namespaces"] = r.Namespaces
		data["audience"] = r.Audience
	case "jwt":
		// Service-account tokens carry the namespace and name as claims.
		data["role_type"] = "jwt"
		data["user_claim"] = "sub"
		data["bound_audiences"] = []string{r.Audience}
		data["bound_claims_type"] = "string"
		data["bound_claims"] = map[string]any{
			"/kubernetes.io/namespace":           r.Namespaces,
			"/kubernetes.io/serviceaccount/name": r.ServiceAccounts,
		}
	}
	probe := vaultconfig.Probe{
		AuthPath: authPath, Role: r.Name, Audience: r.Audience, Policies: r.Policies,
		Namespace: r.Namespaces[0], ServiceAccount: r.ServiceAccounts[0],
		OutsiderNamespace: r.Namespaces[0], Outsider: "default",
	}
	if v := r.Verify; v != nil {
		probe.Read, probe.DeniedWrite = v.Read, v.DeniedWrite
		if v.Outsider != "" {
			probe.Outsider = v.Outsider
		}
	}
	if slices.Contains(r.ServiceAccounts, probe.Outsider) {
		probe.Outsider = "" // bound: not an outsider
	}
	return vaultconfig.Role{Name: r.Name, Data: data}, probe, true
}

// NeedsKubernetes reports whether the configure stage needs Kubernetes
// access (to request reviewer service-account tokens).
func (p *Prepared) NeedsKubernetes() bool { return len(p.reviewers) > 0 }

// resolveReviewers requests the reviewer tokens of service-account reviewers.
func (p *Prepared) resolveReviewers(ctx context.Context, token func(ctx context.Context, ns, name string, ttl time.Duration) (string, error)) error {
	for i := range p.Vault.Auth {
		a := &p.Vault.Auth[i]
		sa, ok := p.reviewers[a.Path]
		if !ok {
			continue
		}
		jwt, err := token(ctx, sa.Namespace, sa.Name, p.reviewerTTL[a.Path])
		if err != nil {
			return fmt.Errorf("reviewer token for auth/%s (%s/%s): %w", a.Path, sa.Namespace, sa.Name, err)
		}
		a.WriteOnly["token_reviewer_jwt"] = redact.New(jwt)
	}
	return nil
}

func (f *File) path(p string) string {
	if filepath.IsAbs(p) || f.baseDir == "" {
		return p
	}
	return filepath.Join(f.baseDir, p)
}

var mountPath = regexp.MustCompile(`^[a-zA-Z0-9][-_.a-zA-Z0-9]*(/[a-zA-Z0-9][-_.a-zA-Z0-9]*)*$`)

func validMountPath(p string) bool { return mountPath.MatchString(p) }

func isReservedMount(p string) bool {
	first, _, _ := strings.Cut(p, "/")
	return slices.Contains([]string{"sys", "identity", "cubbyhole", "auth"}, first)
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
