package hostile

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"
)

// headersServer is a server of a class's author that logs anyone in with a
// response of 2,000 small distinct headers (~150 KB): within Go's default
// bound of 10 MiB, each read in flight would hold them all.
func headersServer() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		for i := range 2000 {
			w.Header().Set(fmt.Sprintf("X-Pad-%d", i), strings.Repeat("x", 64))
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"auth":{"client_token":"hvs.hostile","lease_duration":3600}}`))
	})
}

// withParams is request's MountRequest with more class parameters.
func withParams(t *testing.T, r *v1alpha1.MountRequest, params map[string]string) *v1alpha1.MountRequest {
	t.Helper()
	var attrs map[string]string
	if err := json.Unmarshal([]byte(r.GetAttributes()), &attrs); err != nil {
		t.Fatal(err)
	}
	for k, v := range params {
		attrs[k] = v
	}
	b, err := json.Marshal(attrs)
	if err != nil {
		t.Fatal(err)
	}
	r.Attributes = string(b)
	return r
}

// threadsOf is the process's OS thread count, from /proc/<pid>/status.
func threadsOf(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no Threads in /proc/%d/status", pid)
	return 0
}

// TestHostileFiles runs the provider binary with an allowed TLS directory
// and sends it, each against a provider process of its own, classes
// naming as TLS files an endless device (a symlink to /dev/zero in the
// allowed directory), a pipe a writer holds open and never writes to, a
// 2 MiB file and a file outside the allowed directory, and a class whose
// server answers with many headers; 4 pods each for 3 rounds, beside
// innocent pods mounting over and over (run says what it asserts of every
// class). Every hostile mount fails with its code and reason, and the
// provider's OS thread count is back to where it was (none left parked on
// the pipe). Logged: go test -v -run TestHostileFiles ./test/hostile/ | grep HOSTILE
func TestHostileFiles(t *testing.T) {
	allowed, outside := t.TempDir(), t.TempDir()
	zero := filepath.Join(allowed, "zero.pem")
	if err := os.Symlink("/dev/zero", zero); err != nil {
		t.Fatal(err)
	}
	pipe := filepath.Join(allowed, "pipe.pem")
	if err := syscall.Mkfifo(pipe, 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := os.OpenFile(pipe, os.O_RDWR, 0) // holds the write end open without writing
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	big := filepath.Join(allowed, "big.pem")
	if err := os.WriteFile(big, []byte(strings.Repeat("a", 2<<20)), 0o600); err != nil {
		t.Fatal(err)
	}
	elsewhere := filepath.Join(outside, "ca.pem")
	if err := os.WriteFile(elsewhere, []byte("not read"), 0o600); err != nil {
		t.Fatal(err)
	}

	hostile := map[string]struct {
		server http.Handler
		params map[string]string
		code   codes.Code
		reason string
	}{
		"an endless device":     {nil, map[string]string{"vaultCACertPath": zero}, codes.InvalidArgument, "not a regular file"},
		"a pipe held open":      {nil, map[string]string{"vaultCACertPath": pipe}, codes.InvalidArgument, "not a regular file"},
		"a pipe as client key":  {nil, map[string]string{"vaultTLSClientCertPath": big, "vaultTLSClientKeyPath": pipe}, codes.InvalidArgument, "vaultTLSClient"},
		"a 2 MiB file":          {nil, map[string]string{"vaultCACertPath": big}, codes.InvalidArgument, "larger than"},
		"a file outside":        {nil, map[string]string{"vaultCACertPath": elsewhere}, codes.InvalidArgument, "-allowed-tls-directories"},
		"2,000 headers":         {headersServer(), nil, codes.ResourceExhausted, "headers"},
		"the pipe as directory": {nil, map[string]string{"vaultCADirectory": pipe}, codes.InvalidArgument, "not a directory"},
	}
	for name, c := range hostile {
		t.Run(name, func(t *testing.T) {
			o := run(t, attack{
				args:   []string{"-allowed-tls-directories=" + allowed},
				server: c.server,
				request: func(t *testing.T, addr, pod string) *v1alpha1.MountRequest {
					return withParams(t, request(t, addr, innocentObjects, "attacker", pod), c.params)
				},
				pods: 4, rounds: 3,
			})
			for _, err := range o.errs {
				if status.Code(err) != c.code || !strings.Contains(status.Convert(err).Message(), c.reason) {
					t.Errorf("%v; want %s saying %q", err, c.code, c.reason)
				}
			}
			// The runtime may start a thread or two for load; a thread
			// parked on the pipe per hostile mount would be 12.
			if o.threadsAfter > o.threadsBefore+4 {
				t.Errorf("provider threads: %d before the hostile mounts, %d after", o.threadsBefore, o.threadsAfter)
			}
		})
	}
}
