package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestAuditCountSince(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	entries := []string{
		`{"type":"request","request":{"path":"sys/policies/acl/x"}}`,
		`{"type":"response","request":{"path":"sys/policies/acl/x"}}`,
	}
	if err := os.WriteFile(path, []byte(strings.Join(entries, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a := &auditLog{path: path}
	off, err := a.offset()
	if err != nil {
		t.Fatal(err)
	}
	more := []string{
		`{"type":"request","request":{"path":"auth/kubernetes/login"}}`,
		`{"type":"response","request":{"path":"auth/kubernetes/login"}}`,
		`{"type":"request","request":{"path":"bench/data/shared/0"}}`,
		`{"type":"request","request":{"path":"bench/data/own/sa-0"}}`,
		`{"type":"response","request":{"path":"bench/data/own/sa-0"}}`,
		`{"type":"request","request":{"path":"auth/token/lookup-self"}}`,
		`{"type":"request","request":{"path":"bench-pki/issue/bench"}}`,
		`{"type":"request","request":{"path":"bench/data/half-written`,
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(strings.Join(more, "\n")); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := a.countSince(off)
	if err != nil {
		t.Fatal(err)
	}
	want := VaultCounts{Logins: 1, Reads: 2, Leases: 1, Other: 1, OtherPaths: map[string]int{"auth/token/lookup-self": 1}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("countSince (-want +got):\n%s", diff)
	}
}

func TestParseRequestTotals(t *testing.T) {
	const text = `# HELP apiserver_request_total [STABLE] Counter of apiserver requests
# TYPE apiserver_request_total counter
apiserver_request_total{code="201",component="apiserver",dry_run="",group="authentication.k8s.io",resource="tokenreviews",scope="resource",subresource="",verb="POST",version="v1"} 7
apiserver_request_total{code="403",component="apiserver",dry_run="",group="authentication.k8s.io",resource="tokenreviews",scope="resource",subresource="",verb="POST",version="v1"} 2
apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="serviceaccounts",scope="resource",subresource="token",verb="POST",version="v1"} 12
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="",scope="",subresource="/metrics",verb="GET",version=""} 3
apiserver_request_duration_seconds_count{resource="tokenreviews"} 9
`
	want := map[string]int{"tokenreviews": 9, "serviceaccounts/token": 12}
	got := parseRequestTotals(text)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("parseRequestTotals (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]int{"tokenreviews": 2}, delta(got, map[string]int{"tokenreviews": 11, "serviceaccounts/token": 12})); diff != "" {
		t.Errorf("delta (-want +got):\n%s", diff)
	}
}
