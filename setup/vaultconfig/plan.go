package vaultconfig

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
)

// Client is the part of Vault's API this package uses: (*vaultapi.Client).Logical()
// satisfies it. Every call goes through these four, so reads and writes are
// easy to tell apart.
type Client interface {
	ReadWithContext(ctx context.Context, path string) (*vaultapi.Secret, error)
	WriteWithContext(ctx context.Context, path string, data map[string]any) (*vaultapi.Secret, error)
	DeleteWithContext(ctx context.Context, path string) (*vaultapi.Secret, error)
	ListWithContext(ctx context.Context, path string) (*vaultapi.Secret, error)
}

// Op is what a Change does.
type Op string

// The ops of a change.
const (
	Create Op = "create"
	Update Op = "update"
	Delete Op = "delete"
)

// Change is one write that brings Vault closer to the desired state.
type Change struct {
	Op   Op
	Kind string // "policy", "secrets engine", "auth method", "auth config", "role", "secret", "audit device"
	Name string
	// Details are field-level differences, safe to print (no secret values).
	Details []string

	apply func(ctx context.Context, c Client) error
}

// String is the change as a plan line: "+ policy testapp-kv-crud".
func (c Change) String() string {
	sign := map[Op]string{Create: "+", Update: "~", Delete: "-"}[c.Op]
	return fmt.Sprintf("%s %s %s", sign, c.Kind, c.Name)
}

// Plan is the difference between Vault and the desired state.
type Plan struct {
	Changes   []Change
	Unchanged int // declared items already as desired
}

// Empty reports whether Vault already is as desired.
func (p *Plan) Empty() bool { return len(p.Changes) == 0 }

// Apply makes the changes in order, calling done after each, and stops at
// the first error.
func (p *Plan) Apply(ctx context.Context, c Client, done func(Change, error)) error {
	for _, ch := range p.Changes {
		err := ch.apply(ctx, c)
		if done != nil {
			done(ch, err)
		}
		if err != nil {
			return fmt.Errorf("%s %s %s: %w", ch.Op, ch.Kind, ch.Name, err)
		}
	}
	return nil
}

// Compute reads Vault and returns what Apply must change. It never writes.
func Compute(ctx context.Context, c Client, d *Desired) (*Plan, error) {
	p := &Plan{}
	livePolicies, err := listKeys(ctx, c, "sys/policies/acl")
	if err != nil {
		return nil, fmt.Errorf("list policies: %w", err)
	}
	mounts, err := readTable(ctx, c, "sys/mounts")
	if err != nil {
		return nil, fmt.Errorf("list secrets engines: %w", err)
	}
	auths, err := readTable(ctx, c, "sys/auth")
	if err != nil {
		return nil, fmt.Errorf("list auth methods: %w", err)
	}
	audits, err := readTable(ctx, c, "sys/audit")
	if err != nil {
		return nil, fmt.Errorf("list audit devices: %w", err)
	}

	// Audit devices first: what follows is then on record.
	for _, a := range d.Audit {
		if err := planAudit(p, audits, a); err != nil {
			return nil, err
		}
	}
	for _, pol := range d.Policies {
		if err := planPolicy(ctx, c, p, pol); err != nil {
			return nil, err
		}
	}
	newMounts := map[string]bool{}
	for _, m := range d.Mounts {
		created, err := planMount(p, mounts, m)
		if err != nil {
			return nil, err
		}
		newMounts[m.Path] = created
	}
	for _, a := range d.Auth {
		if err := planAuth(ctx, c, p, auths, a); err != nil {
			return nil, err
		}
	}
	for _, s := range d.Secrets {
		if err := planSecret(ctx, c, p, s, newMounts[s.Mount]); err != nil {
			return nil, err
		}
	}
	if d.Prune {
		if err := planPrune(ctx, c, p, d, livePolicies, mounts, auths); err != nil {
			return nil, err
		}
		planPruneAudit(p, d, audits)
	}
	return p, nil
}

