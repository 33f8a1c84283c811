package testbed

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"syscall"
)

// The controls here inject the faults a provider must survive: a crashed or
// sealed Vault, an apiserver outage, a provider restarted under load.

// Kill ends the Vault server with SIGKILL, as a crash or an OOM kill would:
// no graceful shutdown, connections cut mid-request.
func (v *Vault) Kill() error {
	return v.proc.kill()
}

// Restart starts a new dev server on the same address after Kill. A dev
// server keeps everything in memory, so the new one is empty, with the same
// root token: the caller configures it again, as an operator would restore
// or re-apply configuration.
func (v *Vault) Restart(ctx context.Context) error {
	if v.proc != nil && !v.proc.exited() {
		return errors.New("vault: Restart needs the server stopped first (Kill)")
	}
	u, err := url.Parse(v.Addr)
	if err != nil {
		return err
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		return fmt.Errorf("vault: port of %s: %w", v.Addr, err)
	}
	v.scenario, v.auditPath = nil, ""
	return v.start(ctx, port)
}

// Seal seals the server (sys/seal): every request then gets 503 "Vault is
// sealed" until Unseal.
func (v *Vault) Seal(ctx context.Context) error {
	return v.Client.Sys().SealWithContext(ctx)
}

// unsealKey matches the line a dev server prints at start.
var unsealKey = regexp.MustCompile(`(?m)^Unseal Key: (\S+)$`)

// Unseal unseals the server with the key the dev server printed when it
// started, and waits until it is active again.
func (v *Vault) Unseal(ctx context.Context) error {
	keys := unsealKey.FindAllStringSubmatch(v.proc.logs(), -1)
	if len(keys) == 0 {
		return errors.New("vault: no unseal key in the dev server's log")
	}
	// A restarted server appends to the log: its key is the last one.
	if _, err := v.Client.Sys().UnsealWithContext(ctx, keys[len(keys)-1][1]); err != nil {
		return fmt.Errorf("vault: unseal: %w", err)
	}
	return waitReady(ctx, v.proc, "sys/health after unseal", v.healthy)
}

// StopAPIServer stops kube-apiserver (etcd keeps the cluster's state):
// TokenReview, TokenRequest and every other API call fail until
// StartAPIServer.
func (k *Kube) StopAPIServer() error {
	return k.apiserver.stop()
}

// StartAPIServer starts kube-apiserver again on the address it had, so
// clients configured with Host (Vault's Kubernetes auth, kubeconfigs) reach
// it again without reconfiguration.
func (k *Kube) StartAPIServer(ctx context.Context) error {
	if k.apiserver != nil && !k.apiserver.exited() {
		return errors.New("kube: StartAPIServer needs the apiserver stopped first")
	}
	u, err := url.Parse(k.Host)
	if err != nil {
		return err
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		return fmt.Errorf("kube: port of %s: %w", k.Host, err)
	}
	return k.runAPIServer(ctx, port)
}

// Terminate sends SIGTERM to the provider, as kubelet does on a rollout,
// and waits for it to exit (SIGKILL after the bed's stop timeout). Close is
// still needed to remove its directory.
func (p *Provider) Terminate() error {
	return p.proc.stop()
}

// Kill ends the provider with SIGKILL, as an OOM kill would: no drain, and
// its socket file stays behind.
func (p *Provider) Kill() error {
	return p.proc.kill()
}

// kill sends SIGKILL to the process group and waits for the exit.
func (p *process) kill() error {
	if p == nil || p.exited() {
		return nil
	}
	p.stopped.Store(true)
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
	return nil
}
