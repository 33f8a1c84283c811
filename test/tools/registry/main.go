// Command registry is the CNCF Distribution registry's own command, built
// from the pinned module, with the storage driver and the htpasswd basic
// auth the bed uses: the registry behind most hosted registries, run on
// the bed's own address (test/testbed Registry).
package main

import (
	"fmt"
	"os"

	"github.com/distribution/distribution/v3/registry"
	_ "github.com/distribution/distribution/v3/registry/auth/htpasswd"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
)

func main() {
	if err := registry.RootCmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
