package testbed

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"
)

const (
	// DriverName is the Secrets Store CSI Driver's name and CSIDriver object.
	DriverName = "secrets-store.csi.k8s.io"
	// DriverServiceAccount is the kube-system service account the driver
	// runs as, with the RBAC of the driver's own deploy manifests.
	DriverServiceAccount = "secrets-store-csi-driver"
	// TokensAttribute carries the pod's service-account tokens, as kubelet sends them.
	TokensAttribute = "csi.storage.k8s.io/serviceAccount.tokens" //nolint:gosec // G101: an attribute name, not a credential

	defaultVolumeName = "secrets-store-inline"
)

// DriverOptions configure NewDriver. The zero value is ready to use.
type DriverOptions struct {
	// ProvidersDir is where the driver looks for <provider>.sock. Empty: a
	// providers/ folder in the driver's directory (see Driver.ProvidersDir).
	ProvidersDir string
	// RotationPollInterval enables the driver's secret rotation at this
	// interval; 0 leaves rotation off.
	RotationPollInterval time.Duration
	// SyncSecrets grants the driver the RBAC to sync secretObjects into
	// Kubernetes Secrets (the chart's syncSecret.enabled); without it the
	// driver is denied, as on a cluster installed without it.
	SyncSecrets bool
	// TokenAudiences are the CSIDriver's tokenRequests audiences. Empty: ["vault"].
	TokenAudiences []string
	// Dir holds the socket, the kubelet-like pod volumes and the log. Empty:
	// a new temporary directory that Close removes.
	Dir string
}

// Driver is the real Secrets Store CSI Driver, started as a node plugin for
// NodeName, plus a kubelet stand-in that publishes volumes through its CSI
// socket the way kubelet does.
type Driver struct {
	// NodeName is the driver's --nodeid; pods must run there (CreatePod does).
	NodeName string
	// ProvidersDir is where providers put <name>.sock.
	ProvidersDir string
	// Endpoint is the path of the driver's CSI socket.
	Endpoint string
	// MetricsAddr is the driver's metrics listener, 127.0.0.1:PORT.
	MetricsAddr string
	// TokenAudiences are the audiences of the CSIDriver's tokenRequests.
	TokenAudiences []string
	// Dir holds the socket, the pod volumes and the log.
	Dir string

	kube     *Kube
	ownDir   bool
	bin      string
	env      []string
	rotation time.Duration
	proc     *process
	conn     *grpc.ClientConn
	node     csi.NodeClient

	mu      sync.Mutex
	volumes map[string]*Volume // by target path
}

// StartDriver starts a Driver for the test and stops it at cleanup, printing
// the log tail if the test failed.
func StartDriver(t testing.TB, kube *Kube, opts DriverOptions) *Driver {
	t.Helper()
	skipShort(t)
	d, err := NewDriver(t.Context(), kube, opts)
	must(t, err)
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(d.LogTail(tailLines))
		}
		if err := d.Close(); err != nil {
			t.Errorf("testbed: %v", err)
		}
	})
	return d
}

// NewDriver installs the driver's CRDs, CSIDriver object and RBAC from
// bin/csidriver-deploy into kube, starts the driver and waits until its CSI
// socket answers. ctx bounds the start only.
func NewDriver(ctx context.Context, kube *Kube, opts DriverOptions) (_ *Driver, err error) {
	bin, err := Bin("secrets-store-csi-driver")
	if err != nil {
		return nil, err
	}
	deploy, err := Bin("csidriver-deploy")
	if err != nil {
		return nil, err
	}
	dir, owned, err := partDir(opts.Dir, "testbed-driver-")
	if err != nil {
		return nil, err
	}
	d := &Driver{
		NodeName:       NodeName,
		ProvidersDir:   opts.ProvidersDir,
		Endpoint:       filepath.Join(dir, "csi.sock"),
		TokenAudiences: opts.TokenAudiences,
		Dir:            dir,
		kube:           kube,
		ownDir:         owned,
		volumes:        map[string]*Volume{},
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, d.close(context.WithoutCancel(ctx)))
		}
	}()
	if len(d.TokenAudiences) == 0 {
		d.TokenAudiences = []string{"vault"}
	}
	if d.ProvidersDir == "" {
		d.ProvidersDir = filepath.Join(dir, "providers")
	}
	if err := os.MkdirAll(d.ProvidersDir, 0o750); err != nil {
		return nil, fmt.Errorf("create providers dir: %w", err)
	}

	if err := d.install(ctx, deploy, opts); err != nil {
		return nil, err
	}
	kubeconfig, err := d.writeKubeconfig(ctx)
	if err != nil {
		return nil, err
	}

	d.bin, d.env = bin, childEnv("KUBECONFIG="+kubeconfig)
	d.rotation = opts.RotationPollInterval
	if err := d.start(ctx); err != nil {
		return nil, err
	}
	return d, nil
}

