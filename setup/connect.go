package setup

import (
	"context"
	"errors"
	"fmt"
	"net/url"
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
		r.root = &rootToken{
			kube: cs, namespace: d.Namespace, secret: d.Vault.UnsealSecret,
			record:       &tokenRecord{kube: cs, namespace: d.Namespace, name: d.Vault.Name + "-setup-tokens"},
			cancelOthers: r.CancelGenerateRoot,
		}
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
	if !r.fwdClient {
		if err := r.useForwardClient(ctx); err != nil {
			r.fwd.close()
			return err
		}
		r.fwdClient = true
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

// useForwardClient replaces r.Vault with a client for the forward: it
// trusts the CA that the operator put in the TLS Secret (<vault>-tls, or
// the one named by tls.existingSecret, key ca.crt) and follows a standby's
// redirect only to another pod of the Vault (followToPod).
func (r *Runner) useForwardClient(ctx context.Context) error {
	tlsConf := &vaultapi.TLSConfig{}
	if r.fwd.scheme == "https" {
		ca, err := r.operatorCA(ctx)
		if err != nil {
			return err
		}
		tlsConf.CACertBytes = ca
	}
	c, err := newVaultClient(r.fwd.addr(), r.Vault.Token(), tlsConf, r.Vault.ClientTimeout(), r.followToPod)
	if err != nil {
		return fmt.Errorf("vault client for the port-forward: %w", err)
	}
	r.Vault = c
	return nil
}

// operatorCA reads Vault's CA from the operator's TLS Secret.
func (r *Runner) operatorCA(ctx context.Context) ([]byte, error) {
	d := r.Prepared.Deploy
	name := firstNonEmpty(d.Vault.ExistingTLSSecret, d.Vault.Name+"-tls")
	s, err := r.fwd.kube.CoreV1().Secrets(d.Namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("the CA of Vault: no Secret %s/%s (%w)", d.Namespace, name, errNotYet)
	}
	if err != nil {
		return nil, fmt.Errorf("the CA of Vault from the Secret %s/%s: %w", d.Namespace, name, err)
	}
	ca := s.Data["ca.crt"]
	if len(ca) == 0 {
		return nil, fmt.Errorf("the CA of Vault: the Secret %s/%s has no ca.crt", d.Namespace, name)
	}
	return ca, nil
}

// followToPod follows a redirect of a standby, reached through the
// forward, to the pod it names (the operator's api_addr is
// https://<pod>.<namespace>:8200): by forwarding to that pod, if it is a
// pod of the deployed Vault, and sending the request there. Anything else
// is not followed.
func (r *Runner) followToPod(ctx context.Context, from, to *url.URL) (*url.URL, error) {
	if u, err := sameServer(ctx, from, to); err == nil {
		return u, nil
	}
	pod, ok := r.fwd.podIn(to)
	if !ok {
		return nil, errNotChosen
	}
	if err := r.fwd.openPod(ctx, pod); err != nil {
		return nil, err
	}
	if err := r.Vault.SetAddress(r.fwd.addr()); err != nil {
		return nil, err
	}
	r.printf("vault: a standby redirected to pod %s: reaching it at %s through a port-forward\n", pod, r.fwd.addr())
	next, err := url.Parse(r.fwd.addr())
	if err != nil {
		return nil, err
	}
	next.Path, next.RawPath, next.RawQuery = to.Path, to.RawPath, to.RawQuery
	return next, nil
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
