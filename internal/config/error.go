package config

import (
	"fmt"
	"strconv"
	"unicode/utf8"
)

// Error is a validation failure; the server maps it to gRPC InvalidArgument.
type Error struct {
	// Param is the parameter at fault, e.g. "roleName", "objects" or
	// "objects[2].filePermission" (the index is 0-based in the list).
	Param string
	// Reason says what is wrong and what is expected. It never holds tokens,
	// secretArgs values or the raw attributes.
	Reason string
}

func (e *Error) Error() string {
	return fmt.Sprintf("invalid parameter %q: %s", e.Param, e.Reason)
}

// maxEcho bounds how much of an offending value goes back into a message, so
// a pasted blob cannot flood pod events.
const maxEcho = 64

// quote renders a short, non-secret user value for an error message.
func quote(s string) string {
	if len(s) <= maxEcho {
		return strconv.Quote(s)
	}
	cut := maxEcho
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + "…"
}
