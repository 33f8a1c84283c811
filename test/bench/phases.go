package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"
)

// driverServiceConfig is the driver's gRPC service config for provider
// clients (pkg/secrets-store ServiceConfig): wait for the socket, and retry
// UNAVAILABLE up to 3 attempts.
const driverServiceConfig = `{
	"methodConfig": [{
		"name": [{"service": "v1alpha1.CSIDriverProvider"}],
		"waitForReady": true,
		"retryPolicy": {
			"MaxAttempts": 3,
			"InitialBackoff": "1s",
			"MaxBackoff": "10s",
			"BackoffMultiplier": 1.1,
			"RetryableStatusCodes": ["UNAVAILABLE"]
		}
	}]
}`

// maxResponse is the driver's default --max-call-recv-msg-size.
const maxResponse = 4 << 20

// dial connects to a provider socket as the driver does: one connection
// shared by every mount.
func dial(socket string) (*grpc.ClientConn, error) {
	conn, err := grpc.NewClient("unix://"+socket,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(driverServiceConfig),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxResponse)),
	)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", socket, err)
	}
	return conn, nil
}

// waitVersion calls Version, as the driver's health check does, until the
// provider answers or wait passes.
func waitVersion(ctx context.Context, client v1alpha1.CSIDriverProviderClient, wait time.Duration) (*v1alpha1.VersionResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		v, err := client.Version(cctx, &v1alpha1.VersionRequest{Version: "v1alpha1"})
		ccancel()
		if err == nil {
			return v, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("provider did not answer Version within %s: %w", wait, err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// mountCall is one Mount the driver would send, and what it must return.
type mountCall struct {
	pod  *pod
	req  *v1alpha1.MountRequest
	want map[string]string // file path → content
}

// outcome is how one call went.
type outcome struct {
	latency time.Duration
	code    string // "OK", a gRPC code, "provider:<code>" or "BadResponse"
	detail  string // for the first error of each code
	resp    *v1alpha1.MountResponse
}

// codeBadResponse is an OK answer whose files are not the secrets' values.
const codeBadResponse = "BadResponse"

// runMounts sends calls with concurrency in flight, in order, each with its
// own deadline. It fails only when ctx ends.
func runMounts(ctx context.Context, client v1alpha1.CSIDriverProviderClient, calls []mountCall, concurrency int, timeout time.Duration) ([]outcome, time.Duration, error) {
	out := make([]outcome, len(calls))
	next := make(chan int)
	var wg sync.WaitGroup
	start := time.Now()
	for range min(concurrency, len(calls)) {
		wg.Go(func() {
			for i := range next {
				out[i] = mountOnce(ctx, client, calls[i], timeout)
			}
		})
	}
feed:
	for i := range calls {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	wall := time.Since(start)
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	return out, wall, nil
}

func mountOnce(ctx context.Context, client v1alpha1.CSIDriverProviderClient, c mountCall, timeout time.Duration) outcome {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t0 := time.Now()
	resp, err := client.Mount(ctx, c.req)
	o := outcome{latency: time.Since(t0), code: "OK", resp: resp}
	switch {
	case err != nil:
		st := status.Convert(err)
		o.code, o.detail = st.Code().String(), st.Message()
	case resp.GetError().GetCode() != "":
		o.code = "provider:" + resp.GetError().GetCode()
	default:
		if d := checkFiles(resp, c.want); d != "" {
			o.code, o.detail = codeBadResponse, d
		}
	}
	return o
}

// checkFiles compares the answer with the secrets' values; the difference
// it reports names files, never values.
func checkFiles(resp *v1alpha1.MountResponse, want map[string]string) string {
	if len(resp.GetObjectVersion()) == 0 {
		return "no object versions (the driver refuses the answer)"
	}
	got := make(map[string]string, len(resp.GetFiles()))
	for _, f := range resp.GetFiles() {
		got[f.GetPath()] = string(f.GetContents())
	}
	for name, w := range want {
		g, ok := got[name]
		switch {
		case !ok:
			return fmt.Sprintf("file %q missing", name)
		case w == certPrefix && strings.HasPrefix(g, certPrefix):
			// the -dynamic certificate: any one will do
		case g != w:
			return fmt.Sprintf("file %q holds something other than the secret's value", name)
		}
	}
	if len(got) != len(want) {
		return fmt.Sprintf("%d files, want %d", len(got), len(want))
	}
	return ""
}

// floorRequest is one Vault request of the floor: a login when path is "".
type floorRequest struct {
	id   int
	path string
}

// runFloor does the least Vault work that gives every pod its objects: per
// identity one login (with the token of one of its pods) and one read of each
// distinct path, with concurrency requests in flight. It returns each
// request's latency and outcome (Mount-like codes: "OK" or the HTTP status).
func runFloor(ctx context.Context, vaultAddr string, p *plan, concurrency int) ([]outcome, time.Duration, error) {
	base, err := floorClient(vaultAddr, concurrency)
	if err != nil {
		return nil, 0, err
	}
	jwt := map[*identity]string{} // the token of the identity's first pod
	for _, pd := range p.pods {
		if _, ok := jwt[pd.id]; !ok {
			jwt[pd.id] = pd.token
		}
	}

	queue := make(chan floorRequest, len(p.identities)+p.floorReads())
	clients := make([]*vaultapi.Client, len(p.identities)) // written by the login, before its reads are queued
	var (
		mu      sync.Mutex
		out     []outcome
		pending sync.WaitGroup
		workers sync.WaitGroup
	)
	record := func(o outcome) {
		mu.Lock()
		out = append(out, o)
		mu.Unlock()
	}
	pending.Add(len(p.identities))
	for i := range p.identities {
		queue <- floorRequest{id: i}
	}
	start := time.Now()
	for range concurrency {
		workers.Go(func() {
			for r := range queue {
				id := p.identities[r.id]
				t0 := time.Now()
				if r.path == "" {
					c, err := floorLogin(ctx, base, id.role, jwt[id])
					record(floorOutcome(time.Since(t0), err))
					if err == nil {
						clients[r.id] = c
						pending.Add(len(id.paths))
						for _, path := range id.paths {
							queue <- floorRequest{id: r.id, path: path}
						}
					}
				} else {
					_, err := clients[r.id].Logical().ReadWithContext(ctx, r.path)
					record(floorOutcome(time.Since(t0), err))
				}
				pending.Done()
			}
		})
	}
	pending.Wait()
	wall := time.Since(start)
	close(queue)
	workers.Wait()
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	return out, wall, nil
}

// floorClient is a Vault client whose connection pool fits concurrency.
func floorClient(addr string, concurrency int) (*vaultapi.Client, error) {
	cfg := vaultapi.DefaultConfig()
	if cfg.Error != nil {
		return nil, cfg.Error
	}
	cfg.Address = addr
	cfg.AgentAddress = ""
	if t, ok := cfg.HttpClient.Transport.(*http.Transport); ok {
		t.MaxIdleConnsPerHost = concurrency
	}
	c, err := vaultapi.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("vault client: %w", err)
	}
	c.ClearNamespace()
	c.ClearToken()
	return c, nil
}

// floorLogin logs in as role and returns a client with the Vault token.
func floorLogin(ctx context.Context, base *vaultapi.Client, role, jwt string) (*vaultapi.Client, error) {
	c, err := base.Clone()
	if err != nil {
		return nil, err
	}
	s, err := c.Logical().WriteWithContext(ctx, "auth/"+authMount+"/login", map[string]any{"role": role, "jwt": jwt})
	if err != nil {
		return nil, err
	}
	if s == nil || s.Auth == nil || s.Auth.ClientToken == "" {
		return nil, errors.New("login answered without a token")
	}
	c.SetToken(s.Auth.ClientToken)
	return c, nil
}

func floorOutcome(d time.Duration, err error) outcome {
	o := outcome{latency: d, code: "OK"}
	if err != nil {
		o.code, o.detail = "Error", err.Error()
		var re *vaultapi.ResponseError
		if errors.As(err, &re) {
			o.code = fmt.Sprintf("HTTP %d", re.StatusCode)
		}
	}
	return o
}
