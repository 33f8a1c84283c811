package testbed

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	vaultapi "github.com/hashicorp/vault/api"
)

// StartVaultHA starts an HA Vault of n servers for the test (see NewVaultHA)
// and stops them at cleanup, printing their log tails if the test failed.
func StartVaultHA(t testing.TB, etcdURL string, n int) []*Vault {
	t.Helper()
	skipShort(t)
	nodes, err := NewVaultHA(t.Context(), etcdURL, n)
	must(t, err)
	t.Cleanup(func() {
		for i, v := range nodes {
			if t.Failed() {
				t.Logf("==== vault node %d ====\n%s", i, v.LogTail(tailLines))
			}
			if err := v.Close(); err != nil {
				t.Errorf("testbed: %v", err)
			}
		}
	})
	return nodes
}

// NewVaultHA starts n real Vault servers (not dev servers) that share HA
// storage in the etcd at etcdURL, under a prefix of their own. Clustering is
// off, so no standby can forward a request to the active node: it answers
// 307 with the active node's api_addr, as Vault standbys do whenever request
// forwarding is not possible. The first server is initialised (one key
// share), unsealed and active; the others are unsealed standbys. Every
// returned Vault has the root token.
func NewVaultHA(ctx context.Context, etcdURL string, n int) (_ []*Vault, err error) {
	if n < 1 {
		return nil, errors.New("vault HA: no servers asked for")
	}
	var nodes []*Vault
	defer func() {
		if err != nil {
			for _, v := range nodes {
				err = errors.Join(err, v.Close())
			}
		}
	}()
	prefix := ""
	for i := range n {
		v, err := startHANode(ctx, etcdURL, prefix)
		if err != nil {
			return nil, fmt.Errorf("vault HA node %d: %w", i, err)
		}
		nodes = append(nodes, v)
		prefix = filepath.Base(nodes[0].Dir) + "/" // unique to this HA Vault
	}

	init, err := nodes[0].Client.Sys().InitWithContext(ctx, &vaultapi.InitRequest{SecretShares: 1, SecretThreshold: 1})
	if err != nil {
		return nil, fmt.Errorf("vault HA: init: %w", err)
	}
	for i, v := range nodes {
		v.RootToken = init.RootToken
		v.Client.SetToken(init.RootToken)
		if _, err := v.Client.Sys().UnsealWithContext(ctx, init.Keys[0]); err != nil {
			return nil, fmt.Errorf("vault HA node %d: unseal: %w", i, err)
		}
		want := v.healthy // the first becomes active
		if i > 0 {
			want = v.standby
		}
		if err := waitReady(ctx, v.proc, "HA role", want); err != nil {
			return nil, fmt.Errorf("vault HA node %d: %w", i, err)
		}
	}
	return nodes, nil
}

// startHANode starts one server of NewVaultHA in a new directory, sealed
// and, for the first, not initialised; an empty prefix is the directory's
// name. The port is taken before the config is written: one taken meanwhile
// fails the start, which is rare enough here not to retry.
func startHANode(ctx context.Context, etcdURL, prefix string) (_ *Vault, err error) {
	bin, err := Bin("vault")
	if err != nil {
		return nil, err
	}
	dir, _, err := partDir("", "testbed-vaultha-")
	if err != nil {
		return nil, err
	}
	v := &Vault{Dir: dir, ownDir: true}
	defer func() {
		if err != nil {
			err = errors.Join(err, v.Close())
		}
	}()
	if prefix == "" {
		prefix = filepath.Base(dir) + "/"
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := "http://" + hostPort(port)
	config := fmt.Sprintf(`storage "etcd" {
  address    = %q
  etcd_api   = "v3"
  ha_enabled = "true"
  path       = %q
}
listener "tcp" {
  address     = %q
  tls_disable = true
}
api_addr           = %q
disable_clustering = true
disable_mlock      = true
`, etcdURL, prefix, hostPort(port), addr)
	configPath := filepath.Join(dir, "vault.hcl")
	if err := os.WriteFile(configPath, []byte(config), 0o600); err != nil {
		return nil, err
	}
	v.Addr = addr
	v.proc, err = startProcess(dir, "vault", childEnv("HOME="+dir, "VAULT_LOG_FORMAT=standard"), bin, "server", "-config="+configPath)
	if err != nil {
		return nil, err
	}
	if v.Client, err = newVaultClient(addr, ""); err != nil {
		return nil, err
	}
	err = waitReady(ctx, v.proc, "sys/seal-status", func(ctx context.Context) error {
		_, err := v.Client.Sys().SealStatusWithContext(ctx)
		return err
	})
	if err != nil {
		return nil, err
	}
	return v, nil
}

// standby is nil when the server is an unsealed standby.
func (v *Vault) standby(ctx context.Context) error {
	h, err := v.Client.Sys().HealthWithContext(ctx)
	switch {
	case err != nil:
		return err
	case h.Sealed || !h.Standby:
		return fmt.Errorf("health: sealed=%t standby=%t", h.Sealed, h.Standby)
	}
	return nil
}
