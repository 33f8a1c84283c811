package config

import (
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
)

// The TLS file parameters, for errors about the files themselves (see
// internal/vault).
const (
	ParamCACert      = keyCACert
	ParamCADirectory = keyCADirectory
	ParamClientCert  = keyClientCert
	ParamClientKey   = keyClientKey
)

// ParseDirectories reads -allowed-tls-directories: a comma-separated list
// of absolute directories.
func ParseDirectories(list string) ([]string, error) {
	var dirs []string
	for s := range strings.SplitSeq(list, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		if !filepath.IsAbs(s) {
			return nil, fmt.Errorf("%q: want an absolute directory, such as /etc/vault-csi-provider/tls", s)
		}
		dirs = append(dirs, filepath.Clean(s))
	}
	return dirs, nil
}

// atProvidersVault reports whether the mount goes to the provider's own
// Vault (-vault-addr, else the built-in default): the only one its own
// client certificate is presented to.
func (m *Mount) atProvidersVault(d Defaults) bool {
	own, err := url.Parse(firstSet(d.VaultAddress, DefaultVaultAddress))
	if err != nil {
		return false
	}
	got, err := url.Parse(m.VaultAddress)
	return err == nil && origin(own) == origin(got)
}

// checkTLSFiles refuses TLS files a class names outside the directories the
// operator allows. Anyone who may create a SecretProviderClass names these
// paths, and the provider reads them: without the check, a device that
// never ends, a process's stdout or another secret on the node. The check
// is on the cleaned path; the allowed directories are the operator's, so
// what their symlinks point at is theirs too. Only the class's values are
// checked: the defaults are the operator's flags.
func checkTLSFiles(attrs map[string]string, d Defaults, ownVault bool) error {
	own := []string{d.TLS.ClientCert, d.TLS.ClientKey}
	for _, key := range []string{keyCACert, keyCADirectory, keyClientCert, keyClientKey} {
		v := attrs[key]
		if v == "" {
			continue
		}
		p := filepath.Clean(v)
		if !filepath.IsAbs(v) {
			return &Error{Param: key, Reason: "must be an absolute path under -allowed-tls-directories, not " + quote(v)}
		}
		if !ownVault && (key == keyClientCert || key == keyClientKey) && (p == cleanOrEmpty(own[0]) || p == cleanOrEmpty(own[1])) {
			return &Error{Param: key, Reason: "names the provider's own client certificate or key (-vault-tls-client-cert, -vault-tls-client-key), which it presents only to its -vault-addr, not to " + quote(attrs[keyAddress])}
		}
		if !tlsPathAllowed(p, d) {
			return &Error{Param: key, Reason: fmt.Sprintf("%s is not where this provider may read TLS files; its operator allows %s (-allowed-tls-directories, and the provider's own -vault-tls-* files)", quote(v), allowedTLSList(d))}
		}
	}
	return nil
}

func cleanOrEmpty(p string) string {
	if p == "" {
		return ""
	}
	return filepath.Clean(p)
}

// tlsPathAllowed: p is one of the provider's own TLS files, or under an
// allowed directory or the provider's own CA directory.
func tlsPathAllowed(p string, d Defaults) bool {
	for _, f := range []string{d.TLS.CACert, d.TLS.ClientCert, d.TLS.ClientKey} {
		if f != "" && p == filepath.Clean(f) {
			return true
		}
	}
	dirs := d.AllowedTLSDirectories
	if d.TLS.CADirectory != "" {
		dirs = append(dirs[:len(dirs):len(dirs)], filepath.Clean(d.TLS.CADirectory))
	}
	for _, dir := range dirs {
		if dir == "/" || p == dir || strings.HasPrefix(p, dir+"/") {
			return true
		}
	}
	return false
}

// allowedTLSList names the allowed directories; the provider's own files
// are left out of messages that pod events carry.
func allowedTLSList(d Defaults) string {
	all := d.AllowedTLSDirectories
	if d.TLS.CADirectory != "" {
		all = append(all[:len(all):len(all)], d.TLS.CADirectory)
	}
	if len(all) == 0 {
		return "no directory"
	}
	return "only " + strings.Join(all, ", ")
}
