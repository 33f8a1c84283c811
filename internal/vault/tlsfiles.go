package vault

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/okevault/vault-csi-provider/internal/config"
)

// Bounds on the TLS files a client is made from. A PEM CA bundle of a few
// hundred certificates, or a certificate and its key, is tens of kilobytes;
// a directory of CA certificates (one file each, as c_rehash keeps them) is
// a handful. The paths come from SecretProviderClasses, so a file may be
// anything a node has.
const (
	maxTLSFile = 1 << 20
	maxCAFiles = 256
	maxCABytes = 4 << 20
)

var (
	errNotRegular = errors.New("is not a regular file")
	errTLSTooBig  = errors.New("is larger than")
)

// openTLSFile opens path without blocking: a FIFO, a terminal or a device
// opened the ordinary way can park the OS thread in open(2) or read(2)
// until a writer comes, which for a process's own stdout is never.
// O_NONBLOCK makes open return at once; the caller then looks at what was
// opened (on the descriptor, so a swapped path cannot fool it) before
// reading.
func openTLSFile(path string, flags int) (*os.File, uint32, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY|flags, 0)
	if err != nil {
		return nil, 0, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		_ = unix.Close(fd)
		return nil, 0, err
	}
	return os.NewFile(uintptr(fd), path), st.Mode & unix.S_IFMT, nil
}

// readTLSFile reads a regular file of at most limit bytes.
func readTLSFile(path string, limit int64) ([]byte, error) {
	f, kind, err := openTLSFile(path, 0)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	return readOpened(f, kind, limit)
}

func readOpened(f *os.File, kind uint32, limit int64) ([]byte, error) {
	if kind != unix.S_IFREG {
		return nil, fmt.Errorf("%w (%s)", errNotRegular, kindName(kind))
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w %d bytes", errTLSTooBig, limit)
	}
	return b, nil
}

func kindName(kind uint32) string {
	switch kind {
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFIFO:
		return "a pipe"
	case unix.S_IFCHR:
		return "a character device"
	case unix.S_IFBLK:
		return "a block device"
	case unix.S_IFSOCK:
		return "a socket"
	}
	return "mode " + strconv.FormatUint(uint64(kind), 8)
}

// readCADirectory is every certificate in the files of dir, as Vault's
// CAPath takes them, bounded in files and bytes. Only dir's own entries are
// read (c_rehash's layout); subdirectories are skipped, which also skips
// the timestamped folders of a kubelet-mounted Secret, whose files the
// top-level symlinks reach.
func readCADirectory(dir string) (*x509.CertPool, error) {
	d, kind, err := openTLSFile(dir, unix.O_DIRECTORY)
	if errors.Is(err, unix.ENOTDIR) {
		return nil, errors.New("is not a directory")
	}
	if err != nil {
		return nil, err
	}
	defer func() { _ = d.Close() }()
	if kind != unix.S_IFDIR {
		return nil, errors.New("is not a directory")
	}
	names, err := d.Readdirnames(maxCAFiles + 1)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if len(names) > maxCAFiles {
		return nil, fmt.Errorf("holds more than %d entries", maxCAFiles)
	}
	slices.Sort(names)
	pool := x509.NewCertPool()
	var total int64
	for _, name := range names {
		f, kind, err := openTLSFile(filepath.Join(dir, name), 0)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", name, err)
		}
		if kind == unix.S_IFDIR {
			_ = f.Close()
			continue
		}
		b, err := readOpened(f, kind, min(maxTLSFile, maxCABytes-total))
		_ = f.Close()
		if err != nil {
			return nil, fmt.Errorf("%q %w", name, err)
		}
		total += int64(len(b))
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("%q holds no PEM certificate", name)
		}
	}
	return pool, nil
}

// tlsConfig is the client TLS configuration for tc, built from its files'
// bytes. The api package would read the paths itself, without bounds, and
// would start from the client pair in VAULT_CLIENT_CERT and VAULT_CLIENT_KEY
// (its defaults read the environment): that pair would then go to every
// server a class names. Starting afresh, only tc's pair is presented, and
// config gives the provider's own only to -vault-addr. nextProtos keeps the
// transport's HTTP/2 setting.
func tlsConfig(tc config.TLS, nextProtos []string) (*tls.Config, error) {
	out := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		NextProtos:         nextProtos,
		ServerName:         tc.ServerName,
		InsecureSkipVerify: tc.SkipVerify, //nolint:gosec // G402: the operator's or the class's explicit vaultSkipTLSVerify
	}
	// As in the api package, the CA file wins over the CA directory.
	switch {
	case tc.CACert != "":
		b, err := readTLSFile(tc.CACert, maxTLSFile)
		if err != nil {
			return nil, fileError(config.ParamCACert, tc.CACert, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fileError(config.ParamCACert, tc.CACert, errors.New("holds no PEM certificate"))
		}
		out.RootCAs = pool
	case tc.CADirectory != "":
		pool, err := readCADirectory(tc.CADirectory)
		if err != nil {
			return nil, fileError(config.ParamCADirectory, tc.CADirectory, err)
		}
		out.RootCAs = pool
	}
	if tc.ClientCert != "" || tc.ClientKey != "" {
		cert, err := readTLSFile(tc.ClientCert, maxTLSFile)
		if err != nil {
			return nil, fileError(config.ParamClientCert, tc.ClientCert, err)
		}
		key, err := readTLSFile(tc.ClientKey, maxTLSFile)
		if err != nil {
			return nil, fileError(config.ParamClientKey, tc.ClientKey, err)
		}
		pair, err := tls.X509KeyPair(cert, key)
		if err != nil {
			// crypto/tls's reasons name what is wrong, never the key's bytes.
			return nil, fileError(config.ParamClientCert, tc.ClientCert, fmt.Errorf("and %s are not a certificate and its key: %w", config.ParamClientKey, err))
		}
		// As the api package does: presented whatever CAs the server says
		// it accepts, since Vault's cert auth may trust another CA.
		out.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }
	}
	return out, nil
}

// fileError names the parameter whose file could not be used (a class's,
// or the provider's flag of the same meaning when the class sets none).
func fileError(param, path string, err error) error {
	var errno unix.Errno
	if errors.As(err, &errno) {
		err = fmt.Errorf("cannot be opened: %w", errno)
	}
	return &config.Error{Param: param, Reason: fmt.Sprintf("%s %v", strconv.Quote(path), err)}
}
