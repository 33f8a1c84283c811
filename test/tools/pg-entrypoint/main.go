// Command pg-entrypoint is the entrypoint of the test bed's PostgreSQL 15
// image (okevault.test/postgres:15, Debian's server binaries): what the
// official postgres image's docker-entrypoint.sh does for a first start,
// which the peer's e2e suite relies on. It honours POSTGRES_USER (default
// postgres), POSTGRES_PASSWORD (required) and POSTGRES_DB (default the
// user): started as root it makes the data and socket folders for the
// image's user, drops to it, runs initdb (password authentication over
// TCP from anywhere, trust on the local socket), creates the database in
// single-user mode, and execs postgres listening on every address.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

const (
	// bin is where Debian installs the server's binaries; their share and
	// library folders are found relative to it.
	bin = "/usr/lib/postgresql/15/bin"
	// uid is the image's unprivileged user (nonroot): postgres refuses root.
	uid = 65532
	// socketDir is the compiled-in socket folder of Debian's build.
	socketDir = "/var/run/postgresql"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "pg-entrypoint:", err)
		os.Exit(1)
	}
}

func run() error {
	data := envOr("PGDATA", "/var/lib/postgresql/data")
	user := envOr("POSTGRES_USER", "postgres")
	db := envOr("POSTGRES_DB", user)
	password := os.Getenv("POSTGRES_PASSWORD")
	if password == "" {
		return errors.New("POSTGRES_PASSWORD is empty: the image has no trust-everyone mode")
	}
	if os.Geteuid() == 0 {
		if err := dropRoot(data); err != nil {
			return err
		}
	}
	if _, err := os.Stat(filepath.Join(data, "PG_VERSION")); errors.Is(err, os.ErrNotExist) {
		if err := initialise(data, user, password, db); err != nil {
			return err
		}
	}
	args := []string{"postgres", "-D", data, "-c", "listen_addresses=*"}
	return syscall.Exec(filepath.Join(bin, "postgres"), args, os.Environ()) //nolint:gosec // G204: the image's own postgres
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// dropRoot makes the folders postgres writes, owned by uid, and becomes uid.
func dropRoot(data string) error {
	for _, dir := range []string{data, socketDir} {
		// Parents stay traversable: MkdirAll would give them dir's 0700.
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil { //nolint:gosec // G301: system folders such as /var/lib
			return err
		}
		if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
		if err := os.Chown(dir, uid, uid); err != nil {
			return err
		}
	}
	if err := syscall.Setgroups(nil); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setgid(uid); err != nil {
		return fmt.Errorf("setgid: %w", err)
	}
	if err := syscall.Setuid(uid); err != nil {
		return fmt.Errorf("setuid: %w", err)
	}
	return nil
}

// initialise runs initdb with the superuser user and password (through a
// file, never an argument), opens TCP to every address with a password, and
// creates database db.
func initialise(data, user, password, db string) error {
	pwfile, err := os.CreateTemp("", "pwfile")
	if err != nil {
		return err
	}
	defer func() { _ = os.Remove(pwfile.Name()) }()
	if _, err := pwfile.WriteString(password + "\n"); err != nil {
		return err
	}
	if err := pwfile.Close(); err != nil {
		return err
	}
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", user, "--pwfile="+pwfile.Name(), //nolint:gosec,noctx // G204: the image's own initdb
		"-E", "UTF8", "--no-locale", "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync")
	initdb.Stdout, initdb.Stderr = os.Stdout, os.Stderr
	if err := initdb.Run(); err != nil {
		return fmt.Errorf("initdb: %w", err)
	}
	hba, err := os.OpenFile(filepath.Join(data, "pg_hba.conf"), os.O_APPEND|os.O_WRONLY, 0) //nolint:gosec // G304: the file initdb just wrote
	if err != nil {
		return err
	}
	if _, err := hba.WriteString("host all all all scram-sha-256\n"); err != nil {
		return errors.Join(err, hba.Close())
	}
	if err := hba.Close(); err != nil {
		return err
	}
	if db == "postgres" {
		return nil
	}
	single := exec.Command(filepath.Join(bin, "postgres"), "--single", "-D", data, "postgres") //nolint:gosec,noctx // G204: the image's own postgres
	single.Stdin = strings.NewReader(`CREATE DATABASE "` + strings.ReplaceAll(db, `"`, `""`) + `"` + "\n")
	single.Stdout, single.Stderr = os.Stdout, os.Stderr
	if err := single.Run(); err != nil {
		return fmt.Errorf("create database %q: %w", db, err)
	}
	return nil
}
