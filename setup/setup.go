package setup

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/okevault/vault-csi-provider/setup/deploy"
	"github.com/okevault/vault-csi-provider/setup/vaultconfig"
)

// Stages selects what a run covers.
type Stages struct {
	Deploy    bool
	Configure bool
	// Verify logs in as the declared roles: it needs Vault and Kubernetes,
	// not the initial secrets' values.
	Verify bool
}

// Runner runs plan, apply and verify for a prepared setup.
type Runner struct {
	Prepared *Prepared
	// Kube is needed by the deploy stage, by reviewer service accounts and
	// by verify; nil otherwise.
	Kube *rest.Config
	// Vault is a client with a token allowed to configure Vault, for the
	// configure stage and verify. With Forward its address is set by the
	// runner; with TokenFromCluster, its token.
	Vault *vaultapi.Client
	// Forward: no Vault address was given; reach the deployed Vault
	// (Prepared.Deploy) through a port-forward to one of its pods, trusting
	// the CA in the operator's TLS Secret.
	Forward bool
	// Dial opens the forward's connections (default: APIServerDialer of Kube).
	Dial PodDialer
	// TokenFromCluster: no token was given; take the root token from the
	// operator's Secret (Prepared.Deploy.Vault.UnsealSecret), or generate
	// one from the unseal keys there when it has been revoked.
	TokenFromCluster bool
	// CancelGenerateRoot: cancel a generate-root attempt in progress that
	// setup did not start (by default setup refuses to run over it).
	CancelGenerateRoot bool
	// Out receives progress lines and the summary.
	Out io.Writer
	// WaitVault bounds the wait for Vault to be initialised and unsealed
	// after deploy, before configure (default 10m).
	WaitVault time.Duration

	fwd       *forward
	fwdClient bool // r.Vault is the forward's client (useForwardClient)
	root      *rootToken
}

// Summary counts what a plan found or an apply did.
type Summary struct {
	Created, Updated, Deleted, Unchanged int
}

// Changes is the number of creations, updates and deletions.
func (s Summary) Changes() int { return s.Created + s.Updated + s.Deleted }

func (s Summary) String() string {
	return fmt.Sprintf("%d to create, %d to update, %d to delete, %d unchanged", s.Created, s.Updated, s.Deleted, s.Unchanged)
}

// Plan prints what apply would change and returns the counts. It writes nothing.
func (r *Runner) Plan(ctx context.Context, st Stages) (Summary, error) {
	var sum Summary
	vaultIsNew := false
	if st.Deploy {
		if err := r.requireDeploy(); err != nil {
			return sum, err
		}
		_, results, err := r.planDeploy(ctx)
		if err != nil {
			return sum, err
		}
		r.printDeploy(results, &sum, true)
		r.printNotes()
		for _, res := range results {
			vaultIsNew = vaultIsNew || (res.Op == deploy.Created && strings.HasPrefix(res.Object, "Vault "))
		}
		if r.Prepared.Prune {
			a, err := deploy.NewApplier(r.Kube, FieldManager)
			if err != nil {
				return sum, fmt.Errorf("deploy: %w", err)
			}
			objs, err := deploy.Render(ctx, r.Prepared.Deploy)
			if err != nil {
				return sum, fmt.Errorf("deploy: render: %w", err)
			}
			pruned, _, err := a.PlanPrune(ctx, r.Prepared.Name, objs)
			if err != nil {
				return sum, fmt.Errorf("deploy: plan prune: %w", err)
			}
			r.printDeploy(pruned, &sum, true)
		}
	}
	if st.Configure {
		if err := r.requireConfigure(); err != nil {
			return sum, err
		}
		err := r.connect(ctx)
		var p *vaultconfig.Plan
		if err == nil {
			p, err = r.planConfigure(ctx, st.Deploy)
		}
		if err != nil {
			err = r.unready(ctx, err)
		}
		var ue *url.Error
		if (vaultIsNew && errors.As(err, &ue)) || (st.Deploy && errors.Is(err, errNotYet)) {
			// A first plan on a new cluster: the Vault that deploy creates
			// cannot answer yet, and all of configure is pending.
			r.printf("configure: + everything declared (Vault is not reachable until deploy has made it and the operator has initialised it: %v)\n", err)
			sum.Created++
			r.printSummary("Plan", sum)
			return sum, nil
		}
		if err != nil {
			return sum, err
		}
		r.printConfigure(p.Changes, &sum)
		sum.Unchanged += p.Unchanged
	}
	r.printSummary("Plan", sum)
	return sum, nil
}

