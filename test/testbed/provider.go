package testbed

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// ProviderNamespace is where StartProvider keeps the provider's HMAC key
// Secret, as the chart's release namespace would.
const ProviderNamespace = "vault-csi"

// ProviderOptions configure NewProvider.
type ProviderOptions struct {
	// Binary is a built vault-csi-provider. Empty: BuildProvider builds one.
	Binary string
	// ProvidersDir is the driver's providers directory; the socket is
	// <ProvidersDir>/vault.sock. Required.
	ProvidersDir string
	// Kube gives the provider a kubeconfig (for its HMAC key Secret in
	// ProviderNamespace). Nil: none, and object versions are empty.
	Kube *Kube
	// Args are extra flags, e.g. -vault-addr.
	Args []string
	// Env are extra environment variables, KEY=value, added after the
	// test's own VAULT_* and KUBECONFIG are removed: to check what the
	// provider does with them.
	Env []string
	// Dir holds the log. Empty: a new temporary directory that Close removes.
	Dir string
}

// Provider is this project's vault-csi-provider daemon, run as a process
// exactly as the DaemonSet runs it.
type Provider struct {
	// Socket is the provider's unix socket.
	Socket string
	// HealthAddr serves /health/ready and /healthz.
	HealthAddr string
	// Dir holds the log.
	Dir string

	ownDir bool
	proc   *process
}

// BuildProvider builds ./cmd/vault-csi-provider of this module into dir.
func BuildProvider(ctx context.Context, dir string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "vault-csi-provider")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/vault-csi-provider") //nolint:gosec // G204: the test's own temp dir
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build vault-csi-provider: %w\n%s", err, b)
	}
	return out, nil
}

// StartProvider starts the provider for the test and stops it at cleanup,
// printing the log tail if the test failed.
func StartProvider(t testing.TB, opts ProviderOptions) *Provider {
	t.Helper()
	skipShort(t)
	p, err := NewProvider(t.Context(), opts)
	must(t, err)
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(p.LogTail(tailLines))
		}
		if err := p.Close(); err != nil {
			t.Errorf("testbed: %v", err)
		}
	})
	return p
}

// NewProvider starts vault-csi-provider with -provider-dir and waits until
// /health/ready says its socket listens. ctx bounds the start only.
func NewProvider(ctx context.Context, opts ProviderOptions) (_ *Provider, err error) {
	if opts.ProvidersDir == "" {
		return nil, errors.New("provider: ProvidersDir is required")
	}
	dir, owned, err := partDir(opts.Dir, "testbed-provider-")
	if err != nil {
		return nil, err
	}
	p := &Provider{Dir: dir, ownDir: owned, Socket: filepath.Join(opts.ProvidersDir, "vault.sock")}
	defer func() {
		if err != nil {
			err = errors.Join(err, p.Close())
		}
	}()
	bin := opts.Binary
	if bin == "" {
		if bin, err = BuildProvider(ctx, dir); err != nil {
			return nil, err
		}
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	p.HealthAddr = hostPort(port)
	args := []string{"-provider-dir=" + opts.ProvidersDir, "-health-addr=" + p.HealthAddr, "-log-level=debug"}
	env := childEnv(opts.Env...)
	if opts.Kube != nil {
		if err := opts.Kube.CreateNamespace(ctx, ProviderNamespace); err != nil {
			return nil, err
		}
		args = append(args, "-kubeconfig="+opts.Kube.KubeconfigPath, "-hmac-secret-namespace="+ProviderNamespace)
	}
	if p.proc, err = startProcess(dir, "vault-csi-provider", env, bin, append(args, opts.Args...)...); err != nil {
		return nil, err
	}
	err = waitReady(ctx, p.proc, "/health/ready", func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.HealthAddr+"/health/ready", nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("ready: %s", resp.Status)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// Close stops the provider (SIGTERM, as kubelet does) and removes the
// directory NewProvider created.
func (p *Provider) Close() error {
	return closeErrors(p.proc.stop(), removeDir(p.Dir, p.ownDir))
}

// Logs returns the provider's log.
func (p *Provider) Logs() string { return logsOf(p.proc) }

// LogTail returns the last lines of the provider's log.
func (p *Provider) LogTail(lines int) string { return tailOf(lines, p.proc) }

// PID is the provider process's id, for /proc measurements.
func (p *Provider) PID() int { return p.proc.cmd.Process.Pid }
