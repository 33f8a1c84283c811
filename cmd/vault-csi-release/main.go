// Command vault-csi-release makes and pushes a release without a container
// engine (make release and make push run it):
//
//	vault-csi-release assemble -version vX.Y.Z -dir dist/vX.Y.Z
//	    the provider's image for linux/amd64 and arm64 as one OCI image
//	    index in an OCI layout archive, from the binaries make release built
//	    there, and a CycloneDX SBOM beside each binary
//	vault-csi-release push -version vX.Y.Z -dir dist/vX.Y.Z -registry fra.ocir.io/ns/vault
//	    the image index and the chart to a registry; prints the digests to pin
//
// push takes the registry's credentials from -username and the environment
// variable REGISTRY_PASSWORD (never a flag: flags show in the process
// list), or else from what `docker login` stored; it checks the registry's
// certificate against the system's roots (or SSL_CERT_FILE's).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/okevault/vault-csi-provider/internal/release"
)

// Repository is the image's name in the archive (what a node that imports
// it calls it): the chart's default image repository.
const Repository = "ghcr.io/okevault/vault-csi-provider"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "vault-csi-release:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: vault-csi-release assemble|push -version vX.Y.Z -dir DIR [flags]")
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	version := fs.String("version", "", "the release's version (vX.Y.Z)")
	dir := fs.String("dir", "", "the release's directory (make release's dist/<version>)")
	var reg release.Registry
	fs.StringVar(&reg.Repository, "registry", "", "push: registry host and namespace, e.g. fra.ocir.io/<tenancy-namespace>/vault")
	fs.StringVar(&reg.Username, "username", "", "push: registry user (password in $REGISTRY_PASSWORD); empty: docker login's credentials")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *version == "" || *dir == "" {
		return errors.New(args[0] + ": -version and -dir are required")
	}
	archive := filepath.Join(*dir, "vault-csi-provider-"+*version+".oci.tar")
	switch args[0] {
	case "assemble":
		return assemble(*version, *dir, archive, stdout)
	case "push":
		if reg.Repository == "" {
			return errors.New("push: -registry is required")
		}
		reg.Password = os.Getenv("REGISTRY_PASSWORD")
		if reg.Username != "" && reg.Password == "" {
			return errors.New("push: -username needs the password in $REGISTRY_PASSWORD")
		}
		return push(ctx, reg, *version, *dir, archive, stdout)
	}
	return fmt.Errorf("unknown command %q: want assemble or push", args[0])
}

func assemble(version, dir, archive string, stdout io.Writer) error {
	binaries := map[string]string{}
	for _, arch := range []string{"amd64", "arm64"} {
		binaries[arch] = filepath.Join(dir, "vault-csi-provider-"+version+"-linux-"+arch)
	}
	idx, err := release.Index(version, binaries)
	if err != nil {
		return err
	}
	if err := release.WriteArchive(archive, idx, Repository+":"+version); err != nil {
		return err
	}
	digest, err := idx.Digest()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "image %s:%s index %s in %s\n", Repository, version, digest, archive)
	bins, err := filepath.Glob(filepath.Join(dir, "vault-*-"+version+"-linux-*"))
	if err != nil {
		return err
	}
	for _, bin := range bins {
		if strings.HasSuffix(bin, ".json") {
			continue
		}
		if err := writeSBOM(bin+".cdx.json", bin, version); err != nil {
			return err
		}
	}
	return nil
}

func writeSBOM(file, binary, version string) error {
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if err := release.SBOM(f, binary, version); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

func push(ctx context.Context, reg release.Registry, version, dir, archive string, stdout io.Writer) error {
	idx, _, done, err := release.ReadArchive(archive)
	if err != nil {
		return err
	}
	defer done()
	chart := filepath.Join(dir, "vault-csi-provider-"+strings.TrimPrefix(version, "v")+".tgz")
	pushed, err := release.Push(ctx, reg, version, idx, chart)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "image: %s\nchart: %s\n\ninstall with:\n  helm install vault-csi-provider oci://%s/charts/vault-csi-provider --version %s \\\n    --set image.repository=%s/vault-csi-provider --set image.digest=%s\n",
		pushed.Image, pushed.Chart, strings.TrimSuffix(reg.Repository, "/"), pushed.ChartVersion, strings.TrimSuffix(reg.Repository, "/"), pushed.Image[strings.LastIndexByte(pushed.Image, '@')+1:])
	return nil
}