func planPolicy(ctx context.Context, c Client, p *Plan, pol Policy) error {
	live, err := c.ReadWithContext(ctx, "sys/policies/acl/"+pol.Name)
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("read policy %s: %w", pol.Name, err)
	}
	text := managedPolicyText(pol.HCL)
	write := func(ctx context.Context, c Client) error {
		_, err := c.WriteWithContext(ctx, "sys/policies/acl/"+pol.Name, map[string]any{"policy": text})
		return err
	}
	if live == nil || live.Data == nil {
		p.Changes = append(p.Changes, Change{Op: Create, Kind: "policy", Name: pol.Name, apply: write})
		return nil
	}
	liveText, _ := live.Data["policy"].(string)
	if d := lineDiff(policyBody(liveText), policyBody(text)); len(d) > 0 {
		p.Changes = append(p.Changes, Change{Op: Update, Kind: "policy", Name: pol.Name, Details: d, apply: write})
		return nil
	}
	p.Unchanged++
	return nil
}

// policyBody drops the marker line and surrounding space, so a policy the
// user wrote by hand with the same rules counts as unchanged.
func policyBody(text string) string {
	text = strings.TrimSpace(text)
	text = strings.TrimPrefix(text, "# "+ManagedMarker)
	return strings.TrimSpace(text)
}

func planAudit(p *Plan, audits map[string]map[string]any, a AuditDevice) error {
	name := a.Path + "/"
	live, ok := audits[name]
	if !ok {
		details := []string{"type: " + a.Type}
		for _, k := range sortedKeys(a.Options) {
			details = append(details, fmt.Sprintf("options.%s: %s", k, a.Options[k]))
		}
		p.Changes = append(p.Changes, Change{Op: Create, Kind: "audit device", Name: name, Details: details, apply: func(ctx context.Context, c Client) error {
			return enableAudit(ctx, c, a)
		}})
		planLeftBridge(p, audits, a)
		return nil
	}
	if t, _ := live["type"].(string); t != a.Type {
		return fmt.Errorf("audit device %s is of type %q, declared %q: refusing to replace it (disable it first if that is meant)", name, t, a.Type)
	}
	if !isManaged(live) {
		// Someone else's device at this path: changing it is their call.
		return fmt.Errorf("audit device %s exists and was not made by vault-oke-setup: refusing to replace it", name)
	}
	liveOpts, _ := live["options"].(map[string]any)
	var diffs []string
	for _, k := range sortedKeys(a.Options) {
		if liveOpts[k] == nil || fmt.Sprint(liveOpts[k]) != a.Options[k] {
			diffs = append(diffs, fmt.Sprintf("options.%s: %s → %s", k, printable(liveOpts[k]), a.Options[k]))
		}
	}
	if len(diffs) == 0 {
		p.Unchanged++
		planLeftBridge(p, audits, a)
		return nil
	}
	old := AuditDevice{Path: a.Path, Type: a.Type, Options: map[string]string{}}
	for k, v := range liveOpts {
		old.Options[k] = fmt.Sprint(v)
	}
	diffs = append(diffs, fmt.Sprintf("disabled and enabled again (Vault cannot change a device's options), a copy of it at %s/ recording meanwhile", bridgePath(a.Path)))
	p.Changes = append(p.Changes, Change{Op: Update, Kind: "audit device", Name: name, Details: diffs, apply: func(ctx context.Context, c Client) error {
		return swapAudit(ctx, c, old, a)
	}})
	return nil
}

func enableAudit(ctx context.Context, c Client, a AuditDevice) error {
	_, err := c.WriteWithContext(ctx, "sys/audit/"+a.Path, map[string]any{"type": a.Type, "description": ManagedMarker, "options": a.Options})
	return err
}

func disableAudit(ctx context.Context, c Client, path string) error {
	_, err := c.DeleteWithContext(ctx, "sys/audit/"+path) // Vault answers 204 for a path with no device
	return err
}

// bridgePath is where swapAudit keeps a copy of a device while it changes.
func bridgePath(path string) string { return path + "-setup-swap" }

// planLeftBridge removes a bridge that a run which failed in swapAudit left.
func planLeftBridge(p *Plan, audits map[string]map[string]any, a AuditDevice) {
	path := bridgePath(a.Path)
	if live, ok := audits[path+"/"]; ok && isManaged(live) {
		p.Changes = append(p.Changes, Change{Op: Delete, Kind: "audit device", Name: path + "/", apply: func(ctx context.Context, c Client) error {
			return disableAudit(ctx, c, path)
		}})
	}
}

