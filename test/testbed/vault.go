package testbed

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// VaultRootToken is the dev server's root token.
const VaultRootToken = "root"

// VaultOptions configure NewVault. The zero value is ready to use.
type VaultOptions struct {
	// Dir holds HOME and the log. Empty: a new temporary directory that
	// Close removes.
	Dir string
}

// Vault is a real Vault dev server (in memory, unsealed) on 127.0.0.1.
type Vault struct {
	// Addr is the server's URL, http://127.0.0.1:PORT.
	Addr string
	// RootToken is the root token Client uses.
	RootToken string
	// Client is a root client. Clone it (and ClearToken) to log in as someone else.
	Client *vaultapi.Client
	// Dir holds HOME and the log.
	Dir string

	ownDir    bool
	proc      *process
	scenario  *Scenario
	auditPath string // set by EnableAudit
	// inCluster: Vault runs as a pod (Cluster.InstallVault) and reviews
	// tokens as its own service account, through the kubernetes Service.
	inCluster bool
}

// StartVault starts a Vault dev server for the test and stops it at cleanup,
// printing the log tail if the test failed.
func StartVault(t testing.TB) *Vault {
	t.Helper()
	skipShort(t)
	v, err := NewVault(t.Context(), VaultOptions{})
	must(t, err)
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(v.LogTail(tailLines))
		}
		if err := v.Close(); err != nil {
			t.Errorf("testbed: %v", err)
		}
	})
	return v
}

// NewVault starts `vault server -dev` and waits until sys/health reports it
// active and unsealed. ctx bounds the start only.
func NewVault(ctx context.Context, opts VaultOptions) (_ *Vault, err error) {
	if _, err := Bin("vault"); err != nil {
		return nil, err
	}
	dir, owned, err := partDir(opts.Dir, "testbed-vault-")
	if err != nil {
		return nil, err
	}
	v := &Vault{Dir: dir, ownDir: owned, RootToken: VaultRootToken}
	defer func() {
		if err != nil {
			err = errors.Join(err, v.Close())
		}
	}()

	for range 3 { // a port taken between freePort and bind: retry with a new one
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		err = v.start(ctx, port)
		if err == nil {
			return v, nil
		}
		if v.proc == nil || !v.proc.exited() || !strings.Contains(v.proc.logs(), "address already in use") {
			return nil, err
		}
	}
	return nil, fmt.Errorf("vault: no free port after 3 attempts; log %s", filepath.Join(dir, "vault.log"))
}

// start runs a fresh dev server on port and waits until it is active and
// unsealed. The log file is appended to, so a restarted server's log follows
// the previous one's.
func (v *Vault) start(ctx context.Context, port int) error {
	bin, err := Bin("vault")
	if err != nil {
		return err
	}
	// HOME is the part's directory, so no ~/.vault-token is written or read.
	env := childEnv("HOME="+v.Dir, "VAULT_LOG_FORMAT=standard")
	v.proc = nil
	p, err := startProcess(v.Dir, "vault", env, bin, "server", "-dev",
		"-dev-root-token-id="+VaultRootToken,
		"-dev-listen-address="+hostPort(port),
		"-dev-no-store-token",
	)
	if err != nil {
		return err
	}
	v.proc = p
	v.Addr = "http://" + hostPort(port)
	if v.Client, err = newVaultClient(v.Addr, VaultRootToken); err != nil {
		return err
	}
	return waitReady(ctx, p, "sys/health", v.healthy)
}

// healthy is nil when the server is initialised, unsealed and active.
func (v *Vault) healthy(ctx context.Context) error {
	h, err := v.Client.Sys().HealthWithContext(ctx)
	switch {
	case err != nil:
		return err
	case !h.Initialized || h.Sealed || h.Standby:
		return fmt.Errorf("health: initialized=%t sealed=%t standby=%t", h.Initialized, h.Sealed, h.Standby)
	}
	return nil
}

// newVaultClient returns a client for addr that ignores VAULT_* variables of
// the test's environment.
func newVaultClient(addr, token string) (*vaultapi.Client, error) {
	cfg := vaultapi.DefaultConfig()
	if cfg.Error != nil {
		cfg = &vaultapi.Config{HttpClient: &http.Client{}}
	}
	cfg.Address = addr
	cfg.AgentAddress = ""
	cfg.Timeout = 30 * time.Second
	c, err := vaultapi.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("vault client: %w", err)
	}
	c.ClearNamespace()
	c.SetToken(token)
	return c, nil
}

// Close stops the server and removes the directory NewVault created.
func (v *Vault) Close() error {
	if v == nil {
		return nil
	}
	err := v.proc.stop()
	v.proc = nil
	return closeErrors(err, removeDir(v.Dir, v.ownDir))
}

// Logs returns the server's whole log.
func (v *Vault) Logs() string { return logsOf(v.proc) }