// start runs the driver binary and waits for its CSI socket.
func (d *Driver) start(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return err
		}
		d.MetricsAddr = hostPort(port)
		args := []string{
			"--endpoint=unix://" + d.Endpoint,
			"--nodeid=" + d.NodeName,
			"--provider-volume=" + d.ProvidersDir,
			"--additional-provider-volume-paths=" + d.ProvidersDir,
			"--metrics-addr=" + d.MetricsAddr,
			"--v=2",
		}
		if d.rotation > 0 {
			args = append(args, "--enable-secret-rotation=true", "--rotation-poll-interval="+d.rotation.String())
		}
		_ = os.Remove(d.Endpoint)
		p, err := startProcess(d.Dir, "secrets-store-csi-driver", d.env, d.bin, args...)
		if err != nil {
			return err
		}
		d.proc = p
		if err = d.waitReady(ctx); err == nil {
			return nil
		}
		if attempt == 2 || !p.exited() || !strings.Contains(p.logs(), "address already in use") {
			return err
		}
	}
}

// Restart stops the driver process and starts it again, keeping published
// volumes mounted (as a driver pod restart does). The driver keeps its
// connection to a provider socket: after replacing a provider's socket,
// restart the driver or its calls hang ~30 s with DeadlineExceeded.
// MetricsAddr changes; the log file is appended to.
func (d *Driver) Restart(ctx context.Context) error {
	running := d.proc != nil && !d.proc.exited()
	if err := d.proc.stop(); err != nil && running {
		return err
	}
	return d.start(ctx)
}

// install applies the CRDs, the CSIDriver with tokenRequests, and the
// driver's service account and RBAC from the deploy folder.
func (d *Driver) install(ctx context.Context, deploy string, opts DriverOptions) error {
	read := func(name string) ([]byte, error) {
		b, err := os.ReadFile(filepath.Join(deploy, name)) //nolint:gosec // G304: the driver's own manifests from bin/
		if err != nil {
			return nil, fmt.Errorf("driver manifests: %w", err)
		}
		return b, nil
	}
	if err := d.kube.CreateNamespace(ctx, "kube-system"); err != nil {
		return err
	}
	manifests := []string{
		"secrets-store.csi.x-k8s.io_secretproviderclasses.yaml",
		"secrets-store.csi.x-k8s.io_secretproviderclasspodstatuses.yaml",
		"rbac-secretproviderclass.yaml",
		"rbac-secretprovidertokenrequest.yaml",
	}
	// Optional RBAC: applied when enabled, its binding removed otherwise (a
	// Kube shared by several drivers must not keep an earlier grant).
	optional := []struct {
		on      bool
		file    string
		binding string
	}{
		{opts.RotationPollInterval > 0, "rbac-secretproviderrotation.yaml", "secretproviderrotation-rolebinding"},
		{opts.SyncSecrets, "rbac-secretprovidersyncing.yaml", "secretprovidersyncing-rolebinding"},
	}
	for _, o := range optional {
		if o.on {
			manifests = append(manifests, o.file)
			continue
		}
		err := d.kube.Client.RbacV1().ClusterRoleBindings().Delete(ctx, o.binding, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("remove %s: %w", o.binding, err)
		}
	}
	for _, m := range manifests {
		b, err := read(m)
		if err != nil {
			return err
		}
		if err := d.kube.Apply(ctx, b); err != nil {
			return err
		}
	}

	b, err := read("csidriver.yaml")
	if err != nil {
		return err
	}
	var obj map[string]any
	if err := yaml.Unmarshal(b, &obj); err != nil {
		return fmt.Errorf("csidriver.yaml: %w", err)
	}
	spec, ok := obj["spec"].(map[string]any)
	if !ok {
		return errors.New("csidriver.yaml: no spec")
	}
	var reqs []any
	for _, a := range d.TokenAudiences {
		reqs = append(reqs, map[string]any{"audience": a})
	}
	spec["tokenRequests"] = reqs
	if b, err = json.Marshal(obj); err != nil {
		return fmt.Errorf("csidriver.yaml: %w", err)
	}
	// 1.37 warns that spec.serviceAccountTokenInSecrets is unset; driver
	// v1.5.4 reads tokens from the volume context only, so leave it unset
	// and keep the warning out of every test's output.
	cfg := rest.CopyConfig(d.kube.RESTConfig)
	cfg.WarningHandler = rest.NoWarnings{}
	quiet, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("dynamic client: %w", err)
	}
	return d.kube.apply(ctx, quiet, b)
}