// swapAudit changes a device's options with Vault audited at every step: a
// copy of the old device (the bridge) records while the device is disabled
// and enabled with the new options, and is disabled last; when the new
// options fail, the old device is enabled again.
func swapAudit(ctx context.Context, c Client, old, next AuditDevice) error {
	bridge, ok := bridgeOf(old)
	if ok {
		// A bridge a failed run left goes first: the old device is on.
		if err := disableAudit(ctx, c, bridge.Path); err != nil {
			return err
		}
		if err := enableAudit(ctx, c, bridge); err != nil {
			return fmt.Errorf("enable a copy of the device at %s/ (the device is unchanged): %w", bridge.Path, err)
		}
	}
	if err := disableAudit(ctx, c, old.Path); err != nil {
		return err
	}
	if err := enableAudit(ctx, c, next); err != nil {
		if rerr := enableAudit(ctx, c, old); rerr != nil {
			return errors.Join(fmt.Errorf("the new options: %w", err), fmt.Errorf("enable the old device again: %w", rerr))
		}
		err = fmt.Errorf("the new options (the old device is on again): %w", err)
		if ok {
			err = errors.Join(err, disableAudit(ctx, c, bridge.Path))
		}
		return err
	}
	if !ok {
		return nil
	}
	return disableAudit(ctx, c, bridge.Path)
}

// bridgeOf is a copy of a device that Vault accepts beside it: Vault
// refuses two file devices on one file_path, so the copy writes to another
// name of the same stream (stdout is /dev/stdout; mode 0000 keeps Vault
// from changing the mode of the stream) or to a sibling file. A device that
// discards its records needs no copy.
func bridgeOf(a AuditDevice) (AuditDevice, bool) {
	b := AuditDevice{Path: bridgePath(a.Path), Type: a.Type, Options: maps.Clone(a.Options)}
	if a.Type != "file" {
		return b, true
	}
	switch fp := a.Options["file_path"]; fp {
	case "discard":
		return b, false
	case "stdout":
		b.Options["file_path"], b.Options["mode"] = "/dev/stdout", "0000"
	case "/dev/stdout":
		b.Options["file_path"] = "stdout"
	default:
		b.Options["file_path"] = fp + ".setup-swap"
	}
	return b, true
}

func planPruneAudit(p *Plan, d *Desired, audits map[string]map[string]any) {
	for _, name := range sortedKeys(audits) {
		path := strings.TrimSuffix(name, "/")
		declared := func(a AuditDevice) bool { return a.Path == path || bridgePath(a.Path) == path } // planAudit handles bridges
		if !isManaged(audits[name]) || slices.ContainsFunc(d.Audit, declared) {
			continue
		}
		p.Changes = append(p.Changes, Change{Op: Delete, Kind: "audit device", Name: name, apply: func(ctx context.Context, c Client) error {
			return disableAudit(ctx, c, path)
		}})
	}
}

// planMount returns whether the mount is to be created.
func planMount(p *Plan, mounts map[string]map[string]any, m Mount) (bool, error) {
	name := m.Path + "/"
	live, ok := mounts[name]
	if !ok {
		p.Changes = append(p.Changes, Change{Op: Create, Kind: "secrets engine", Name: name, Details: optionDetails(m), apply: func(ctx context.Context, c Client) error {
			_, err := c.WriteWithContext(ctx, "sys/mounts/"+m.Path, map[string]any{"type": m.Type, "description": ManagedMarker, "options": m.Options})
			if err != nil {
				return err
			}
			if m.Type == "kv" && m.Options["version"] == "2" {
				// A new KV v2 engine answers writes only once its set-up is done.
				return waitFor(ctx, 30*time.Second, func() error {
					_, err := c.ReadWithContext(ctx, m.Path+"/config")
					return err
				})
			}
			return nil
		}})
		return true, nil
	}
	liveType, _ := live["type"].(string)
	if liveType != m.Type {
		// Replacing an engine destroys its data: a human must decide.
		return false, fmt.Errorf("secrets engine %s is of type %q, declared %q: refusing to replace it (it would destroy its data)", name, liveType, m.Type)
	}
	liveOpts, _ := live["options"].(map[string]any)
	var diffs []string
	for _, k := range sortedKeys(m.Options) {
		if lv := fmt.Sprint(liveOpts[k]); liveOpts[k] == nil || lv != m.Options[k] {
			if m.Type == "kv" && k == "version" && lv == "2" {
				return false, fmt.Errorf("secrets engine %s is KV v2, declared v%s: KV cannot be downgraded", name, m.Options[k])
			}
			diffs = append(diffs, fmt.Sprintf("options.%s: %s → %s", k, printable(liveOpts[k]), m.Options[k]))
		}
	}
	if len(diffs) == 0 {
		p.Unchanged++
		return false, nil
	}
	p.Changes = append(p.Changes, Change{Op: Update, Kind: "secrets engine", Name: name, Details: diffs, apply: func(ctx context.Context, c Client) error {
		_, err := c.WriteWithContext(ctx, "sys/mounts/"+m.Path+"/tune", map[string]any{"options": m.Options})
		return err
	}})
	return false, nil
}

