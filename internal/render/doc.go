// Package render renders an object's template: Go text/template over the
// secrets a mount reads, with a small function set that has no file,
// environment or network access.
//
// Every secret a template uses is named by a literal in the template
// ({{ (secret "secret/data/app").password }}, {{ (object "db").user }}),
// found by walking the parse tree, so a mount knows all its Vault requests
// before it makes any and makes each once; a template never reads.
package render
