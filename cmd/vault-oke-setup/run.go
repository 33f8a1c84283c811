package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
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
  destroy    list what deploy made (exit 2 if anything); delete it with --yes
  snapshot   save a snapshot of Vault's Raft storage to --snapshot FILE
  restore    replace Vault's data with --snapshot FILE (says what it would do; acts with --yes)
  version    print the version
  help       print this help

Flags go before or after the command. Without --vault-addr (or the file's
vaultAddress) setup reaches the Vault it deployed through a port-forward.
The Vault token comes from --vault-token-file, else from the operator's
Secret; it is never printed. Every VAULT_* variable is ignored, unless
--vault-env takes $VAULT_ADDR, $VAULT_TOKEN and $VAULT_CACERT. Walk-through:
docs/setup.md.

flags:
`

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

type options struct {
	file, kubeconfig, kubeContext    string
	vaultAddr, vaultTokenFile        string
	vaultCACert                      string
	kubernetesHost, kubernetesCAFile string
	reviewerJWTFile, operatorChart   string
	snapshot                         string
	dryRun, yes, vaultEnv            bool
	cancelGenerateRoot               bool
	wait, timeout                    time.Duration
}

// stages are the commands that touch the cluster or Vault, and what each
// runs before the file narrows it.
var stages = map[string]setup.Stages{
	"plan":      {Deploy: true, Configure: true},
	"apply":     {Deploy: true, Configure: true},
	"deploy":    {Deploy: true},
	"configure": {Configure: true},
	"verify":    {Verify: true},
	"destroy":   {Deploy: true},
	// Like verify: Vault and Kubernetes, not the initial secrets' values.
	"snapshot": {Verify: true},
	"restore":  {Verify: true},
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	o := &options{}
	fs := newFlagSet(o, stderr)
	help := func(w io.Writer) {
		_, _ = fmt.Fprint(w, usage)
		fs.SetOutput(w)
		fs.PrintDefaults()
	}
	// Flags may come before and after the command: parse up to the
	// command, then the rest into the same set.
	err := fs.Parse(args)
	var cmd string
	if err == nil && fs.NArg() > 0 {
		cmd = fs.Arg(0)
		err = fs.Parse(fs.Args()[1:])
	}
	switch {
	case errors.Is(err, flag.ErrHelp), err == nil && cmd == "help":
		help(stdout)
		return exitOK
	case err != nil:
		// flag has printed what is wrong with which flag.
		_, _ = fmt.Fprintln(stderr, "run vault-oke-setup -h for the commands and flags")
		return exitError
	case cmd == "":
		help(stderr)
		return exitError
	case fs.NArg() > 0:
		_, _ = fmt.Fprintf(stderr, "vault-oke-setup: unexpected arguments %q after %s\n", fs.Args(), cmd)
		return exitError
	case cmd == "version":
		_, _ = fmt.Fprintf(stdout, "vault-oke-setup %s %s %s/%s\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return exitOK
	}
	st, ok := stages[cmd]
	if !ok {
		_, _ = fmt.Fprintf(stderr, "vault-oke-setup: unknown command %q\n", cmd)
		help(stderr)
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
	fs.Usage = func() {} // run prints the help, to stdout when asked for
	fs.StringVar(&o.file, "f", "", "the VaultSetup file (required)")
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig (default: $KUBECONFIG, ~/.kube/config, else in-cluster)")
	fs.StringVar(&o.kubeContext, "context", "", "kubeconfig context to use (default: its current-context)")
	fs.StringVar(&o.vaultAddr, "vault-addr", "", "Vault address for configure and verify (default: the file's spec.configure.vaultAddress)")
	fs.StringVar(&o.vaultTokenFile, "vault-token-file", "", "file holding the Vault token")
	fs.StringVar(&o.vaultCACert, "vault-ca-cert", "", "PEM CA of Vault's TLS certificate")
	fs.BoolVar(&o.vaultEnv, "vault-env", false, "take $VAULT_ADDR, $VAULT_TOKEN and $VAULT_CACERT as the defaults of the three flags above (without it every VAULT_* variable is ignored)")
	fs.StringVar(&o.kubernetesHost, "kubernetes-host", "", "apiserver URL Vault's Kubernetes auth calls (overrides the file; for a Vault outside the cluster)")
	fs.StringVar(&o.kubernetesCAFile, "kubernetes-ca-file", "", "PEM CA of that apiserver (overrides the file)")
	fs.StringVar(&o.reviewerJWTFile, "reviewer-jwt-file", "", "JWT Vault calls TokenReview with (overrides the file; for a Vault outside the cluster)")
	fs.StringVar(&o.operatorChart, "operator-chart", "", "vault-operator chart: a local directory instead of the pinned oci:// chart")
	fs.BoolVar(&o.dryRun, "dry-run", false, "plan only: show what would change and exit 2 if anything would")
	fs.BoolVar(&o.cancelGenerateRoot, "cancel-generate-root", false, "cancel a generate-root attempt in progress that setup did not start (by default setup refuses to run over it)")
	fs.BoolVar(&o.yes, "yes", false, "destroy: delete what the plan lists; restore: restore (without it both only say what they would do)")
	fs.StringVar(&o.snapshot, "snapshot", "", "snapshot and restore: the snapshot file (snapshot writes it with mode 0600 and refuses to overwrite one)")
	fs.DurationVar(&o.wait, "wait", 10*time.Minute, "how long apply waits for Vault to be unsealed between deploy and configure")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "timeout of one Vault request")
	return fs
}

func execute(ctx context.Context, cmd string, st setup.Stages, o *options, getenv func(string) string, stdout io.Writer) (int, error) {
	if o.file == "" {
		return exitError, errors.New("-f setup.yaml is required")
	}
	getenv = withoutVaultEnv(getenv, o.vaultEnv, stdout)
	f, err := setup.Load(o.file)
	if err != nil {
		return exitError, err
	}
	// A file with only one side runs only that side.
	st.Deploy = st.Deploy && f.Spec.Deploy != nil
	st.Configure = st.Configure && f.Spec.Configure != nil
	switch {
	case cmd == "verify" && f.Spec.Configure == nil:
		return exitError, errors.New("the file has no spec.configure: nothing to verify")
	case cmd == "destroy" && f.Spec.Deploy == nil:
		return exitError, errors.New("the file has no spec.deploy: it made nothing in Kubernetes to destroy")
	case (cmd == "snapshot" || cmd == "restore") && o.snapshot == "":
		return exitError, fmt.Errorf("%s needs --snapshot FILE", cmd)
	}
	// Snapshots need Vault, reached as configure reaches it, with or
	// without a configure stage in the file.
	st.Verify = st.Verify && (f.Spec.Configure != nil || cmd == "snapshot" || cmd == "restore")
	p, err := setup.PrepareFor(st, f, setup.Overrides{
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

	r := &setup.Runner{Prepared: p, Out: stdout, WaitVault: o.wait, CancelGenerateRoot: o.cancelGenerateRoot}
	defer func() {
		// Revokes a root token generated for this run, ends the port-forward.
		if err := r.Close(ctx); err != nil {
			_, _ = fmt.Fprintf(stdout, "vault-oke-setup %s: %v\n", cmd, err)
		}
	}()
	needVault := st.Configure || st.Verify
	if needVault {
		token, err := vaultToken(o.vaultTokenFile, getenv)
		switch {
		case errors.Is(err, errNoToken) && p.Deploy != nil && p.Deploy.Vault.UnsealSecret != "":
			r.TokenFromCluster = true
		case err != nil:
			return exitError, fmt.Errorf("%s: %w", stageName(st), err)
		}
		addr, caFile := p.VaultAddr, firstNonEmpty(o.vaultCACert, getenv("VAULT_CACERT"))
		if addr == "" {
			// Prepare allows no address only with spec.deploy: the runner
			// forwards to the deployed Vault and trusts the operator's CA.
			r.Forward, addr, caFile = true, "https://127.0.0.1", ""
		}
		if r.Vault, err = setup.NewVaultClient(addr, token, caFile, o.timeout); err != nil {
			return exitError, fmt.Errorf("vault client: %w", err)
		}
	}
	if st.Deploy || st.Verify || (st.Configure && (p.NeedsKubernetes() || r.Forward || r.TokenFromCluster)) {
		if r.Kube, err = kubeConfig(o.kubeconfig, o.kubeContext, getenv); err != nil {
			return exitError, fmt.Errorf("kubeconfig: %w", err)
		}
	}

	switch {
	case cmd == "snapshot":
		return exitCode(snapshot(ctx, r, o.snapshot))
	case cmd == "restore":
		code, err := exitCode(restore(ctx, r, o.snapshot, o.yes))
		if err == nil && !o.yes {
			code = exitPending
		}
		return code, err
	case cmd == "destroy":
		sum, err := r.Destroy(ctx, o.yes)
		if err != nil {
			return exitError, err
		}
		if !o.yes && sum.Changes() > 0 {
			return exitPending, nil
		}
		return exitOK, nil
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
	return "", errNoToken
}

// errNoToken: neither --vault-token-file nor $VAULT_TOKEN. With spec.deploy
// the token comes from the operator's Secret instead.
var errNoToken = errors.New("no Vault token: give --vault-token-file (or $VAULT_TOKEN with --vault-env; or declare spec.deploy with the kubernetesSecret unseal, and setup takes it from the operator's Secret)")

// vaultEnvUsed are the variables --vault-env takes.
var vaultEnvUsed = []string{"VAULT_ADDR", "VAULT_TOKEN", "VAULT_CACERT"}

// withoutVaultEnv keeps an engineer's shell from choosing the Vault a run
// configures: it removes every VAULT_* variable from the process (vault/api
// reads them in each client and clone it makes, and refuses to make one
// when a value does not parse), names those it ignores, and returns getenv
// answering "" for VAULT_* names, but for vaultEnvUsed when useEnv, with
// their values read before the removal.
func withoutVaultEnv(getenv func(string) string, useEnv bool, out io.Writer) func(string) string {
	used := map[string]string{}
	if useEnv {
		for _, name := range vaultEnvUsed {
			used[name] = getenv(name)
		}
	}
	var ignored []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "VAULT_") {
			continue
		}
		_ = os.Unsetenv(name) // fails only for an invalid name, which os.Environ does not return
		if !useEnv || !slices.Contains(vaultEnvUsed, name) {
			ignored = append(ignored, "$"+name)
		}
	}
	if len(ignored) > 0 {
		slices.Sort(ignored)
		_, _ = fmt.Fprintf(out, "vault-oke-setup: ignoring %s (--vault-env takes $VAULT_ADDR, $VAULT_TOKEN and $VAULT_CACERT)\n", strings.Join(ignored, ", "))
	}
	return func(name string) string {
		if strings.HasPrefix(name, "VAULT_") {
			return used[name]
		}
		return getenv(name)
	}
}

// stageName names the stage that needs Vault, for errors.
func stageName(st setup.Stages) string {
	if st.Configure {
		return "configure"
	}
	return "verify"
}

// kubeConfig loads --kubeconfig, else $KUBECONFIG, else ~/.kube/config,
// else the in-cluster config; kubeContext, when set, picks its context.
func kubeConfig(path, kubeContext string, getenv func(string) string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = path
	if path == "" {
		if env := getenv("KUBECONFIG"); env != "" {
			rules.Precedence = strings.Split(env, string(os.PathListSeparator))
		}
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: kubeContext}).ClientConfig()
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

// snapshot writes Vault's Raft snapshot to a new file only its owner can
// read: it is all of Vault's data, encrypted.
func snapshot(ctx context.Context, r *setup.Runner, path string) (err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600) //nolint:gosec // G304: the file the user named
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			_ = os.Remove(path) // a partial snapshot restores nothing
		}
	}()
	if err := r.Snapshot(ctx, f); err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	_, _ = fmt.Fprintf(r.Out, "snapshot: %s, %d bytes (keep it with the unseal keys: neither restores anything alone)\n", path, fi.Size())
	return nil
}

func restore(ctx context.Context, r *setup.Runner, path string, yes bool) error {
	f, err := os.Open(path) //nolint:gosec // G304: the file the user named
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }() // read only: nothing to lose on close
	return r.Restore(ctx, f, yes)
}

func exitCode(err error) (int, error) {
	if err != nil {
		return exitError, err
	}
	return exitOK, nil
}
