// Package render renders an object's template: Go text/template over the
// secrets a mount reads, with a small function set that has no file,
// environment or network access.
//
// Every secret a template uses is named by a literal in the template
// ({{ (secret "secret/data/app").password }}, {{ (object "db").user }}),
// found by walking the parse tree, so a mount knows all its Vault requests
// before it makes any and makes each once; a template never reads.
//
// Bounds (see MaxOutput, MaxBuilt, MaxSteps): every function's output is
// counted before it is built — by a walk over its operand that stops at
// what functions may still make (indented JSON counts each level's
// indentation; fmt verbs pad each element of a map or list) — or, for
// toYAML, charged as the encoder streams it. The step and byte counters
// are checked before they are added to, so they never pass their bounds.
//
// CPU per execution: at most MaxSteps node evaluations inside ranges (plus
// the template's own nodes once), and work proportional to the MaxBuilt
// bytes functions make (each walk visits at most what it then charges, or
// stops at the bound). Not bounded by steps: text/template's builtins that
// compare or hash strings (eq, ne, lt, le, gt, ge, index, and the sort of
// a map's keys on entering a range) cost up to the strings' length per
// step; such a template stops at the mount's deadline, checked every step.
package render