func optionDetails(m Mount) []string {
	d := []string{"type: " + m.Type}
	for _, k := range sortedKeys(m.Options) {
		d = append(d, fmt.Sprintf("options.%s: %s", k, m.Options[k]))
	}
	return d
}

func planAuth(ctx context.Context, c Client, p *Plan, auths map[string]map[string]any, a AuthMethod) error {
	name := a.Path + "/"
	live, exists := auths[name]
	if !exists {
		p.Changes = append(p.Changes, Change{Op: Create, Kind: "auth method", Name: name, Details: []string{"type: " + a.Type}, apply: func(ctx context.Context, c Client) error {
			_, err := c.WriteWithContext(ctx, "sys/auth/"+a.Path, map[string]any{"type": a.Type, "description": ManagedMarker})
			return err
		}})
	} else {
		if t, _ := live["type"].(string); t != a.Type {
			return fmt.Errorf("auth method %s is of type %q, declared %q: refusing to replace it", name, t, a.Type)
		}
		p.Unchanged++
	}

	// Config: everything declared is written together, since a config write
	// replaces the whole config (fields left out are cleared).
	writeConfig := func(ctx context.Context, c Client) error {
		data := make(map[string]any, len(a.Config)+len(a.WriteOnly))
		for k, v := range a.Config {
			data[k] = v
		}
		for k, v := range a.WriteOnly {
			data[k] = v.Reveal()
		}
		_, err := c.WriteWithContext(ctx, "auth/"+a.Path+"/config", data)
		return err
	}
	var liveCfg map[string]any
	if exists {
		s, err := c.ReadWithContext(ctx, "auth/"+a.Path+"/config")
		if err != nil && !isNotFound(err) {
			return fmt.Errorf("read auth/%s/config: %w", a.Path, err)
		}
		if s != nil {
			liveCfg = s.Data
		}
	}
	if liveCfg == nil {
		p.Changes = append(p.Changes, Change{Op: Create, Kind: "auth config", Name: "auth/" + a.Path + "/config", Details: fieldDetails(a.Config, nil, true), apply: writeConfig})
	} else {
		diffs := fieldDetails(a.Config, liveCfg, false)
		for _, k := range sortedKeys(a.WriteOnly) {
			if set, ok := liveCfg[k+"_set"].(bool); ok && !set {
				diffs = append(diffs, k+": unset → set")
			}
		}
		if len(diffs) > 0 {
			p.Changes = append(p.Changes, Change{Op: Update, Kind: "auth config", Name: "auth/" + a.Path + "/config", Details: diffs, apply: writeConfig})
		} else {
			p.Unchanged++
		}
	}

	for _, r := range a.Roles {
		rolePath := "auth/" + a.Path + "/role/" + r.Name
		write := func(ctx context.Context, c Client) error {
			_, err := c.WriteWithContext(ctx, rolePath, r.Data)
			return err
		}
		var live *vaultapi.Secret
		if exists {
			s, err := c.ReadWithContext(ctx, rolePath)
			if err != nil && !isNotFound(err) {
				return fmt.Errorf("read %s: %w", rolePath, err)
			}
			live = s
		}
		switch {
		case live == nil || live.Data == nil:
			p.Changes = append(p.Changes, Change{Op: Create, Kind: "role", Name: rolePath, Details: fieldDetails(r.Data, nil, true), apply: write})
		default:
			if diffs := fieldDetails(r.Data, live.Data, false); len(diffs) > 0 {
				p.Changes = append(p.Changes, Change{Op: Update, Kind: "role", Name: rolePath, Details: diffs, apply: write})
			} else {
				p.Unchanged++
			}
		}
	}
	return nil
}

