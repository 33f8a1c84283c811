// Command printenv is the test bed's printenv, at /bin/printenv in the
// testapp image: Debian's busybox-static has no printenv applet, and the
// peer's e2e suite (test/peer) runs `kubectl exec POD -- printenv`.
//
// Without arguments it prints the environment, one NAME=value a line; with
// names, the value of each that is set, one a line, and exits 1 when any
// is not set, as the usual printenv does.
package main

import (
	"bufio"
	"os"
)

func main() {
	w := bufio.NewWriter(os.Stdout)
	code := 0
	if len(os.Args) < 2 {
		for _, kv := range os.Environ() {
			_, _ = w.WriteString(kv + "\n")
		}
	} else {
		for _, name := range os.Args[1:] {
			v, ok := os.LookupEnv(name)
			if !ok {
				code = 1
				continue
			}
			_, _ = w.WriteString(v + "\n")
		}
	}
	if err := w.Flush(); err != nil {
		os.Exit(2)
	}
	os.Exit(code)
}