// Apply converges the selected stages: it plans each first, so a stage
// that cannot be read or whose plan fails changes nothing, then applies.
func (r *Runner) Apply(ctx context.Context, st Stages) (Summary, error) {
	var sum Summary
	if st.Deploy {
		if err := r.requireDeploy(); err != nil {
			return sum, err
		}
		objs, _, err := r.planDeploy(ctx)
		if err != nil {
			return sum, err
		}
		a, err := deploy.NewApplier(r.Kube, FieldManager)
		if err != nil {
			return sum, fmt.Errorf("deploy: %w", err)
		}
		var gone []*unstructured.Unstructured
		if r.Prepared.Prune {
			// Listed before applying, so a failure here changes nothing.
			if _, gone, err = a.PlanPrune(ctx, r.Prepared.Name, objs); err != nil {
				return sum, fmt.Errorf("deploy: plan prune: %w", err)
			}
		}
		progress := func(res deploy.Result) { r.printDeploy([]deploy.Result{res}, &sum, false) }
		if err := a.Apply(ctx, objs, progress); err != nil {
			return sum, fmt.Errorf("deploy: %w", err)
		}
		r.printNotes()
		if err := a.Prune(ctx, gone, progress); err != nil {
			return sum, fmt.Errorf("deploy: %w", err)
		}
	}
	if st.Configure {
		if err := r.requireConfigure(); err != nil {
			return sum, err
		}
		if err := r.readyVault(ctx, st.Deploy); err != nil {
			return sum, err
		}
		p, err := r.planConfigure(ctx, false)
		if err != nil {
			return sum, err
		}
		sum.Unchanged += p.Unchanged
		err = p.Apply(ctx, r.Vault.Logical(), func(ch vaultconfig.Change, err error) {
			if err == nil {
				r.printConfigure([]vaultconfig.Change{ch}, &sum)
			}
		})
		if err != nil {
			return sum, fmt.Errorf("configure: %w", err)
		}
		if err := r.revokeStoredRoot(ctx); err != nil {
			return sum, err
		}
	}
	r.printSummary("Applied", sum)
	return sum, nil
}

// Verify logs in as each declared role's service account and prints a
// pass/fail table. It returns the number of failed checks.
func (r *Runner) Verify(ctx context.Context) (int, error) {
	if err := r.requireConfigure(); err != nil {
		return 0, err
	}
	if r.Kube == nil {
		return 0, errors.New("verify: needs Kubernetes access for service-account tokens (--kubeconfig)")
	}
	if err := r.connect(ctx); err != nil {
		return 0, fmt.Errorf("verify: %w", err)
	}
	cs, err := kubernetes.NewForConfig(r.Kube)
	if err != nil {
		return 0, fmt.Errorf("verify: %w", err)
	}
	token := func(ctx context.Context, ns, name, audience string) (string, error) {
		return requestToken(ctx, cs, ns, name, audience, 10*time.Minute)
	}
	checks, err := vaultconfig.Verify(ctx, r.Vault, token, r.Prepared.Probes)
	if err != nil {
		return 0, fmt.Errorf("verify: %w", err)
	}
	failed := 0
	r.printf("%-6s %-22s %s\n", "RESULT", "ROLE", "CHECK")
	for _, c := range checks {
		res := "PASS"
		switch {
		case c.Skip:
			res = "SKIP"
		case !c.Pass:
			res = "FAIL"
			failed++
		}
		line := fmt.Sprintf("%-6s %-22s %s", res, c.Role, c.Check)
		if c.Detail != "" {
			line += ": " + oneLine(c.Detail)
		}
		r.printf("%s\n", line)
	}
	r.printf("verify: %d checks, %d failed\n", len(checks), failed)
	return failed, nil
}

func (r *Runner) requireDeploy() error {
	switch {
	case r.Prepared.Deploy == nil:
		return errors.New("deploy: the file has no spec.deploy")
	case r.Kube == nil:
		return errors.New("deploy: no Kubernetes access (--kubeconfig)")
	}
	return nil
}

func (r *Runner) requireConfigure() error {
	switch {
	case r.Prepared.Vault == nil:
		return errors.New("configure: the file has no spec.configure")
	case r.Vault == nil:
		return errors.New("configure: no Vault client (--vault-addr and --vault-token-file)")
	case (r.Forward || r.TokenFromCluster) && (r.Kube == nil || r.Prepared.Deploy == nil):
		return errors.New("configure: reaching the deployed Vault needs spec.deploy and Kubernetes access (--kubeconfig)")
	}
	return nil
}

func (r *Runner) planDeploy(ctx context.Context) ([]*unstructured.Unstructured, []deploy.Result, error) {
	objs, err := deploy.Render(ctx, r.Prepared.Deploy)
	if err != nil {
		return nil, nil, fmt.Errorf("deploy: render: %w", err)
	}
	a, err := deploy.NewApplier(r.Kube, FieldManager)
	if err != nil {
		return nil, nil, fmt.Errorf("deploy: %w", err)
	}
	results, err := a.Plan(ctx, objs)
	if err != nil {
		return nil, nil, fmt.Errorf("deploy: plan: %w", err)
	}
	return objs, results, nil
}