// LogTail returns the last lines of the server's log.
func (v *Vault) LogTail(lines int) string { return tailOf(lines, v.proc) }

// TokenReviewerServiceAccount is the kube-system service account whose
// token Vault's Kubernetes auth uses to call TokenReview.
const TokenReviewerServiceAccount = "vault-tokenreview"

// ConfigureKubernetesAuth makes Vault check service-account tokens with
// kube's TokenReview API at auth/<mount>: a reviewer service account bound to
// system:auth-delegator, its token (24h), the apiserver's address and CA.
// It enables the auth method if needed and may be called again.
func (v *Vault) ConfigureKubernetesAuth(ctx context.Context, kube *Kube, mount string) error {
	if v.inCluster {
		// As on a cluster: no reviewer JWT or CA given; Vault uses its pod's
		// own token (bound to system:auth-delegator) and CA.
		if err := v.enableAuth(ctx, mount, "kubernetes"); err != nil {
			return err
		}
		if _, err := v.Client.Logical().WriteWithContext(ctx, "auth/"+mount+"/config", map[string]any{
			"kubernetes_host": "https://kubernetes.default.svc:443",
		}); err != nil {
			return fmt.Errorf("configure auth/%s: %w", mount, err)
		}
		return nil
	}
	const ns = "kube-system"
	if err := kube.CreateServiceAccount(ctx, ns, TokenReviewerServiceAccount); err != nil {
		return err
	}
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: TokenReviewerServiceAccount + "-auth-delegator"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:auth-delegator"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: TokenReviewerServiceAccount, Namespace: ns}},
	}
	if _, err := kube.Client.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("bind %s to system:auth-delegator: %w", TokenReviewerServiceAccount, err)
	}
	reviewerJWT, err := kube.Token(ctx, ns, TokenReviewerServiceAccount, "", nil, 24*time.Hour)
	if err != nil {
		return err
	}
	if err := v.enableAuth(ctx, mount, "kubernetes"); err != nil {
		return err
	}
	_, err = v.Client.Logical().WriteWithContext(ctx, "auth/"+mount+"/config", map[string]any{
		"kubernetes_host":      kube.Host,
		"kubernetes_ca_cert":   string(kube.CAPEM),
		"token_reviewer_jwt":   reviewerJWT,
		"disable_local_ca_jwt": true,
	})
	if err != nil {
		return fmt.Errorf("configure auth/%s: %w", mount, err)
	}
	return nil
}

// ConfigureJWTAuth enables the jwt auth method at auth/<mount> and has it
// verify kube's service-account tokens offline, with the signing public key
// and the issuer. Roles are the caller's.
func (v *Vault) ConfigureJWTAuth(ctx context.Context, kube *Kube, mount string) error {
	if err := v.enableAuth(ctx, mount, "jwt"); err != nil {
		return err
	}
	_, err := v.Client.Logical().WriteWithContext(ctx, "auth/"+mount+"/config", map[string]any{
		"jwt_validation_pubkeys": []string{string(kube.ServiceAccountPublicKeyPEM)},
		"bound_issuer":           ServiceAccountIssuer,
	})
	if err != nil {
		return fmt.Errorf("configure auth/%s: %w", mount, err)
	}
	return nil
}

// enableAuth enables an auth method of type typ at mount unless it is.
func (v *Vault) enableAuth(ctx context.Context, mount, typ string) error {
	auths, err := v.Client.Sys().ListAuthWithContext(ctx)
	if err != nil {
		return fmt.Errorf("list auth methods: %w", err)
	}
	if a, ok := auths[strings.Trim(mount, "/")+"/"]; ok {
		if a.Type != typ {
			return fmt.Errorf("auth/%s is a %s auth method, not %s", mount, a.Type, typ)
		}
		return nil
	}
	if err := v.Client.Sys().EnableAuthWithOptionsWithContext(ctx, mount, &vaultapi.EnableAuthOptions{Type: typ}); err != nil {
		return fmt.Errorf("enable %s auth at %s: %w", typ, mount, err)
	}
	return nil
}

// Scenario is what SeedScenario set up: the user's document made real.
type Scenario struct {
	Namespace      string // Kubernetes namespace of the application: "default"
	ServiceAccount string // its service account: "testapp"
	AuthMount      string // Vault Kubernetes auth mount: "kubernetes"
	Role           string // Vault role bound to the service account: "testapp"
	Audience       string // the role's token audience: "vault"
	Policy         string // Vault policy of the role: "testapp-kv-crud"
	PolicyHCL      string // its rules
	KVMount        string // KV v2 mount: "secret"
	SecretPath     string // secret path within KVMount: "testapp" (API path secret/data/testapp)
	// SecretData is what secret/testapp holds: username and a random password.
	SecretData map[string]string
}

