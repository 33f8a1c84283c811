// Command pause is the test bed's pod sandbox image: it holds a pod's
// namespaces open and does nothing until the runtime stops it, like
// registry.k8s.io/pause, which the bed cannot pull.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
}