// planConfigure reads Vault and the reviewer tokens; it writes nothing to
// Vault. beforeDeploy: the plan precedes a deploy that creates reviewer
// service accounts, so a missing one is expected, not an error.
func (r *Runner) planConfigure(ctx context.Context, beforeDeploy bool) (*vaultconfig.Plan, error) {
	if len(r.Prepared.reviewers) > 0 {
		if r.Kube == nil {
			return nil, errors.New("configure: reviewer service accounts need Kubernetes access (--kubeconfig)")
		}
		cs, err := kubernetes.NewForConfig(r.Kube)
		if err != nil {
			return nil, fmt.Errorf("configure: %w", err)
		}
		err = r.Prepared.resolveReviewers(ctx, func(ctx context.Context, ns, name string, ttl time.Duration) (string, error) {
			tok, err := requestToken(ctx, cs, ns, name, "", ttl)
			if beforeDeploy && apierrors.IsNotFound(err) {
				r.printf("configure: reviewer %s/%s does not exist yet (deploy creates it)\n", ns, name)
				return "(created by deploy)", nil // only compared, never written: this is a plan
			}
			return tok, err
		})
		if err != nil {
			return nil, fmt.Errorf("configure: %w", err)
		}
	}
	p, err := vaultconfig.Compute(ctx, r.Vault.Logical(), r.Prepared.Vault)
	if err != nil {
		return nil, fmt.Errorf("configure: plan against Vault at %s: %w", r.Vault.Address(), err)
	}
	return p, nil
}

// unready explains a failed read of Vault when Vault answers but is sealed
// or not initialised, which it reports only as a 503 otherwise: a Vault the
// operator has not finished with yet.
func (r *Runner) unready(ctx context.Context, err error) error {
	h, herr := r.Vault.Sys().HealthWithContext(ctx)
	if herr != nil || (h.Initialized && !h.Sealed) {
		return err
	}
	state := "sealed"
	if !h.Initialized {
		state = "not initialised"
	}
	hint := ""
	if d := r.Prepared.Deploy; d != nil {
		hint = fmt.Sprintf(" (kubectl -n %s get pods -L vault-sealed)", d.Namespace)
	}
	return notYetError(fmt.Sprintf("configure: Vault at %s is %s, so nothing can be read from it: the operator initialises and unseals it once its pods run%s; apply waits for that",
		r.Vault.Address(), state, hint))
}

// notYetError is an errNotYet whose message says it all.
type notYetError string

func (e notYetError) Error() string        { return string(e) }
func (e notYetError) Is(target error) bool { return target == errNotYet }

// readyVault makes Vault ready for the configure stage. After deploy, it
// waits for what deploy made: with a forward, for the operators, etcd and
// Vault's pods (their labels say which are unsealed and active); with an
// address given, for that address to answer unsealed. Then it connects.
func (r *Runner) readyVault(ctx context.Context, afterDeploy bool) error {
	timeout := r.WaitVault
	if timeout == 0 {
		timeout = 10 * time.Minute
	}
	deadline := time.Now().Add(timeout)
	if afterDeploy && r.Forward {
		if err := r.waitForCluster(ctx, deadline); err != nil {
			return fmt.Errorf("configure: %w", err)
		}
	}
	if r.Forward {
		if err := r.ensureForward(ctx); err != nil {
			return fmt.Errorf("configure: %w", err)
		}
	}
	if afterDeploy {
		// Unseal needs no token: the token is taken once Vault answers.
		if err := r.waitForVault(ctx, deadline); err != nil {
			return err
		}
	}
	if err := r.connect(ctx); err != nil {
		return fmt.Errorf("configure: %w", err)
	}
	return nil
}

// waitForVault waits until Vault answers initialised and unsealed:
// bank-vaults initialises and unseals it after the pods start.
func (r *Runner) waitForVault(ctx context.Context, deadline time.Time) error {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	r.printf("configure: waiting for Vault at %s to be unsealed (up to %s)\n", r.Vault.Address(), time.Until(deadline).Round(time.Second))
	var last error
	for {
		h, err := r.Vault.Sys().HealthWithContext(ctx)
		switch {
		case err != nil:
			last = err
		case !h.Initialized || h.Sealed:
			last = fmt.Errorf("initialized=%t sealed=%t", h.Initialized, h.Sealed)
		default:
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("configure: wait for Vault at %s: %w (last: %w)", r.Vault.Address(), ctx.Err(), last)
		case <-time.After(2 * time.Second):
		}
	}
}

