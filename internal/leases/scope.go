package leases

import "fmt"

// Scope is who may share a remembered lease.
type Scope string

const (
	// ScopePod gives every pod its own credentials: two pods should not
	// share database credentials unless the operator says so.
	ScopePod Scope = "pod"
	// ScopeIdentity shares credentials between the pods of one identity
	// (service account, role, Vault and auth mount).
	ScopeIdentity Scope = "identity"
	// ScopeOff remembers nothing: every mount issues anew.
	ScopeOff Scope = "off"
)

// ParseScope reads the -dynamic-secrets-scope flag.
func ParseScope(s string) (Scope, error) {
	switch sc := Scope(s); sc {
	case ScopePod, ScopeIdentity, ScopeOff:
		return sc, nil
	}
	return "", fmt.Errorf("%q: want pod, identity or off", s)
}

// Key is the part of a store key that says who shares a lease: identity
// is the service-account identity (auth.IdentityKey without per-pod
// logins), podUID the pod's; Request is left for the caller. ok is false
// when nothing may be remembered: the scope is off, or it is per pod and the
// driver sent no pod UID.
func (sc Scope) Key(identity, podUID string) (_ Key, ok bool) {
	switch {
	case sc == ScopeIdentity:
		return Key{Identity: identity}, true
	case sc == ScopePod && podUID != "":
		return Key{Identity: identity, Pod: podUID}, true
	}
	return Key{}, false
}
