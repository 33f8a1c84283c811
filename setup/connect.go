package setup

import (
	"context"
	"errors"
	"fmt"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// connect readies r.Vault for configure or verify: the port-forward open
// (re-opened if its pod went away since the last stage), a token taken from
// the cluster when none was given.
func (r *Runner) connect(ctx context.Context) error {
	if r.Forward {
		if err := r.ensureForward(ctx); err != nil {
			return err
		}
	}
	if !r.TokenFromCluster || (r.root != nil && r.root.token != "") {
		return nil
	}
	if r.root == nil {
		cs, err := kubernetes.NewForConfig(r.Kube)
		if err != nil {
			return err
		}
		d := r.Prepared.Deploy
		r.root = &rootToken{kube: cs, namespace: d.Namespace, secret: d.Vault.UnsealSecret}
	}
	return r.root.acquire(ctx, r.Vault, r.printf)
}

// ensureForward opens the port-forward, or opens it again to another pod
// when the one it went to is gone.
func (r *Runner) ensureForward(ctx context.Context) error {
	if r.fwd != nil && r.fwd.alive(ctx) {
		return nil
	}
	d := r.Prepared.Deploy
	if r.fwd == nil {
		cs, err := kubernetes.NewForConfig(r.Kube)
		if err != nil {
			return err
		}
		dial := r.Dial
		if dial == nil {
			if dial, err = APIServerDialer(r.Kube); err != nil {
				return fmt.Errorf("port-forward: %w", err)
			}
		}
		scheme := "https"
		if d.Vault.TLSDisabled {
			scheme = "http"
		}
		r.fwd = &forward{kube: cs, dial: dial, namespace: d.Namespace, vault: d.Vault.Name, scheme: scheme}
	}
	again := r.fwd.pod != ""
	if err := r.fwd.open(ctx); err != nil {
		return err
	}
	if r.fwd.scheme == "https" && !r.trustsCA {
		if err := r.trustOperatorCA(ctx, r.fwd.kube); err != nil {
			r.fwd.close()
			return err
		}
		r.trustsCA = true
	}
	if err := r.Vault.SetAddress(r.fwd.addr()); err != nil {
		return err
	}
	verb := "reaching"
	if again {
		verb = "pod gone: reaching"
	}
	r.printf("vault: %s Vault %s/%s at %s through a port-forward to pod %s\n", verb, d.Namespace, d.Vault.Name, r.fwd.addr(), r.fwd.pod)
	return nil
}

// trustOperatorCA makes r.Vault trust the CA that the operator put in the
// TLS Secret (<vault>-tls, or the one named by tls.existingSecret), key ca.crt.
func (r *Runner) trustOperatorCA(ctx context.Context, cs kubernetes.Interface) error {
	d := r.Prepared.Deploy
	name := firstNonEmpty(d.Vault.ExistingTLSSecret, d.Vault.Name+"-tls")
	s, err := cs.CoreV1().Secrets(d.Namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("the CA of Vault: no Secret %s/%s (%w)", d.Namespace, name, errNotYet)
	}
	if err != nil {
		return fmt.Errorf("the CA of Vault from the Secret %s/%s: %w", d.Namespace, name, err)
	}
	ca := s.Data["ca.crt"]
	if len(ca) == 0 {
		return fmt.Errorf("the CA of Vault: the Secret %s/%s has no ca.crt", d.Namespace, name)
	}
	// A new client: vault/api's CloneConfig would read the VAULT_* variables.
	c, err := newVaultClient(r.Vault.Address(), r.Vault.Token(), &vaultapi.TLSConfig{CACertBytes: ca}, r.Vault.ClientTimeout())
	if err != nil {
		return fmt.Errorf("the CA of Vault from the Secret %s/%s: %w", d.Namespace, name, err)
	}
	r.Vault = c
	return nil
}

// revokeStoredRoot revokes, after a successful configure, the root token
// that bank-vaults stored at init, unless the file says otherwise. A token
// this run generated is revoked by Close.
func (r *Runner) revokeStoredRoot(ctx context.Context) error {
	if r.root == nil || r.root.generated || r.root.token == "" || !r.Prepared.RevokeRootToken {
		return nil
	}
	if err := r.root.revoke(ctx, r.Vault); err != nil {
		return fmt.Errorf("configure: revoke the root token: %w", err)
	}
	r.printf("configure: revoked the root token bank-vaults stored in Secret %s/%s (later runs generate a short-lived one from the unseal keys there; spec.configure.revokeRootToken: false keeps it)\n", r.root.namespace, r.root.secret)
	return nil
}

// Close revokes a root token this run generated and ends the port-forward.
// Call it once the run is done, also after an error.
func (r *Runner) Close(ctx context.Context) error {
	var err error
	if r.root != nil && r.root.generated && r.root.token != "" {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if rerr := r.connectForRevoke(ctx); rerr != nil {
			err = rerr
		} else if rerr := r.root.revoke(ctx, r.Vault); rerr != nil {
			err = fmt.Errorf("revoke the generated root token: %w", rerr)
		} else {
			r.printf("vault: revoked the root token generated for this run\n")
		}
	}
	if r.fwd != nil {
		r.fwd.close()
	}
	return err
}

// connectForRevoke re-opens the forward if it dropped.
func (r *Runner) connectForRevoke(ctx context.Context) error {
	if !r.Forward {
		return nil
	}
	if err := r.ensureForward(ctx); err != nil {
		return errors.Join(errors.New("revoke the token generated for this run: Vault is unreachable; the token expires within an hour"), err)
	}
	return nil
}