// printNotes prints what the deployed design leaves to the reader (the
// plain-HTTP etcd link with the pinned etcd operator).
func (r *Runner) printNotes() {
	for _, n := range deploy.Notes(r.Prepared.Deploy) {
		r.printf("deploy: note: %s\n", n)
	}
}

func (r *Runner) printDeploy(results []deploy.Result, sum *Summary, plan bool) {
	for _, res := range results {
		switch res.Op {
		case deploy.Created:
			sum.Created++
			r.printf("deploy: + %s%s\n", res.Object, doneWord(plan, " (created)"))
		case deploy.Updated:
			sum.Updated++
			r.printf("deploy: ~ %s%s\n", res.Object, doneWord(plan, " (configured)"))
			for _, f := range res.Fields {
				r.printf("      %s\n", f)
			}
		case deploy.Deleted:
			sum.Deleted++
			r.printf("deploy: - %s%s\n", res.Object, doneWord(plan, " (pruned)"))
		default:
			sum.Unchanged++
			r.printf("deploy: = %s (unchanged)\n", res.Object)
		}
	}
}

// printf writes a progress line. A failing terminal does not fail the run:
// what was applied is applied either way.
func (r *Runner) printf(format string, a ...any) {
	_, _ = fmt.Fprintf(r.Out, format, a...)
}

func doneWord(plan bool, s string) string {
	if plan {
		return ""
	}
	return s
}

func (r *Runner) printConfigure(changes []vaultconfig.Change, sum *Summary) {
	for _, ch := range changes {
		switch ch.Op {
		case vaultconfig.Create:
			sum.Created++
		case vaultconfig.Update:
			sum.Updated++
		case vaultconfig.Delete:
			sum.Deleted++
		}
		r.printf("configure: %s\n", ch)
		for _, d := range ch.Details {
			r.printf("      %s\n", d)
		}
	}
}

func (r *Runner) printSummary(what string, sum Summary) {
	if sum.Changes() == 0 {
		r.printf("No changes: everything is as declared (%d unchanged).\n", sum.Unchanged)
		return
	}
	if what == "Applied" {
		r.printf("Applied: %d created, %d updated, %d deleted, %d unchanged.\n", sum.Created, sum.Updated, sum.Deleted, sum.Unchanged)
		return
	}
	r.printf("Plan: %s.\n", sum)
}

// requestToken asks the TokenRequest API for a token of ns/name;
// audience "" is the apiserver's own.
func requestToken(ctx context.Context, cs kubernetes.Interface, ns, name, audience string, ttl time.Duration) (string, error) {
	secs := int64(ttl / time.Second)
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &secs}}
	if audience != "" {
		tr.Spec.Audiences = []string{audience}
	}
	res, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, tr, metav1.CreateOptions{})
	if err != nil {
		return "", err
	}
	return res.Status.Token, nil
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// NewVaultClient returns a client for addr that takes nothing from the
// VAULT_* variables: see newVaultClient.
func NewVaultClient(addr, token, caCertFile string, timeout time.Duration) (*vaultapi.Client, error) {
	return newVaultClient(addr, token, &vaultapi.TLSConfig{CACert: caCertFile}, timeout, sameServer)
}

// newVaultClient builds its configuration by hand, not with vault/api's
// DefaultConfig, which reads VAULT_ADDR, VAULT_AGENT_ADDR, VAULT_HTTP_PROXY,
// VAULT_PROXY_ADDR, VAULT_CACERT, VAULT_SKIP_VERIFY, VAULT_MAX_RETRIES,
// VAULT_RATE_LIMIT, VAULT_SRV_LOOKUP and more into it; and it clears what
// NewClient reads (VAULT_TOKEN, VAULT_NAMESPACE, VAULT_HEADERS) and what
// each request would (VAULT_WRAP_TTL). vault/api still reads them in every
// Clone and refuses to make a client when one of them does not parse: the
// command removes them from its environment before it makes any.
// follow decides where a redirect goes (redirectGuard).
func newVaultClient(addr, token string, tlsConf *vaultapi.TLSConfig, timeout time.Duration, follow followFunc) (*vaultapi.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	cfg := &vaultapi.Config{
		Address: addr,
		// vault/api follows redirects itself, not net/http.
		HttpClient: &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		Timeout:    timeout,
		// A plan should fail fast on an unreachable Vault, not retry for a minute.
		MaxRetries: 1,
	}
	if err := cfg.ConfigureTLS(tlsConf); err != nil {
		return nil, err
	}
	// After ConfigureTLS, which needs the *http.Transport itself.
	cfg.HttpClient.Transport = &redirectGuard{next: tr, follow: follow}
	c, err := vaultapi.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	c.SetToken(token)
	c.ClearNamespace()
	c.SetHeaders(http.Header{vaultapi.RequestHeaderName: {"true"}})
	c.SetWrappingLookupFunc(func(string, string) string { return "" })
	return c, nil
}