// testappPolicy is the scenario's policy, with KV v2 paths.
const testappPolicy = `path "secret/data/testapp" {
  capabilities = ["create", "read", "update", "delete", "list"]
}
path "secret/data/testapp/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}
path "secret/metadata/testapp/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}
`

// SeedScenario sets up the scenario of the user's document: KV v2 at
// secret/, policy testapp-kv-crud, Kubernetes auth at auth/kubernetes with
// role testapp (service account default/testapp, audience vault, 1h), that
// namespace and service account in kube, and a secret at secret/testapp.
// It may be called again: an existing secret keeps its data. Scenario
// returns what was written.
func (v *Vault) SeedScenario(ctx context.Context, kube *Kube) error {
	s := &Scenario{
		Namespace:      metav1.NamespaceDefault,
		ServiceAccount: "testapp",
		AuthMount:      "kubernetes",
		Role:           "testapp",
		Audience:       "vault",
		Policy:         "testapp-kv-crud",
		PolicyHCL:      testappPolicy,
		KVMount:        "secret",
		SecretPath:     "testapp",
	}
	if err := kube.CreateServiceAccount(ctx, s.Namespace, s.ServiceAccount); err != nil {
		return err
	}
	if err := v.ensureKVv2(ctx, s.KVMount); err != nil {
		return err
	}
	if err := v.Client.Sys().PutPolicyWithContext(ctx, s.Policy, s.PolicyHCL); err != nil {
		return fmt.Errorf("write policy %s: %w", s.Policy, err)
	}
	if err := v.ConfigureKubernetesAuth(ctx, kube, s.AuthMount); err != nil {
		return err
	}
	_, err := v.Client.Logical().WriteWithContext(ctx, "auth/"+s.AuthMount+"/role/"+s.Role, map[string]any{
		"bound_service_account_names":      []string{s.ServiceAccount},
		"bound_service_account_namespaces": []string{s.Namespace},
		"audience":                         s.Audience,
		"token_policies":                   []string{s.Policy},
		"token_ttl":                        "1h",
	})
	if err != nil {
		return fmt.Errorf("write role %s: %w", s.Role, err)
	}

	kv := v.Client.KVv2(s.KVMount)
	existing, err := kv.Get(ctx, s.SecretPath)
	switch {
	case err == nil:
		s.SecretData = make(map[string]string, len(existing.Data))
		for k, val := range existing.Data {
			s.SecretData[k] = fmt.Sprint(val)
		}
	case errors.Is(err, vaultapi.ErrSecretNotFound):
		s.SecretData = map[string]string{"username": "testapp", "password": randomHex(16)}
		data := make(map[string]any, len(s.SecretData))
		for k, val := range s.SecretData {
			data[k] = val
		}
		if _, err := kv.Put(ctx, s.SecretPath, data); err != nil {
			return fmt.Errorf("write %s/%s: %w", s.KVMount, s.SecretPath, err)
		}
	default:
		return fmt.Errorf("read %s/%s: %w", s.KVMount, s.SecretPath, err)
	}
	v.scenario = s
	return nil
}

// Scenario returns what SeedScenario set up, or nil before it ran.
func (v *Vault) Scenario() *Scenario { return v.scenario }

// ensureKVv2 mounts KV v2 at mount, or upgrades a KV v1 mount there.
func (v *Vault) ensureKVv2(ctx context.Context, mount string) error {
	m, err := v.Client.Sys().GetMountWithContext(ctx, mount)
	if err != nil {
		var re *vaultapi.ResponseError
		if !errors.As(err, &re) || (re.StatusCode != http.StatusBadRequest && re.StatusCode != http.StatusNotFound) {
			return fmt.Errorf("read mount %s: %w", mount, err)
		}
		m = nil
	}
	switch {
	case m == nil:
		err = v.Client.Sys().MountWithContext(ctx, mount, &vaultapi.MountInput{Type: "kv", Options: map[string]string{"version": "2"}})
	case m.Type != "kv":
		return fmt.Errorf("%s/ is a %s mount, not kv", mount, m.Type)
	case m.Options["version"] != "2":
		opts := map[string]string{"version": "2"}
		err = v.Client.Sys().TuneMountAllowNilWithContext(ctx, mount, vaultapi.TuneMountConfigInput{Options: &opts})
	default:
		return nil
	}
	if err != nil {
		return fmt.Errorf("mount KV v2 at %s: %w", mount, err)
	}
	// The engine answers once its upgrade to v2 is done.
	return waitCond(ctx, 30*time.Second, func() error {
		_, err := v.Client.Logical().ReadWithContext(ctx, mount+"/config")
		return err
	})
}

// waitCond polls f until it returns nil or timeout passes.
func waitCond(ctx context.Context, timeout time.Duration, f func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		err := f()
		if err == nil {
			return nil
		}
		if serr := sleep(ctx, 100*time.Millisecond); serr != nil {
			return fmt.Errorf("%w (last: %w)", serr, err)
		}
	}
}
