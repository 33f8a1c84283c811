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
	"syscall"
	"time"
)

// nobody is the user PostgreSQL runs as: it refuses to run as root.
const nobody = 65534

// Postgres is a throwaway PostgreSQL server for Vault's database secrets
// engine, whose credentials are renewable leases. It trusts every local
// connection: superuser postgres, any password.
type Postgres struct {
	Dir string
	// Addr is host:port on 127.0.0.1.
	Addr   string
	ownDir bool
	proc   *process
}

// NewPostgres runs initdb and postgres (from PATH, e.g. /usr/local/bin) as
// the user nobody, and waits until it accepts connections. A machine
// without PostgreSQL gets a *MissingBinaryError.
func NewPostgres(ctx context.Context) (_ *Postgres, err error) {
	var bins [2]string
	for i, name := range []string{"initdb", "postgres"} {
		if bins[i], err = exec.LookPath(name); err != nil {
			return nil, &MissingBinaryError{Name: name, Dir: "PATH"}
		}
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("postgres: the test bed starts it as nobody, which needs root")
	}
	dir, owned, err := partDir("", "testbed-postgres-")
	if err != nil {
		return nil, err
	}
	pg := &Postgres{Dir: dir, ownDir: owned}
	defer func() {
		if err != nil {
			err = errors.Join(err, pg.Close())
		}
	}()
	if err := os.Chown(dir, nobody, nobody); err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	asNobody := func(bin string, args ...string) (string, []string) {
		return "/usr/bin/setpriv", append([]string{"--reuid=" + strconv.Itoa(nobody), "--regid=" + strconv.Itoa(nobody), "--clear-groups", bin}, args...)
	}
	data := filepath.Join(dir, "data")
	name, args := asNobody(bins[0], "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
	if out, err := exec.CommandContext(ctx, name, args...).CombinedOutput(); err != nil { //nolint:gosec // the machine's own initdb
		return nil, fmt.Errorf("initdb: %w: %s", err, lastLines(string(out), 20))
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	name, args = asNobody(bins[1], "-D", data, "-h", "127.0.0.1", "-p", strconv.Itoa(port), "-k", dir, "-c", "fsync=off")
	if pg.proc, err = startProcess(dir, "postgres", childEnv(), name, args...); err != nil {
		return nil, err
	}
	pg.Addr = hostPort(port)
	err = waitReady(ctx, pg.proc, "accepting connections", func(context.Context) error {
		if !strings.Contains(pg.proc.logs(), "ready to accept connections") {
			return errors.New("not yet")
		}
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", pg.Addr)
		if err != nil {
			return err
		}
		return c.Close()
	})
	return pg, err
}

// ConnectionURL is a connection_url for Vault's postgresql-database-plugin.
func (p *Postgres) ConnectionURL() string {
	return "postgresql://{{username}}:{{password}}@" + p.Addr + "/postgres?sslmode=disable"
}

// Close stops the server and removes its directory.
func (p *Postgres) Close() error {
	if p == nil {
		return nil
	}
	var err error
	if p.proc != nil {
		// SIGINT is PostgreSQL's fast shutdown; the SIGTERM of stop would
		// wait for Vault to close its pooled connections.
		_ = p.proc.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-p.proc.done:
		case <-time.After(stopTimeout):
			err = p.proc.stop()
		}
		p.proc = nil
	}
	return closeErrors(err, removeDir(p.Dir, p.ownDir))
}

// LogTail returns the last lines of the server's log.
func (p *Postgres) LogTail(lines int) string { return tailOf(lines, p.proc) }
