package testbed

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"

	vaultapi "github.com/hashicorp/vault/api"
)

// MinSecretLen is the shortest value FindLeaks and AuditedSecrets consider:
// shorter ones ("e2e", "true") occur in logs by chance.
const MinSecretLen = 6

// Leak is a secret found where it must not be. It describes the secret
// without repeating it.
type Leak struct {
	Secret   string // a label: which secret, its length and first characters
	Form     string // "plain", "base64", "base64url", "hex"
	Where    string // the haystack's name
	Position int
}

func (l Leak) String() string {
	return fmt.Sprintf("%s found as %s in %s at byte %d", l.Secret, l.Form, l.Where, l.Position)
}

// FindLeaks looks for each secret, and its base64 (standard and URL,
// padded or not) and hex forms, in each haystack (name → text). Secrets
// shorter than MinSecretLen are skipped.
func FindLeaks(haystacks map[string]string, secrets []string) []Leak {
	var leaks []Leak
	names := make([]string, 0, len(haystacks))
	for n := range haystacks {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, s := range secrets {
		if len(s) < MinSecretLen {
			continue
		}
		for _, f := range encodings(s) {
			for _, n := range names {
				if i := strings.Index(haystacks[n], f.text); i >= 0 {
					leaks = append(leaks, Leak{Secret: label(s), Form: f.name, Where: n, Position: i})
				}
			}
		}
	}
	return leaks
}

type form struct{ name, text string }

func encodings(s string) []form {
	b := []byte(s)
	fs := []form{
		{"plain", s},
		{"base64", base64.StdEncoding.EncodeToString(b)},
		{"base64", base64.RawStdEncoding.EncodeToString(b)},
		{"base64url", base64.URLEncoding.EncodeToString(b)},
		{"base64url", base64.RawURLEncoding.EncodeToString(b)},
		{"hex", hex.EncodeToString(b)},
	}
	// Drop repeats (raw and padded agree when the length divides by 3).
	out := fs[:1]
	for _, f := range fs[1:] {
		if !slices.ContainsFunc(out, func(o form) bool { return o.text == f.text }) {
			out = append(out, f)
		}
	}
	return out
}

// label names a secret by length and a short prefix, enough to find it
// again in the bed's own files but not to use it.
func label(s string) string {
	p := s
	if len(p) > 4 {
		p = p[:4]
	}
	return fmt.Sprintf("a %d-byte secret starting %q", len(s), p)
}

// EnableRawAudit adds a file audit device at path with log_raw on: tokens,
// accessors, login JWTs and response data in clear, so a test can collect
// every credential and value the bed used (AuditedSecrets). Test beds only.
func (v *Vault) EnableRawAudit(ctx context.Context, path string) error {
	err := v.Client.Sys().EnableAuditWithOptionsWithContext(ctx, "raw", &vaultapi.EnableAuditOptions{
		Type: "file", Options: map[string]string{"file_path": path, "log_raw": "true"},
	})
	if err != nil {
		return fmt.Errorf("enable raw audit: %w", err)
	}
	return nil
}

// rawEntry is the part of a raw audit entry that holds credentials and
// values.
type rawEntry struct {
	Auth struct {
		ClientToken string `json:"client_token"`
		Accessor    string `json:"accessor"`
	} `json:"auth"`
	Request struct {
		Path                string         `json:"path"`
		ClientToken         string         `json:"client_token"`
		ClientTokenAccessor string         `json:"client_token_accessor"`
		Data                map[string]any `json:"data"`
	} `json:"request"`
	Response struct {
		Auth struct {
			ClientToken string `json:"client_token"`
			Accessor    string `json:"accessor"`
		} `json:"auth"`
		Data     map[string]any `json:"data"`
		WrapInfo struct {
			Token    string `json:"token"`
			Accessor string `json:"accessor"`
		} `json:"wrap_info"`
	} `json:"response"`
}

// AuditedSecrets reads a raw audit log (EnableRawAudit) and returns, without
// repeats, every Vault token and accessor in it, every JWT sent to a login,
// and every string in the data of responses from secrets engines (KV v2:
// data.data only; auth/ and sys/ answers hold names and policies, not
// secrets).
func AuditedSecrets(path string) ([]string, error) {
	f, err := os.Open(path) //nolint:gosec // G304: the test's own audit log
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	seen := map[string]bool{}
	add := func(s string) {
		if len(s) >= MinSecretLen {
			seen[s] = true
		}
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	for sc.Scan() {
		var e rawEntry
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue
		}
		for _, s := range []string{
			e.Auth.ClientToken, e.Auth.Accessor, e.Request.ClientToken, e.Request.ClientTokenAccessor,
			e.Response.Auth.ClientToken, e.Response.Auth.Accessor, e.Response.WrapInfo.Token, e.Response.WrapInfo.Accessor,
		} {
			add(s)
		}
		if jwt, ok := e.Request.Data["jwt"].(string); ok {
			add(jwt)
		}
		if p := e.Request.Path; strings.HasPrefix(p, "auth/") || strings.HasPrefix(p, "sys/") {
			continue
		}
		data := e.Response.Data
		inner, innerOK := data["data"].(map[string]any)
		if _, metaOK := data["metadata"].(map[string]any); innerOK && metaOK {
			data = inner
		}
		strs(data, add)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	out := make([]string, 0, len(seen))
	for s := range seen {
		out = append(out, s)
	}
	slices.Sort(out)
	return out, nil
}

// strs calls add with every string in v, at any depth.
func strs(v any, add func(string)) {
	switch t := v.(type) {
	case string:
		add(t)
	case map[string]any:
		for _, e := range t {
			strs(e, add)
		}
	case []any:
		for _, e := range t {
			strs(e, add)
		}
	}
}
