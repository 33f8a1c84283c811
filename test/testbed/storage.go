package testbed

import (
	"context"
	"fmt"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// AddVolumes makes n static PersistentVolumes of the given size, each a
// folder under the bed's directory (hostPath, created by kubelet), so that
// the claims of StatefulSets without a storage class bind as they would to
// a provisioner's volumes. The bed has no provisioner: size is what the
// claims may ask for, not a limit on the folder. They are kept (Retain) and
// go with the bed's directory.
func (c *Cluster) AddVolumes(ctx context.Context, n int, size string) error {
	q, err := resource.ParseQuantity(size)
	if err != nil {
		return fmt.Errorf("volume size %q: %w", size, err)
	}
	dirType := corev1.HostPathDirectoryOrCreate
	for i := range n {
		name := fmt.Sprintf("okevault-pv-%d", i)
		pv := &corev1.PersistentVolume{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.PersistentVolumeSpec{
				Capacity:                      corev1.ResourceList{corev1.ResourceStorage: q},
				AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
				PersistentVolumeSource: corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{
					Path: filepath.Join(c.Dir, "volumes", name), Type: &dirType,
				}},
			},
		}
		if _, err := c.Client.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("persistent volume %s: %w", name, err)
		}
	}
	return nil
}
