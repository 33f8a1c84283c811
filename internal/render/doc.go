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
// CPU per execution: at most MaxSteps steps, plus the template's own
// nodes once, plus work proportional to the MaxBuilt bytes functions make
// (each walk visits at most what it then charges, or stops at the bound).
// A step is a node evaluated inside a range (a field chain is a node per
// field), an element of what a range enters, or a KiB that a function
// compares, hashes or scans without making it: eq, ne, lt, le, gt, ge and index (text/template's, replaced)
// charge a step per KiB of the strings they compare or of the map keys
// they hash, at least one; entering a range over a map charges its keys'
// bytes per KiB times log2 of its length, for text/template's sort of the
// keys; trimSpace and base64Decode charge what they scan. So each step
// costs at most a constant times a node's evaluation or 1 KiB of
// comparison or scan: measured on a shared 2-core machine, a million
// steps of empty range bodies take 0.7 s, of 2 MiB comparisons 50 ms, of
// trimming 2 MiB of spaces 0.55 s (the tests in cpu_test.go log theirs),
// so an execution ends in about a second, far below a mount's 30 s
// deadline, which is still checked at every step.
package render