// writeKubeconfig writes a kubeconfig for the driver's service account.
func (d *Driver) writeKubeconfig(ctx context.Context) (string, error) {
	token, err := d.kube.Token(ctx, "kube-system", DriverServiceAccount, "", nil, 24*time.Hour)
	if err != nil {
		return "", err
	}
	p := filepath.Join(d.Dir, "kubeconfig")
	return p, writeKubeconfig(p, d.kube.Host, d.kube.CAPEM, tokenUser(token))
}

func (d *Driver) waitReady(ctx context.Context) error {
	if d.conn != nil {
		_ = d.conn.Close()
	}
	conn, err := grpc.NewClient("unix://"+d.Endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("dial driver: %w", err)
	}
	d.conn = conn
	d.node = csi.NewNodeClient(conn)
	id := csi.NewIdentityClient(conn)
	return waitReady(ctx, d.proc, "CSI Identity", func(ctx context.Context) error {
		if _, err := os.Stat(d.Endpoint); err != nil {
			return err
		}
		if _, err := id.Probe(ctx, &csi.ProbeRequest{}); err != nil {
			return err
		}
		info, err := id.GetPluginInfo(ctx, &csi.GetPluginInfoRequest{})
		if err != nil {
			return err
		}
		if info.GetName() != DriverName {
			return fmt.Errorf("plugin name %q, want %q", info.GetName(), DriverName)
		}
		return nil
	})
}

// Close unpublishes the volumes still published, stops the driver, unmounts
// anything left under Dir and removes the directory NewDriver created.
func (d *Driver) Close() error {
	return d.close(context.Background())
}

func (d *Driver) close(ctx context.Context) error {
	if d == nil {
		return nil
	}
	var errs []error
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	d.mu.Lock()
	vols := make([]*Volume, 0, len(d.volumes))
	for _, v := range d.volumes {
		vols = append(vols, v)
	}
	d.mu.Unlock()
	if d.proc != nil && !d.proc.exited() {
		for _, v := range vols {
			errs = append(errs, v.Unpublish(ctx))
		}
	}
	errs = append(errs, d.proc.stop())
	d.proc = nil
	if d.conn != nil {
		errs = append(errs, d.conn.Close())
		d.conn = nil
	}
	errs = append(errs, unmountUnder(d.Dir))
	errs = append(errs, removeDir(d.Dir, d.ownDir))
	return closeErrors(errs...)
}

// Logs returns the driver's whole log.
func (d *Driver) Logs() string { return logsOf(d.proc) }

// LogTail returns the last lines of the driver's log.
func (d *Driver) LogTail(lines int) string { return tailOf(lines, d.proc) }

// PublishRequest is what kubelet knows when it mounts a pod's inline
// secrets-store CSI volume.
type PublishRequest struct {
	// Pod is the pod as read from the apiserver (its UID matters).
	Pod *corev1.Pod
	// SecretProviderClass is the volume's secretProviderClass attribute.
	SecretProviderClass string
	// VolumeName is the pod's volume name. Empty: "secrets-store-inline".
	VolumeName string
	// ExtraAttributes are added to (and override) the volume context.
	ExtraAttributes map[string]string
	// NodePublishSecrets are the contents of the volume's nodePublishSecretRef.
	NodePublishSecrets map[string]string
}

