package release

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"helm.sh/helm/v3/pkg/chart/loader"
)

// Helm's media types for a chart stored in an OCI registry.
const (
	helmConfigType = types.MediaType("application/vnd.cncf.helm.config.v1+json")
	helmChartType  = types.MediaType("application/vnd.cncf.helm.chart.content.v1.tar+gzip")
)

// Registry is where a release goes and how to reach it.
type Registry struct {
	// Repository is the registry host and namespace, e.g.
	// fra.ocir.io/mytenancy/vault: the image goes to
	// <Repository>/vault-csi-provider, the chart to
	// oci://<Repository>/charts/vault-csi-provider.
	Repository string
	// Username and Password, when Username is set; otherwise the
	// credentials `docker login` or `helm registry login` stored
	// (~/.docker/config.json, $DOCKER_CONFIG).
	Username, Password string
	// Transport, when set, carries the requests (a registry whose CA is
	// not among the system's roots); nil: the default transport.
	Transport http.RoundTripper
}

// Pushed says what a push wrote, by digest.
type Pushed struct {
	Image, Chart string // repository@digest
	ChartVersion string
}

// Push pushes the image index (tagged version) and the chart package
// (tagged its version, as Helm does) to r.
func Push(ctx context.Context, r Registry, version string, idx v1.ImageIndex, chartPackage string) (Pushed, error) {
	opts := r.options(ctx)
	repo := strings.TrimSuffix(r.Repository, "/")
	imageRef, err := name.NewTag(repo + "/vault-csi-provider:" + version)
	if err != nil {
		return Pushed{}, fmt.Errorf("registry %q: %w", r.Repository, err)
	}
	if err := remote.WriteIndex(imageRef, idx, opts...); err != nil {
		return Pushed{}, pushError(imageRef, err)
	}
	imageDigest, err := idx.Digest()
	if err != nil {
		return Pushed{}, err
	}

	chart, chartVersion, err := chartArtifact(chartPackage)
	if err != nil {
		return Pushed{}, err
	}
	// OCI tags cannot hold "+", which semantic versions may; Helm writes "_".
	chartRef, err := name.NewTag(repo + "/charts/vault-csi-provider:" + strings.ReplaceAll(chartVersion, "+", "_"))
	if err != nil {
		return Pushed{}, err
	}
	if err := remote.Write(chartRef, chart, opts...); err != nil {
		return Pushed{}, pushError(chartRef, err)
	}
	chartDigest, err := chart.Digest()
	if err != nil {
		return Pushed{}, err
	}
	return Pushed{
		Image:        imageRef.Context().Digest(imageDigest.String()).String(),
		Chart:        chartRef.Context().Digest(chartDigest.String()).String(),
		ChartVersion: chartVersion,
	}, nil
}

// pushError says what to do about a refusal of the credentials, the
// commonest failure (and a HEAD's 401 carries no message of its own).
func pushError(ref name.Reference, err error) error {
	var terr *transport.Error
	if errors.As(err, &terr) && (terr.StatusCode == http.StatusUnauthorized || terr.StatusCode == http.StatusForbidden) {
		return fmt.Errorf("push %s: the registry refused the credentials (%d): check -username and REGISTRY_PASSWORD, or docker login (OCIR: <tenancy-namespace>/<username> and an auth token): %w", ref, terr.StatusCode, err)
	}
	return fmt.Errorf("push %s: %w", ref, err)
}

// options authenticate as r says. The registry's certificate is checked
// against the system's roots (SSL_CERT_FILE or SSL_CERT_DIR name others).
func (r Registry) options(ctx context.Context) []remote.Option {
	auth := remote.WithAuthFromKeychain(authn.DefaultKeychain)
	if r.Username != "" {
		auth = remote.WithAuth(authn.FromConfig(authn.AuthConfig{Username: r.Username, Password: r.Password}))
	}
	opts := []remote.Option{remote.WithContext(ctx), auth}
	if r.Transport != nil {
		opts = append(opts, remote.WithTransport(r.Transport))
	}
	return opts
}

// chartArtifact is the chart package as Helm stores a chart in an OCI
// registry: its Chart.yaml as the config (JSON), the package as the one
// layer.
func chartArtifact(pkg string) (v1.Image, string, error) {
	tgz, err := os.ReadFile(pkg)
	if err != nil {
		return nil, "", err
	}
	ch, err := loader.LoadArchive(bytes.NewReader(tgz))
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", pkg, err)
	}
	config, err := json.Marshal(ch.Metadata)
	if err != nil {
		return nil, "", err
	}
	layer := static.NewLayer(tgz, helmChartType)
	layerDigest, err := layer.Digest()
	if err != nil {
		return nil, "", err
	}
	configDigest, _, err := v1.SHA256(bytes.NewReader(config))
	if err != nil {
		return nil, "", err
	}
	manifest, err := json.Marshal(v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		Config:        v1.Descriptor{MediaType: helmConfigType, Digest: configDigest, Size: int64(len(config))},
		Layers:        []v1.Descriptor{{MediaType: helmChartType, Digest: layerDigest, Size: int64(len(tgz))}},
		Annotations: map[string]string{
			"org.opencontainers.image.title":       ch.Metadata.Name,
			"org.opencontainers.image.version":     ch.Metadata.Version,
			"org.opencontainers.image.description": ch.Metadata.Description,
		},
	})
	if err != nil {
		return nil, "", err
	}
	img, err := partial.CompressedToImage(artifact{config: config, manifest: manifest, layer: layer, layerDigest: layerDigest})
	return img, ch.Metadata.Version, err
}

// artifact is an OCI manifest whose config is not an image's: the
// go-containerregistry image types build image configs only.
type artifact struct {
	config, manifest []byte
	layer            v1.Layer
	layerDigest      v1.Hash
}

func (a artifact) RawConfigFile() ([]byte, error)      { return a.config, nil }
func (a artifact) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }
func (a artifact) RawManifest() ([]byte, error)        { return a.manifest, nil }

func (a artifact) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if h != a.layerDigest {
		return nil, errors.New("no such layer in the chart artifact")
	}
	return a.layer, nil
}
