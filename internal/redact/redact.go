// Package redact holds secret-bearing strings so that no log line, error
// message or %v can print them by accident.
package redact

import "log/slog"

// Redacted is what every formatting path prints instead of the value.
const Redacted = "REDACTED"

// Secret is a token, a Vault token or a secret value. Only Reveal gives the
// value back; String, GoString, LogValue, MarshalText and MarshalJSON print
// Redacted.
type Secret struct{ v string }

// New wraps v.
func New(v string) Secret { return Secret{v: v} }

// Reveal returns the wrapped value, for the one place that must send it.
func (s Secret) Reveal() string { return s.v }

// Empty reports whether there is no value.
func (s Secret) Empty() bool { return s.v == "" }

// String prints Redacted for %v and %s.
func (Secret) String() string { return Redacted }

// GoString prints Redacted for %#v.
func (Secret) GoString() string { return Redacted }

// LogValue prints Redacted in slog records.
func (Secret) LogValue() slog.Value { return slog.StringValue(Redacted) }

// MarshalText prints Redacted in text encoders (YAML, map keys).
func (Secret) MarshalText() ([]byte, error) { return []byte(Redacted), nil }

// MarshalJSON prints Redacted in JSON.
func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + Redacted + `"`), nil }
