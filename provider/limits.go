package provider

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1"
)

// DefaultMaxResponseSize is the driver's default --max-call-recv-msg-size:
// a larger MountResponse is dropped by the driver's gRPC client with an
// error that names neither the pod nor the objects.
const DefaultMaxResponseSize = 4 << 20

// MaxRequestSize is the largest MountRequest the server accepts, gRPC's
// default made explicit; internal/config bounds the attributes to the same.
const MaxRequestSize = 4 << 20

// errTooLarge: the files would not fit in one message to the driver.
var errTooLarge = errors.New("mount response too large")

// fits refuses a response the driver could not receive, so the pod's event
// says what to change instead of a transport error.
func fits(resp *v1alpha1.MountResponse, limit int) error {
	if n := proto.Size(resp); n > limit {
		return fmt.Errorf("%w: its %d files come to %d bytes, over the %d bytes the driver accepts; split the objects across volumes, or raise the driver's --max-call-recv-msg-size and this provider's -max-response-size together", errTooLarge, len(resp.GetFiles()), n, limit)
	}
	return nil
}
