package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"

	vaultapi "github.com/hashicorp/vault/api"
	"k8s.io/client-go/kubernetes"
)

// VaultCounts are the requests Vault served, from its audit log.
type VaultCounts struct {
	Logins int `json:"logins"` // auth/kubernetes/login
	Reads  int `json:"reads"`  // requests to the benchmark's KV mount
	// Leases is the -dynamic certificates issued: each is a new lease.
	Leases int `json:"leases"`
	Other  int `json:"other"` // anything else (token lookups, renewals, sys/...)
	// OtherPaths breaks Other down by request path.
	OtherPaths map[string]int `json:"otherPaths,omitempty"`
}

// auditLog is a file audit device of the benchmark's own, read from an
// offset so each phase counts only its own requests in one pass. (The test
// bed's EnableAudit/AuditCount re-read the whole log for every path.)
type auditLog struct{ path string }

// enableAudit has Vault log every request to path before serving it.
func enableAudit(ctx context.Context, c *vaultapi.Client, path string) (*auditLog, error) {
	err := c.Sys().EnableAuditWithOptionsWithContext(ctx, "bench", &vaultapi.EnableAuditOptions{
		Type: "file", Options: map[string]string{"file_path": path},
	})
	if err != nil {
		return nil, fmt.Errorf("enable audit: %w", err)
	}
	return &auditLog{path: path}, nil
}

// offset is where the next phase's entries will start.
func (a *auditLog) offset() (int64, error) {
	fi, err := os.Stat(a.path)
	if err != nil {
		return 0, fmt.Errorf("audit log: %w", err)
	}
	return fi.Size(), nil
}

// countSince counts the request entries written after off. Vault writes an
// entry before it handles the request, so once every call of a phase has
// returned, all of the phase's entries are in the file.
func (a *auditLog) countSince(off int64) (VaultCounts, error) {
	f, err := os.Open(a.path)
	if err != nil {
		return VaultCounts{}, fmt.Errorf("audit log: %w", err)
	}
	defer func() { _ = f.Close() }()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return VaultCounts{}, fmt.Errorf("audit log: %w", err)
	}
	c := VaultCounts{OtherPaths: map[string]int{}}
	login := "auth/" + authMount + "/login"
	r := bufio.NewReaderSize(f, 1<<20)
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 && line[len(line)-1] == '\n' {
			var e struct {
				Type    string `json:"type"`
				Request struct {
					Path string `json:"path"`
				} `json:"request"`
			}
			if json.Unmarshal(line, &e) == nil && e.Type == "request" {
				switch p := e.Request.Path; {
				case p == login:
					c.Logins++
				case strings.HasPrefix(p, kvMount+"/"):
					c.Reads++
				case p == pkiIssue:
					c.Leases++
				default:
					c.Other++
					c.OtherPaths[p]++
				}
			}
		}
		if errors.Is(err, io.EOF) {
			return c, nil
		}
		if err != nil {
			return VaultCounts{}, fmt.Errorf("audit log: %w", err)
		}
	}
}

// apiserverRequests reads kube-apiserver's apiserver_request_total, summed
// by resource ("tokenreviews", "serviceaccounts/token", ...). Vault's
// Kubernetes auth sends one TokenReview per login.
func apiserverRequests(ctx context.Context, client kubernetes.Interface) (map[string]int, error) {
	b, err := client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("apiserver /metrics: %w", err)
	}
	return parseRequestTotals(string(b)), nil
}

var labelRE = regexp.MustCompile(`(\w+)="([^"]*)"`)

// parseRequestTotals sums apiserver_request_total samples of the Prometheus
// text format by resource[/subresource]; requests without a resource are left out.
func parseRequestTotals(text string) map[string]int {
	const metric = "apiserver_request_total{"
	totals := map[string]int{}
	for line := range strings.Lines(text) {
		if !strings.HasPrefix(line, metric) {
			continue
		}
		end := strings.LastIndexByte(line, '}')
		if end < 0 {
			continue
		}
		fields := strings.Fields(line[end+1:])
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			continue
		}
		labels := map[string]string{}
		for _, m := range labelRE.FindAllStringSubmatch(line[len(metric):end], -1) {
			labels[m[1]] = m[2]
		}
		res := labels["resource"]
		if res == "" {
			continue
		}
		if sub := labels["subresource"]; sub != "" {
			res += "/" + sub
		}
		totals[res] += int(v)
	}
	return totals
}

// delta is after - before, without the zeros.
func delta(before, after map[string]int) map[string]int {
	d := map[string]int{}
	for k, v := range after {
		if n := v - before[k]; n != 0 {
			d[k] = n
		}
	}
	return d
}
