package provider

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/okevault/vault-csi-provider/internal/config"
)

// driverName is the Secrets Store CSI Driver's name in pod volumes.
const driverName = "secrets-store.csi.k8s.io"

// errPodLookup: the pod could not be read to check its volumeAttributes.
var errPodLookup = errors.New("cannot check the pod's volumeAttributes")

// PodAttributes refuses parameters a pod sets through its volume's
// volumeAttributes, other than Allowed ones. The driver lays those
// attributes over the SecretProviderClass's parameters, so a pod can
// otherwise send its mount to another Vault address or role. The request
// does not say which parameter came from where, so the pod is read.
type PodAttributes struct {
	Pods kubernetes.Interface
	// Allowed are the keys pods may set; secretProviderClass always is.
	Allowed []string
}

// check is nil when p is nil or the pod's secrets-store volumes (the one
// targetPath names, when it is shaped as kubelet's) set only allowed keys.
func (p *PodAttributes) check(ctx context.Context, m *config.Mount, targetPath string) error {
	if p == nil {
		return nil
	}
	pod, err := p.Pods.CoreV1().Pods(m.Pod.Namespace).Get(ctx, m.Pod.Name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("%w: read pod %s/%s: %w", errPodLookup, m.Pod.Namespace, m.Pod.Name, err)
	}
	if m.Pod.UID != "" && string(pod.UID) != m.Pod.UID {
		return fmt.Errorf("%w: pod %s/%s has been replaced (UID %s, the mount is for %s)", errPodLookup, m.Pod.Namespace, m.Pod.Name, pod.UID, m.Pod.UID)
	}
	name := volumeName(targetPath)
	for _, v := range pod.Spec.Volumes {
		if v.CSI == nil || v.CSI.Driver != driverName || (name != "" && v.Name != name) {
			continue
		}
		keys := make([]string, 0, len(v.CSI.VolumeAttributes))
		for k := range v.CSI.VolumeAttributes {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			if k != "secretProviderClass" && !slices.Contains(p.Allowed, k) {
				return &config.Error{Param: k, Reason: fmt.Sprintf("is set by the pod's volumeAttributes (volume %q), and this provider lets pods set only %s (its -allowed-pod-attributes); set it in the SecretProviderClass", v.Name, allowedList(p.Allowed))}
			}
		}
	}
	return nil
}

// volumeName is <name> in kubelet's .../volumes/kubernetes.io~csi/<name>/mount,
// or "" for any other shape.
func volumeName(targetPath string) string {
	dir, base := filepath.Split(filepath.Clean(targetPath))
	if base != "mount" {
		return ""
	}
	parent, name := filepath.Split(filepath.Clean(dir))
	if filepath.Base(parent) != "kubernetes.io~csi" {
		return ""
	}
	return name
}

func allowedList(keys []string) string {
	if len(keys) == 0 {
		return "secretProviderClass"
	}
	return "secretProviderClass, " + strings.Join(keys, ", ")
}
