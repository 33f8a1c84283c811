package config

import "testing"

// TestPodIdentityRequired: the service account and pod UID kubelet sends
// are what a token's claims are matched against (internal/auth); a mount
// without them is refused, naming the attribute, instead of matched
// against nothing.
func TestPodIdentityRequired(t *testing.T) {
	for _, key := range []string{"csi.storage.k8s.io/serviceAccount.name", "csi.storage.k8s.io/pod.uid"} {
		for _, v := range []string{del, ""} {
			_, err := parseEdited(t, map[string]string{key: v}, Defaults{})
			wantError(t, err, key, "podInfoOnMount")
		}
	}
}