// Publish mounts a volume for req.Pod as kubelet does: it reads the
// CSIDriver object, requests a pod-bound token for each of its tokenRequests
// audiences, passes them with the pod's attributes in
// csi.storage.k8s.io/serviceAccount.tokens, and calls NodePublishVolume with
// a kubelet-shaped volume ID and target path.
func (d *Driver) Publish(ctx context.Context, req PublishRequest) (*Volume, error) {
	pod := req.Pod
	if pod == nil || pod.UID == "" {
		return nil, errors.New("publish: a pod read from the apiserver is required")
	}
	volName := req.VolumeName
	if volName == "" {
		volName = defaultVolumeName
	}
	driver, err := d.kube.Client.StorageV1().CSIDrivers().Get(ctx, DriverName, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("publish: read CSIDriver: %w", err)
	}

	attrs := map[string]string{"secretProviderClass": req.SecretProviderClass}
	if driver.Spec.PodInfoOnMount != nil && *driver.Spec.PodInfoOnMount {
		attrs["csi.storage.k8s.io/pod.name"] = pod.Name
		attrs["csi.storage.k8s.io/pod.namespace"] = pod.Namespace
		attrs["csi.storage.k8s.io/pod.uid"] = string(pod.UID)
		attrs["csi.storage.k8s.io/serviceAccount.name"] = pod.Spec.ServiceAccountName
		attrs["csi.storage.k8s.io/ephemeral"] = "true"
	}
	secrets := map[string]string{}
	for k, v := range req.NodePublishSecrets {
		secrets[k] = v
	}
	if len(driver.Spec.TokenRequests) > 0 {
		tokens := map[string]authenticationv1.TokenRequestStatus{}
		for _, tr := range driver.Spec.TokenRequests {
			var ttl time.Duration
			if tr.ExpirationSeconds != nil {
				ttl = time.Duration(*tr.ExpirationSeconds) * time.Second
			}
			st, err := d.kube.tokenRequest(ctx, pod.Namespace, pod.Spec.ServiceAccountName, tr.Audience, pod, ttl)
			if err != nil {
				return nil, fmt.Errorf("publish: %w", err)
			}
			tokens[tr.Audience] = st
		}
		b, err := json.Marshal(tokens)
		if err != nil {
			return nil, fmt.Errorf("publish: %w", err)
		}
		if driver.Spec.ServiceAccountTokenInSecrets != nil && *driver.Spec.ServiceAccountTokenInSecrets {
			secrets[TokensAttribute] = string(b)
		} else {
			attrs[TokensAttribute] = string(b)
		}
	}
	for k, v := range req.ExtraAttributes {
		attrs[k] = v
	}

	sum := sha256.Sum256([]byte(string(pod.UID) + volName))
	v := &Volume{
		VolumeID:   fmt.Sprintf("csi-%x", sum),
		TargetPath: filepath.Join(d.Dir, "pods", string(pod.UID), "volumes", "kubernetes.io~csi", volName, "mount"),
		Pod:        pod,
		driver:     d,
	}
	if err := os.MkdirAll(filepath.Dir(v.TargetPath), 0o750); err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	_, err = d.node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{
		VolumeId:   v.VolumeID,
		TargetPath: v.TargetPath,
		VolumeCapability: &csi.VolumeCapability{
			AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
			AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
		},
		Readonly:      true,
		VolumeContext: attrs,
		Secrets:       secrets,
	})
	if err != nil {
		_ = os.RemoveAll(filepath.Dir(v.TargetPath)) // as kubelet does when publish fails
		return nil, fmt.Errorf("NodePublishVolume for pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	d.mu.Lock()
	d.volumes[v.TargetPath] = v
	d.mu.Unlock()
	return v, nil
}

// Volume is a published pod volume.
type Volume struct {
	// TargetPath is where the driver mounted the volume, shaped like
	// kubelet's .../pods/<uid>/volumes/kubernetes.io~csi/<volume>/mount.
	TargetPath string
	// VolumeID is the kubelet-style handle, csi-<sha256(pod UID + volume)>.
	VolumeID string
	// Pod is the pod the volume belongs to.
	Pod *corev1.Pod

	driver *Driver
}

// Files returns the files the pod sees, by path relative to the mount. It
// follows the driver's atomic-writer symlinks and leaves out its internal
// ..data and ..<timestamp> entries.
func (v *Volume) Files() (map[string][]byte, error) {
	files := map[string][]byte{}
	err := v.walk(func(rel, full string, _ fs.FileInfo) error {
		b, err := os.ReadFile(full) //nolint:gosec // G304: reading the test's own volume is the point
		if err != nil {
			return err
		}
		files[rel] = b
		return nil
	})
	return files, err
}

// Modes returns the permission bits and type of each file the pod sees.
func (v *Volume) Modes() (map[string]fs.FileMode, error) {
	modes := map[string]fs.FileMode{}
	err := v.walk(func(rel, _ string, info fs.FileInfo) error {
		modes[rel] = info.Mode()
		return nil
	})
	return modes, err
}

func (v *Volume) walk(fn func(rel, full string, info fs.FileInfo) error) error {
	var walk func(dir, rel string) error
	walk = func(dir, rel string) error {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return fmt.Errorf("read volume: %w", err)
		}
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), "..") {
				continue
			}
			full := filepath.Join(dir, e.Name())
			info, err := os.Stat(full) // follows name -> ..data/name
			if err != nil {
				return fmt.Errorf("read volume: %w", err)
			}
			r := path.Join(rel, e.Name())
			if info.IsDir() {
				err = walk(full, r)
			} else {
				err = fn(r, full, info)
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
	return walk(v.TargetPath, "")
}

