package testbed

import (
	"fmt"
	"os"
)

// RunThen runs a package's tests, then teardown, which closes what the tests
// shared. A teardown error is printed under name and fails the run. It
// returns the exit code, for os.Exit or goleak.VerifyTestMain.
func RunThen(m interface{ Run() int }, name string, teardown func() error) int {
	code := m.Run()
	if err := teardown(); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		if code == 0 {
			code = 1
		}
	}
	return code
}
