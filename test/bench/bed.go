package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/okevault/vault-csi-provider/test/testbed"
)

// setupConcurrency bounds the API calls in flight while setting up.
const setupConcurrency = 16

// bed is the run's test bed: the real parts, stopped by Close in reverse order.
type bed struct {
	kube     *testbed.Kube
	vault    *testbed.Vault
	provider *testbed.Provider // nil when the provider is someone else's (-socket)
	audit    *auditLog
	parts    []io.Closer
}

func (b *bed) add(c io.Closer) { b.parts = append(b.parts, c) }

// Close stops every part, the last started first.
func (b *bed) Close() error {
	var errs []error
	for i := len(b.parts) - 1; i >= 0; i-- {
		errs = append(errs, b.parts[i].Close())
	}
	b.parts = nil
	return errors.Join(errs...)
}

// seedVault sets Vault up for the plan: Kubernetes auth checking tokens with
// TokenReview, a KV v2 mount with the secrets, and per identity a policy
// reading its paths and a role bound to its service account and audience.
func seedVault(ctx context.Context, v *testbed.Vault, kube *testbed.Kube, p *plan) error {
	if err := v.ConfigureKubernetesAuth(ctx, kube, authMount); err != nil {
		return err
	}
	err := v.Client.Sys().MountWithContext(ctx, kvMount, &vaultapi.MountInput{Type: "kv", Options: map[string]string{"version": "2"}})
	if err != nil {
		return fmt.Errorf("mount KV v2 at %s: %w", kvMount, err)
	}
	// A new KV v2 mount answers once its upgrade is done.
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := v.Client.Logical().ReadWithContext(ctx, kvMount+"/config")
		return err == nil, nil
	}); err != nil {
		return fmt.Errorf("KV v2 at %s: %w", kvMount, err)
	}
	for _, id := range p.identities {
		if err := v.Client.Sys().PutPolicyWithContext(ctx, id.policy, id.policyHCL()); err != nil {
			return fmt.Errorf("write policy %s: %w", id.policy, err)
		}
		_, err := v.Client.Logical().WriteWithContext(ctx, "auth/"+authMount+"/role/"+id.role, map[string]any{
			"bound_service_account_names":      []string{id.sa},
			"bound_service_account_namespaces": []string{namespace},
			"audience":                         audience,
			"token_policies":                   []string{id.policy},
			"token_ttl":                        "1h",
		})
		if err != nil {
			return fmt.Errorf("write role %s: %w", id.role, err)
		}
	}
	if p.dynamic {
		if err := seedPKI(ctx, v); err != nil {
			return err
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(setupConcurrency)
	kv := v.Client.KVv2(kvMount)
	for path, data := range p.secrets {
		g.Go(func() error {
			m := make(map[string]any, len(data))
			for k, val := range data {
				m[k] = val
			}
			name := strings.TrimPrefix(path, kvMount+"/data/")
			if _, err := kv.Put(gctx, name, m); err != nil {
				return fmt.Errorf("write %s: %w", path, err)
			}
			return nil
		})
	}
	return g.Wait()
}

// seedPKI mounts the -dynamic PKI engine with a root CA and a role whose
// certificates are leases (generate_lease), like database credentials.
func seedPKI(ctx context.Context, v *testbed.Vault) error {
	if err := v.Client.Sys().MountWithContext(ctx, pkiMount, &vaultapi.MountInput{Type: "pki"}); err != nil {
		return fmt.Errorf("mount PKI at %s: %w", pkiMount, err)
	}
	for path, body := range map[string]map[string]any{
		pkiMount + "/root/generate/internal": {"common_name": "bench-ca", "ttl": "24h"},
		pkiMount + "/roles/bench":            {"allowed_domains": "bench.example.com", "allow_subdomains": true, "max_ttl": "2h", "generate_lease": true},
	} {
		if _, err := v.Client.Logical().WriteWithContext(ctx, path, body); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	return nil
}

// createPods creates the service accounts and pods, and for each pod a
// token for the audience bound to it, as kubelet requests for the driver.
// Each pod gets a target path under root, created as the driver would.
func createPods(ctx context.Context, kube *testbed.Kube, p *plan, root string) error {
	for _, id := range p.identities {
		if err := kube.CreateServiceAccount(ctx, namespace, id.sa); err != nil {
			return err
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(setupConcurrency)
	for _, pd := range p.pods {
		g.Go(func() error {
			obj, err := kube.CreatePod(gctx, namespace, pd.name, pd.id.sa)
			if err != nil {
				return err
			}
			if pd.token, err = kube.Token(gctx, namespace, pd.id.sa, audience, obj, tokenTTL); err != nil {
				return err
			}
			if pd.expires, err = tokenExpiry(pd.token); err != nil {
				return fmt.Errorf("token of %s: %w", pd.name, err)
			}
			pd.uid = string(obj.UID)
			pd.setTargetPath(root)
			return os.MkdirAll(pd.targetPath, 0o750) //nolint:gosec // G703: a path the bench made under its own work directory
		})
	}
	return g.Wait()
}

// startProvider builds this repository's provider (or takes bin) and starts
// it on a providers directory under work, with the log at info as deployed.
func startProvider(ctx context.Context, b *bed, bin string, args []string, work string) (*testbed.Provider, error) {
	if bin == "" {
		var err error
		if bin, err = testbed.BuildProvider(ctx, work); err != nil {
			return nil, err
		}
	}
	dir := filepath.Join(work, "providers")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	return testbed.NewProvider(ctx, testbed.ProviderOptions{
		Binary:       bin,
		ProvidersDir: dir,
		Kube:         b.kube,
		Args:         append([]string{"-vault-addr=" + b.vault.Addr, "-log-level=info"}, args...),
	})
}

// Where a provider started by hand finds its in-cluster identity.
const (
	kitServiceAccount = "vault-csi-provider"
	kitNamespace      = testbed.ProviderNamespace
)

// writeProviderKit prepares what a provider started by hand needs to use
// this test bed: a service account in kitNamespace allowed what a provider
// does on a cluster (its HMAC key Secret; TokenRequest for the fallback),
// its token, CA and namespace as the files of an in-cluster service account
// (dir/serviceaccount), and dir/testbed.env with the addresses. It returns
// the env file's path and contents.
func writeProviderKit(ctx context.Context, b *bed, dir string) (string, string, error) {
	kube := b.kube
	if err := kube.CreateServiceAccount(ctx, kitNamespace, kitServiceAccount); err != nil {
		return "", "", err
	}
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: kitServiceAccount, Namespace: kitNamespace},
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "create", "update", "patch"},
		}},
	}
	clusterRole := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: kitServiceAccount},
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{""}, Resources: []string{"serviceaccounts/token"}, Verbs: []string{"create"},
		}},
	}
	subject := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: kitServiceAccount, Namespace: kitNamespace}}
	rbac := kube.Client.RbacV1()
	errs := []error{
		ignoreExists(rbac.Roles(kitNamespace).Create(ctx, role, metav1.CreateOptions{})),
		ignoreExists(rbac.RoleBindings(kitNamespace).Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: kitServiceAccount, Namespace: kitNamespace},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: kitServiceAccount},
			Subjects:   subject,
		}, metav1.CreateOptions{})),
		ignoreExists(rbac.ClusterRoles().Create(ctx, clusterRole, metav1.CreateOptions{})),
		ignoreExists(rbac.ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: kitServiceAccount},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: kitServiceAccount},
			Subjects:   subject,
		}, metav1.CreateOptions{})),
	}
	if err := errors.Join(errs...); err != nil {
		return "", "", fmt.Errorf("provider kit RBAC: %w", err)
	}
	token, err := kube.Token(ctx, kitNamespace, kitServiceAccount, "", (*corev1.Pod)(nil), 24*time.Hour)
	if err != nil {
		return "", "", err
	}
	sa := filepath.Join(dir, "serviceaccount")
	if err := os.MkdirAll(sa, 0o700); err != nil {
		return "", "", err
	}
	for name, data := range map[string][]byte{"token": []byte(token), "ca.crt": kube.CAPEM, "namespace": []byte(kitNamespace)} {
		if err := os.WriteFile(filepath.Join(sa, name), data, 0o600); err != nil {
			return "", "", err
		}
	}
	u, err := url.Parse(kube.Host)
	if err != nil {
		return "", "", fmt.Errorf("apiserver address: %w", err)
	}
	env := fmt.Sprintf("VAULT_ADDR=%s\nKUBECONFIG=%s\nKUBERNETES_SERVICE_HOST=%s\nKUBERNETES_SERVICE_PORT=%s\nSERVICEACCOUNT_DIR=%s\n",
		b.vault.Addr, kube.KubeconfigPath, u.Hostname(), u.Port(), sa)
	path := filepath.Join(dir, "testbed.env")
	if err := os.WriteFile(path, []byte(env), 0o600); err != nil {
		return "", "", err
	}
	return path, env, nil
}

func ignoreExists[T any](_ T, err error) error {
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}