// Unpublish calls NodeUnpublishVolume, as kubelet does when the pod goes,
// and removes the volume's directory. Calling it again is harmless.
func (v *Volume) Unpublish(ctx context.Context) error {
	d := v.driver
	d.mu.Lock()
	_, published := d.volumes[v.TargetPath]
	d.mu.Unlock()
	if !published {
		return nil
	}
	if err := v.unpublishRetrying(ctx); err != nil {
		return err
	}
	d.mu.Lock()
	delete(d.volumes, v.TargetPath)
	d.mu.Unlock()
	if err := os.RemoveAll(filepath.Dir(v.TargetPath)); err != nil {
		return fmt.Errorf("unpublish: %w", err)
	}
	return nil
}

// unpublishRetrying calls NodeUnpublishVolume until it succeeds, as kubelet
// does. The driver's rotation reconciler can rewrite the volume's files while
// an unpublish runs, and the driver then fails to remove a directory that is
// not empty; kubelet's next try succeeds. Retries stop after 30 seconds.
func (v *Volume) unpublishRetrying(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req := &csi.NodeUnpublishVolumeRequest{VolumeId: v.VolumeID, TargetPath: v.TargetPath}
	for delay := 100 * time.Millisecond; ; delay = min(2*delay, 2*time.Second) {
		_, err := v.driver.node.NodeUnpublishVolume(ctx, req)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("NodeUnpublishVolume %s: %w", v.TargetPath, err)
		case <-time.After(delay):
		}
	}
}

// MountType returns the file-system type mounted at dir ("tmpfs"), or ""
// when dir is not a mount point, from /proc/self/mountinfo.
func MountType(dir string) (string, error) {
	mounts, err := mountInfo()
	if err != nil {
		return "", err
	}
	dir = filepath.Clean(dir)
	fstype := ""
	for _, m := range mounts {
		if m.point == dir {
			fstype = m.fstype // the last one is on top
		}
	}
	return fstype, nil
}

type mountEntry struct{ point, fstype string }

func mountInfo() ([]mountEntry, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mounts: %w", err)
	}
	defer func() { _ = f.Close() }()
	var out []mountEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		fields, postFields := strings.Fields(pre), strings.Fields(post)
		if !ok || len(fields) < 5 || len(postFields) < 1 {
			continue
		}
		out = append(out, mountEntry{point: unescapeMount(fields[4]), fstype: postFields[0]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mounts: %w", err)
	}
	return out, nil
}

// unescapeMount undoes mountinfo's octal escapes (\040 for space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// unmountUnder unmounts every mount point below dir, deepest first.
func unmountUnder(dir string) error {
	if dir == "" {
		return nil
	}
	mounts, err := mountInfo()
	if err != nil {
		return err
	}
	prefix := filepath.Clean(dir) + string(filepath.Separator)
	var points []string
	for _, m := range mounts {
		if strings.HasPrefix(m.point, prefix) {
			points = append(points, m.point)
		}
	}
	slices.SortFunc(points, func(a, b string) int { return len(b) - len(a) })
	var errs []error
	for _, p := range points {
		if err := syscall.Unmount(p, 0); err != nil && !errors.Is(err, syscall.EINVAL) {
			if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
				errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
			}
		}
	}
	return errors.Join(errs...)
}
