package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"time"
)

// Config is one benchmark run.
type Config struct {
	// Socket is a provider's unix socket. Empty: build and start this
	// repository's provider (or ProviderBin) on a temporary providers dir.
	Socket string `json:"socket,omitempty"`
	// ProviderBin is a built vault-csi-provider to start instead of building
	// one, e.g. an older release to compare with.
	ProviderBin string `json:"providerBin,omitempty"`
	// PID is the external provider's process, for /proc measurements.
	PID int `json:"pid,omitempty"`
	// ProviderArgs are extra flags for the provider the bench starts.
	ProviderArgs string `json:"providerArgs,omitempty"`
	// SocketWait is how long to wait for a provider to answer on Socket.
	SocketWait time.Duration `json:"-"`

	ServiceAccounts int `json:"serviceAccounts"` // S: service accounts, one Vault role each
	Pods            int `json:"pods"`            // P: pods, spread round-robin over the service accounts
	Objects         int `json:"objects"`         // O: objects per mount
	Secrets         int `json:"secrets"`         // K: shared KV v2 secrets (each service account also has its own)
	Concurrency     int `json:"concurrency"`     // C: mounts (or floor requests) in flight
	Rounds          int `json:"rounds"`          // rotation passes after the storm
	// Dynamic adds to every class a certificate from a PKI role with
	// generate_lease: each issue is a lease, counted per phase.
	Dynamic bool `json:"dynamic,omitempty"`

	// MountTimeout is each Mount's deadline: kubelet gives a CSI
	// NodePublishVolume two minutes.
	MountTimeout time.Duration `json:"-"`
	// Out is where the JSON results go; empty: nowhere.
	Out string `json:"-"`
}

// defaultConfig finishes in about a minute on 2 cores.
func defaultConfig() Config {
	return Config{
		SocketWait:      5 * time.Minute,
		ServiceAccounts: 20,
		Pods:            200,
		Objects:         5,
		Secrets:         5,
		Concurrency:     50,
		Rounds:          1,
		MountTimeout:    2 * time.Minute,
	}
}

// parseFlags reads the command line over defaultConfig.
func parseFlags(args []string, output io.Writer) (Config, error) {
	c := defaultConfig()
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(output)
	fs.Usage = func() {
		_, _ = fmt.Fprintf(output, "Usage: go run ./test/bench [flags]\n\n"+
			"Storms a v1alpha1 provider with pod mounts against a real Vault and kube-apiserver,\n"+
			"then replays them as the driver's rotation poll, and compares with the minimum Vault work.\n"+
			"See docs/benchmark.md.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&c.Socket, "socket", c.Socket, "`path` of a provider's unix socket; empty: build and start this repository's provider")
	fs.StringVar(&c.ProviderBin, "provider-bin", c.ProviderBin, "vault-csi-provider `binary` to start instead of building this repository's (ignored with -socket)")
	fs.IntVar(&c.PID, "pid", c.PID, "`pid` of the provider on -socket, to report its CPU and peak RSS from /proc")
	fs.StringVar(&c.ProviderArgs, "provider-args", c.ProviderArgs, "extra `flags` for the provider the bench starts, space-separated (e.g. -read-cache-ttl=5s)")
	fs.DurationVar(&c.SocketWait, "socket-wait", c.SocketWait, "how long to wait for the provider on -socket to answer Version")
	fs.IntVar(&c.ServiceAccounts, "sas", c.ServiceAccounts, "service accounts (S), one Vault role and policy each")
	fs.IntVar(&c.Pods, "pods", c.Pods, "pods (P), spread round-robin over the service accounts")
	fs.IntVar(&c.Objects, "objects", c.Objects, "objects per mount (O), alternating the service account's own secret and shared secrets")
	fs.IntVar(&c.Secrets, "secrets", c.Secrets, "shared KV v2 secrets (K); each service account also gets its own")
	fs.IntVar(&c.Concurrency, "concurrency", c.Concurrency, "mounts in flight (C); the floor keeps as many Vault requests in flight")
	fs.IntVar(&c.Rounds, "rounds", c.Rounds, "rotation passes after the storm")
	fs.BoolVar(&c.Dynamic, "dynamic", c.Dynamic, "add to every class a certificate issued by a PKI role with generate_lease, and count the leases each phase creates")
	fs.DurationVar(&c.MountTimeout, "mount-timeout", c.MountTimeout, "deadline of each Mount call")
	fs.StringVar(&c.Out, "json", c.Out, "write the results as JSON to this `file`")
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return c, c.validate()
}

func (c Config) validate() error {
	var errs []error
	positive := func(name string, v int) {
		if v < 1 {
			errs = append(errs, fmt.Errorf("-%s must be at least 1, not %d", name, v))
		}
	}
	positive("sa", c.ServiceAccounts)
	positive("pods", c.Pods)
	positive("objects", c.Objects)
	positive("secrets", c.Secrets)
	positive("concurrency", c.Concurrency)
	if c.Rounds < 0 {
		errs = append(errs, fmt.Errorf("-rounds must not be negative, not %d", c.Rounds))
	}
	if c.Pods < c.ServiceAccounts {
		errs = append(errs, fmt.Errorf("-pods (%d) must be at least -sas (%d): every service account runs a pod", c.Pods, c.ServiceAccounts))
	}
	if c.MountTimeout <= 0 {
		errs = append(errs, errors.New("-mount-timeout must be positive"))
	}
	return errors.Join(errs...)
}
