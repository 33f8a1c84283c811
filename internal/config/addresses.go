package config

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
)

// Addresses are the Vault addresses the operator allows
// (-allowed-vault-addresses). An entry matches a URL whose scheme, host and
// port are exactly its own: no wildcards, no subdomains, no port ranges. A
// missing port is the scheme's (443 for https, 80 for http), so
// "https://vault" and "https://vault:443" are one entry; paths are ignored.
// Unix socket entries match their socket path. Empty allows every address,
// so an upgrade refuses nothing until the operator sets a list.
type Addresses struct{ origins []string }

// ParseAddresses reads a comma-separated list of http(s):// or unix://
// addresses.
func ParseAddresses(list string) (Addresses, error) {
	var a Addresses
	for s := range strings.SplitSeq(list, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		u, err := url.Parse(s)
		if err != nil || !validAddress(s) {
			shown := s
			if err == nil && u.User != nil {
				shown = u.Redacted() // the refused credentials stay out of the error
			}
			return Addresses{}, fmt.Errorf("%q: want an address such as https://vault.example.com:8200, without credentials", shown)
		}
		if o := origin(u); !slices.Contains(a.origins, o) {
			a.origins = append(a.origins, o)
		}
	}
	return a, nil
}

// Empty reports whether every address is allowed.
func (a Addresses) Empty() bool { return len(a.origins) == 0 }

// Allows reports whether u may be reached: it is on the list, or the list is
// empty.
func (a Addresses) Allows(u *url.URL) bool {
	return a.Empty() || slices.Contains(a.origins, origin(u))
}

// AllowsRedirect reports whether a request to from may follow a redirect to
// to. With a list, to must be on it: a Vault standby's 307 to the active
// node works when the operator lists the active node. Without one, to must
// keep from's scheme and host (only the port may change), so a server named
// by a SecretProviderClass cannot bounce the provider to another host, such
// as a link-local metadata service.
func (a Addresses) AllowsRedirect(from, to *url.URL) bool {
	if !a.Empty() {
		return a.Allows(to)
	}
	return strings.EqualFold(from.Scheme, to.Scheme) && strings.EqualFold(from.Hostname(), to.Hostname())
}

// String lists the allowed addresses as the flag takes them.
func (a Addresses) String() string { return strings.Join(a.origins, ",") }

// origin is scheme://host:port with the default port filled in, lower case;
// unix://path for sockets.
func origin(u *url.URL) string {
	scheme := strings.ToLower(u.Scheme)
	if scheme == "unix" {
		return "unix://" + u.Path
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[scheme]
	}
	return scheme + "://" + net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}
