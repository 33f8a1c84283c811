package testbed

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// KeepEnv names an environment variable that, set non-empty, keeps each
// part's temporary directory (logs, certificates, data) after Close, for
// post-mortems.
const KeepEnv = "OKEVAULT_TESTBED_KEEP"

// startTimeout bounds how long a part may take to become ready when the
// caller's context has no deadline.
const startTimeout = 2 * time.Minute

// stopTimeout is how long a part gets to exit after SIGTERM before SIGKILL.
const stopTimeout = 15 * time.Second

// tailLines is how much of each log a failing test prints.
const tailLines = 100

// Part is a running component whose logs a failing test wants to see.
type Part interface {
	// LogTail returns the last lines of each of the part's process logs.
	LogTail(lines int) string
}

// LogOnFailure prints the log tails of parts when t has failed, at cleanup.
// Start* helpers do this for the parts they start; use it for parts shared
// through TestMain.
func LogOnFailure(t testing.TB, parts ...Part) {
	t.Helper()
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, p := range parts {
			if p != nil {
				t.Log(p.LogTail(tailLines))
			}
		}
	})
}

// process is one child process whose stdout and stderr go to a log file.
type process struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
	// stopped is set once stop or kill ended the process on purpose, so a
	// later stop (Close after a fault injection) is not an unexpected exit.
	stopped atomic.Bool
}

// startProcess starts bin with args, logging to <dir>/<name>.log. The child
// gets its own process group (so stop reaches its children) and SIGKILL when
// the test binary dies without cleaning up.
func startProcess(dir, name string, env []string, bin string, args ...string) (*process, error) {
	logPath := filepath.Join(dir, name+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600) //nolint:gosec // G304: the part's own log
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	cmd := exec.Command(bin, args...) //nolint:gosec,noctx // the test bed runs its own pinned binaries; lifetime is managed by stop
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.Env = env
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		_ = logFile.Close()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process group, then SIGKILL after stopTimeout.
// An exit caused by the signal is not an error.
func (p *process) stop() error {
	if p == nil {
		return nil
	}
	if p.exited() {
		if p.stopped.Load() {
			return nil
		}
		return p.unexpectedExit()
	}
	p.stopped.Store(true)
	pgid := -p.cmd.Process.Pid
	_ = syscall.Kill(pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		_ = syscall.Kill(pgid, syscall.SIGKILL)
		<-p.done
		return fmt.Errorf("%s did not exit within %s of SIGTERM; killed", p.name, stopTimeout)
	}
	// Leftover children of the group (if any) get no grace.
	_ = syscall.Kill(pgid, syscall.SIGKILL)
	return nil
}

// unexpectedExit describes a process that ended before stop was called.
func (p *process) unexpectedExit() error {
	status := p.waitErr
	if status == nil {
		status = errors.New("exit status 0")
	}
	return fmt.Errorf("%s exited early (%w); log %s:\n%s", p.name, status, p.logPath, p.tail(tailLines))
}

func (p *process) logs() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(read %s: %v)", p.logPath, err)
	}
	return string(b)
}

func (p *process) tail(n int) string {
	return lastLines(p.logs(), n)
}

// tailOf formats the tails of several processes for LogTail.
func tailOf(n int, procs ...*process) string {
	var b strings.Builder
	for _, p := range procs {
		if p == nil {
			continue
		}
		fmt.Fprintf(&b, "==== %s (last %d lines of %s) ====\n%s\n", p.name, n, p.logPath, p.tail(n))
	}
	return b.String()
}

// logsOf concatenates whole logs for Logs.
func logsOf(procs ...*process) string {
	var b strings.Builder
	for _, p := range procs {
		if p == nil {
			continue
		}
		fmt.Fprintf(&b, "==== %s (%s) ====\n%s\n", p.name, p.logPath, p.logs())
	}
	return b.String()
}

func lastLines(s string, n int) string {
	s = strings.TrimRight(s, "\n")
	idx := len(s)
	for i := 0; i < n; i++ {
		j := strings.LastIndexByte(s[:idx], '\n')
		if j < 0 {
			return s
		}
		idx = j
	}
	return s[idx+1:]
}

// waitReady polls check until it succeeds, the process exits, or ctx ends.
func waitReady(ctx context.Context, p *process, what string, check func(context.Context) error) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, startTimeout)
		defer cancel()
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		last = check(cctx)
		cancel()
		if last == nil {
			return nil
		}
		select {
		case <-p.done:
			return p.unexpectedExit()
		case <-ctx.Done():
			return fmt.Errorf("%s: %s not ready: %w (last check: %w); log %s:\n%s",
				p.name, what, ctx.Err(), last, p.logPath, p.tail(tailLines))
		case <-tick.C:
		}
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) { return freePortOn(net.IPv4(127, 0, 0, 1)) }

func hostPort(port int) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// childEnv is the test's environment without variables that would point a
// child at something other than the test bed, plus extra.
func childEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k == "KUBECONFIG" || strings.HasPrefix(k, "VAULT_") || strings.HasPrefix(k, "KUBERNETES_SERVICE_") ||
			k == "HTTP_PROXY" || k == "HTTPS_PROXY" || k == "http_proxy" || k == "https_proxy" {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// ownerFile, in a directory partDir created, holds the creating process's
// PID, so a later run can remove directories that a killed run left.
const ownerFile = ".testbed-owner"

// partDir returns dir, or a new temporary directory that removeDir will delete.
func partDir(dir, pattern string) (string, bool, error) {
	if dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return "", false, fmt.Errorf("create %s: %w", dir, err)
		}
		return dir, false, nil
	}
	sweepOnce.Do(sweepStale)
	d, err := os.MkdirTemp("", pattern)
	if err != nil {
		return "", false, fmt.Errorf("create temporary directory: %w", err)
	}
	if err := os.WriteFile(filepath.Join(d, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		return "", false, fmt.Errorf("create temporary directory: %w", err)
	}
	return d, true, nil
}

var sweepOnce sync.Once

// sweepStale removes the temporary directories of test processes that died
// without Close (a -timeout panic, a killed `go test`): their children died
// with them (Pdeathsig), but a driver's tmpfs mounts and the files stay.
func sweepStale() {
	if os.Getenv(KeepEnv) != "" {
		return
	}
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "testbed-*"))
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, ownerFile)) //nolint:gosec // G304: our marker in a testbed-* temp dir
		if err != nil {
			continue // not ours, or still being created
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 || pid == os.Getpid() || !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
			continue // the owner lives
		}
		if unmountUnder(d) == nil {
			_ = os.RemoveAll(d)
		}
	}
}

// removeDir deletes a directory the part created, unless KeepEnv is set.
func removeDir(dir string, owned bool) error {
	if !owned || dir == "" {
		return nil
	}
	if os.Getenv(KeepEnv) != "" {
		fmt.Fprintf(os.Stderr, "testbed: keeping %s (%s is set)\n", dir, KeepEnv)
		return nil
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}

// closeErrors joins the errors of a Close.
func closeErrors(errs ...error) error { return errors.Join(errs...) }