func planSecret(ctx context.Context, c Client, p *Plan, s Secret, mountIsNew bool) error {
	path := s.apiPath()
	if !mountIsNew {
		live, err := c.ReadWithContext(ctx, path)
		if err != nil && !isNotFound(err) {
			return fmt.Errorf("read %s: %w", path, err)
		}
		if live != nil && live.Data != nil {
			// Initial secrets are written once; later values in Vault win,
			// and so does a KV v2 secret someone deleted (its metadata remains).
			p.Unchanged++
			return nil
		}
	}
	keys := sortedKeys(s.Data)
	p.Changes = append(p.Changes, Change{Op: Create, Kind: "secret", Name: s.Mount + "/" + s.Path, Details: []string{"keys: " + strings.Join(keys, ", ")}, apply: func(ctx context.Context, c Client) error {
		data := make(map[string]any, len(s.Data))
		for k, v := range s.Data {
			data[k] = v.Reveal()
		}
		body := data
		if s.KVVersion == 2 {
			// cas=0: written only if the secret still does not exist.
			body = map[string]any{"data": data, "options": map[string]any{"cas": 0}}
		}
		_, err := c.WriteWithContext(ctx, path, body)
		return err
	}})
	return nil
}

func planPrune(ctx context.Context, c Client, p *Plan, d *Desired, livePolicies []string, mounts, auths map[string]map[string]any) error {
	declaredAuth := map[string]AuthMethod{}
	for _, a := range d.Auth {
		declaredAuth[a.Path+"/"] = a
	}
	for _, name := range sortedKeys(auths) {
		if !isManaged(auths[name]) {
			continue
		}
		a, declared := declaredAuth[name]
		if !declared {
			path := strings.TrimSuffix(name, "/")
			p.Changes = append(p.Changes, Change{Op: Delete, Kind: "auth method", Name: name, Details: []string{"its roles go with it"}, apply: func(ctx context.Context, c Client) error {
				_, err := c.DeleteWithContext(ctx, "sys/auth/"+path)
				return err
			}})
			continue
		}
		roles, err := listKeys(ctx, c, "auth/"+a.Path+"/role")
		if err != nil {
			return fmt.Errorf("list roles of auth/%s: %w", a.Path, err)
		}
		for _, r := range roles {
			if slices.ContainsFunc(a.Roles, func(x Role) bool { return x.Name == r }) {
				continue
			}
			rolePath := "auth/" + a.Path + "/role/" + r
			p.Changes = append(p.Changes, Change{Op: Delete, Kind: "role", Name: rolePath, apply: func(ctx context.Context, c Client) error {
				_, err := c.DeleteWithContext(ctx, rolePath)
				return err
			}})
		}
	}
	for _, name := range sortedKeys(mounts) {
		path := strings.TrimSuffix(name, "/")
		if !isManaged(mounts[name]) || slices.ContainsFunc(d.Mounts, func(m Mount) bool { return m.Path == path }) {
			continue
		}
		p.Changes = append(p.Changes, Change{Op: Delete, Kind: "secrets engine", Name: name, Details: []string{"destroys all data in it"}, apply: func(ctx context.Context, c Client) error {
			_, err := c.DeleteWithContext(ctx, "sys/mounts/"+path)
			return err
		}})
	}
	for _, name := range livePolicies {
		if slices.ContainsFunc(d.Policies, func(x Policy) bool { return x.Name == name }) {
			continue
		}
		s, err := c.ReadWithContext(ctx, "sys/policies/acl/"+name)
		if err != nil {
			return fmt.Errorf("read policy %s: %w", name, err)
		}
		if s == nil || !strings.HasPrefix(strings.TrimSpace(fmt.Sprint(s.Data["policy"])), "# "+ManagedMarker) {
			continue
		}
		p.Changes = append(p.Changes, Change{Op: Delete, Kind: "policy", Name: name, apply: func(ctx context.Context, c Client) error {
			_, err := c.DeleteWithContext(ctx, "sys/policies/acl/"+name)
			return err
		}})
	}
	return nil
}

