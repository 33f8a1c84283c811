package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/okevault/vault-csi-provider/setup"
)

// Exit codes scripts can branch on.
const (
	exitOK      = 0 // converged; verify passed
	exitError   = 1
	exitPending = 2 // plan (or --dry-run) found changes
)

const usage = `usage: vault-oke-setup <command> -f setup.yaml [flags]

commands:
  plan       show what apply would change (exit 2 if anything)
  apply      deploy, then configure
  deploy     apply the Kubernetes side only
  configure  apply the Vault side only
  verify     log in as each role's service account and check what it may do

The Vault token comes from $VAULT_TOKEN or --vault-token-file; it is never printed.

flags:
`

type options struct {
	file, kubeconfig                 string
	vaultAddr, vaultTokenFile        string
	vaultCACert                      string
	kubernetesHost, kubernetesCAFile string
	reviewerJWTFile, operatorChart   string
	dryRun                           bool
	wait, timeout                    time.Duration
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		_, _ = fmt.Fprint(stderr, usage)
		newFlagSet(&options{}, stderr).PrintDefaults()
		return exitError
	}
	cmd := args[0]
	var st setup.Stages
	switch cmd {
	case "plan", "apply":
		st = setup.Stages{Deploy: true, Configure: true}
	case "deploy":
		st = setup.Stages{Deploy: true}
	case "configure", "verify":
		st = setup.Stages{Configure: true}
	default:
		_, _ = fmt.Fprintf(stderr, "vault-oke-setup: unknown command %q\n", cmd)
		_, _ = fmt.Fprint(stderr, usage)
		return exitError
	}
	o := &options{}
	fs := newFlagSet(o, stderr)
	if err := fs.Parse(args[1:]); err != nil {
		return exitError
	}
	if fs.NArg() > 0 {
		_, _ = fmt.Fprintf(stderr, "vault-oke-setup: unexpected arguments %q\n", fs.Args())
		return exitError
	}
	code, err := execute(ctx, cmd, st, o, getenv, stdout)
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "vault-oke-setup %s: %v\n", cmd, err)
	}
	return code
}

func newFlagSet(o *options, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("vault-oke-setup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.file, "f", "", "the VaultSetup file (required)")
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig (default: $KUBECONFIG, ~/.kube/config, else in-cluster)")
	fs.StringVar(&o.vaultAddr, "vault-addr", "", "Vault address for configure and verify (default: the file's spec.configure.vaultAddress, $VAULT_ADDR)")
	fs.StringVar(&o.vaultTokenFile, "vault-token-file", "", "file holding the Vault token (default: $VAULT_TOKEN)")
	fs.StringVar(&o.vaultCACert, "vault-ca-cert", "", "PEM CA of Vault's TLS certificate (default: $VAULT_CACERT)")
	fs.StringVar(&o.kubernetesHost, "kubernetes-host", "", "apiserver URL Vault's Kubernetes auth calls (overrides the file; for a Vault outside the cluster)")
	fs.StringVar(&o.kubernetesCAFile, "kubernetes-ca-file", "", "PEM CA of that apiserver (overrides the file)")
	fs.StringVar(&o.reviewerJWTFile, "reviewer-jwt-file", "", "JWT Vault calls TokenReview with (overrides the file; for a Vault outside the cluster)")
	fs.StringVar(&o.operatorChart, "operator-chart", "", "vault-operator chart: a local directory instead of the pinned oci:// chart")
	fs.BoolVar(&o.dryRun, "dry-run", false, "plan only: show what would change and exit 2 if anything would")
	fs.DurationVar(&o.wait, "wait", 10*time.Minute, "how long apply waits for Vault to be unsealed between deploy and configure")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "timeout of one Vault request")
	return fs
}

func execute(ctx context.Context, cmd string, st setup.Stages, o *options, getenv func(string) string, stdout io.Writer) (int, error) {
	if o.file == "" {
		return exitError, errors.New("-f setup.yaml is required")
	}
	f, err := setup.Load(o.file)
	if err != nil {
		return exitError, err
	}
	// A file with only one side runs only that side.
	st.Deploy = st.Deploy && f.Spec.Deploy != nil
	st.Configure = st.Configure && f.Spec.Configure != nil
	if cmd == "verify" && f.Spec.Configure == nil {
		return exitError, errors.New("the file has no spec.configure: nothing to verify")
	}
	p, err := setup.Prepare(f, setup.Overrides{
		VaultAddr:        o.vaultAddr,
		KubernetesHost:   o.kubernetesHost,
		KubernetesCAFile: o.kubernetesCAFile,
		ReviewerJWTFile:  o.reviewerJWTFile,
		OperatorChart:    o.operatorChart,
	}, getenv)
	if err != nil {
		return exitError, fmt.Errorf("validate %s:\n%w", o.file, err)
	}
	_, _ = fmt.Fprintf(stdout, "validate: %s ok\n", o.file)

	r := &setup.Runner{Prepared: p, Out: stdout, WaitVault: o.wait}
	if st.Deploy || cmd == "verify" || (st.Configure && p.NeedsKubernetes()) {
		if r.Kube, err = kubeConfig(o.kubeconfig, getenv); err != nil {
			return exitError, fmt.Errorf("kubeconfig: %w", err)
		}
	}
	if st.Configure || cmd == "verify" {
		token, err := vaultToken(o.vaultTokenFile, getenv)
		if err != nil {
			return exitError, err
		}
		if r.Vault, err = setup.NewVaultClient(p.VaultAddr, token, firstNonEmpty(o.vaultCACert, getenv("VAULT_CACERT")), o.timeout); err != nil {
			return exitError, fmt.Errorf("vault client: %w", err)
		}
	}

	switch {
	case cmd == "verify":
		failed, err := r.Verify(ctx)
		if err != nil || failed > 0 {
			return exitError, err
		}
		return exitOK, nil
	case cmd == "plan" || o.dryRun:
		sum, err := r.Plan(ctx, st)
		if err != nil {
			return exitError, err
		}
		if sum.Changes() > 0 {
			return exitPending, nil
		}
		return exitOK, nil
	default:
		if _, err := r.Apply(ctx, st); err != nil {
			return exitError, err
		}
		return exitOK, nil
	}
}

// vaultToken reads the token from a file or $VAULT_TOKEN: never from a
// flag value, which would land in shell history and process listings.
func vaultToken(file string, getenv func(string) string) (string, error) {
	if file != "" {
		b, err := os.ReadFile(file) //nolint:gosec // G304: the token file the user named
		if err != nil {
			return "", fmt.Errorf("vault token: %w", err)
		}
		if t := strings.TrimSpace(string(b)); t != "" {
			return t, nil
		}
		return "", fmt.Errorf("vault token: %s is empty", file)
	}
	if t := getenv("VAULT_TOKEN"); t != "" {
		return t, nil
	}
	return "", errors.New("no Vault token: set $VAULT_TOKEN or --vault-token-file")
}

// kubeConfig loads --kubeconfig, else $KUBECONFIG, else ~/.kube/config,
// else the in-cluster config.
func kubeConfig(path string, getenv func(string) string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = path
	if path == "" {
		if env := getenv("KUBECONFIG"); env != "" {
			rules.Precedence = strings.Split(env, string(os.PathListSeparator))
		}
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, err
	}
	return cfg, nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