func isManaged(entry map[string]any) bool {
	desc, _ := entry["description"].(string)
	return desc == ManagedMarker
}

// readTable reads sys/mounts or sys/auth: path → entry.
func readTable(ctx context.Context, c Client, path string) (map[string]map[string]any, error) {
	s, err := c.ReadWithContext(ctx, path)
	if err != nil {
		return nil, err
	}
	out := map[string]map[string]any{}
	if s == nil {
		return out, nil
	}
	for k, v := range s.Data {
		if m, ok := v.(map[string]any); ok {
			out[k] = m
		}
	}
	return out, nil
}

func listKeys(ctx context.Context, c Client, path string) ([]string, error) {
	s, err := c.ListWithContext(ctx, path)
	if err != nil {
		if isNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	if s == nil || s.Data == nil {
		return nil, nil
	}
	raw, _ := s.Data["keys"].([]any)
	keys := make([]string, 0, len(raw))
	for _, k := range raw {
		keys = append(keys, fmt.Sprint(k))
	}
	sort.Strings(keys)
	return keys, nil
}

func isNotFound(err error) bool {
	var re *vaultapi.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusNotFound
}

// fieldDetails lists the declared fields that differ from live (all of them
// when creating), as "field: live → want".
func fieldDetails(want, live map[string]any, creating bool) []string {
	var out []string
	for _, k := range sortedKeys(want) {
		w := canonical(want[k])
		if creating {
			out = append(out, fmt.Sprintf("%s: %s", k, abbreviate(w)))
			continue
		}
		if l := canonical(live[k]); l != w {
			out = append(out, fmt.Sprintf("%s: %s → %s", k, abbreviate(l), abbreviate(w)))
		}
	}
	return out
}

// canonical turns a declared or a read-back value into a comparable string:
// lists are order-free (Vault keeps bound names and policies as sets), numbers
// as Vault returns them, nil as empty.
func canonical(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return strings.TrimSpace(x)
	case []string:
		s := make([]string, 0, len(x))
		for _, e := range x {
			s = append(s, strings.TrimSpace(e))
		}
		sort.Strings(s)
		return strings.Join(s, ",")
	case []any:
		s := make([]string, 0, len(x))
		for _, e := range x {
			s = append(s, canonical(e))
		}
		sort.Strings(s)
		return strings.Join(s, ",")
	case json.Number:
		return x.String()
	default:
		return fmt.Sprint(x)
	}
}

func printable(v any) string {
	if v == nil {
		return "(unset)"
	}
	return abbreviate(canonical(v))
}

// abbreviate keeps plan lines short: a CA certificate shows as its size.
func abbreviate(s string) string {
	switch {
	case s == "":
		return `""`
	case len(s) > 60 || strings.Contains(s, "\n"):
		return fmt.Sprintf("(%d bytes)", len(s))
	}
	return s
}

// lineDiff returns the lines only in a ("-") and only in b ("+").
func lineDiff(a, b string) []string {
	if a == b {
		return nil
	}
	count := func(s string) map[string]int {
		m := map[string]int{}
		for _, l := range strings.Split(s, "\n") {
			m[strings.TrimRight(l, " \t")]++
		}
		return m
	}
	ca, cb := count(a), count(b)
	var out []string
	for _, l := range strings.Split(a, "\n") {
		l = strings.TrimRight(l, " \t")
		if cb[l] > 0 {
			cb[l]--
			continue
		}
		out = append(out, "- "+l)
	}
	for _, l := range strings.Split(b, "\n") {
		l = strings.TrimRight(l, " \t")
		if ca[l] > 0 {
			ca[l]--
			continue
		}
		out = append(out, "+ "+l)
	}
	if len(out) == 0 { // only whitespace or order differs
		out = []string{"(reformatted)"}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func waitFor(ctx context.Context, timeout time.Duration, f func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %w)", ctx.Err(), err)
		case <-t.C:
		}
	}
}
