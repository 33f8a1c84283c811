package release

import (
	"debug/buildinfo"
	"fmt"
	"io"
	"strings"

	cdx "github.com/CycloneDX/cyclonedx-go"
)

// SBOM writes a CycloneDX JSON bill of materials of the Go modules built
// into binary, read from the build information the Go linker embeds (what
// `go version -m` prints): the main module as the application, at
// version, and each dependency (after replacements) and the Go standard
// library as libraries with their package URLs, which vulnerability
// scanners match. No serial number or timestamp: the same binary gives
// the same bytes.
func SBOM(w io.Writer, binary, version string) error {
	info, err := buildinfo.ReadFile(binary)
	if err != nil {
		return fmt.Errorf("%s: %w", binary, err)
	}
	name := info.Path[strings.LastIndexByte(info.Path, '/')+1:]
	bom := cdx.NewBOM()
	bom.Metadata = &cdx.Metadata{Component: &cdx.Component{
		BOMRef:     purl(info.Main.Path, version),
		Type:       cdx.ComponentTypeApplication,
		Name:       name,
		Version:    version,
		PackageURL: purl(info.Main.Path, version),
		Properties: buildProperties(info),
	}}
	goVersion := strings.TrimPrefix(info.GoVersion, "go")
	components := []cdx.Component{{
		BOMRef: purl("stdlib", "v"+goVersion), Type: cdx.ComponentTypeLibrary, Name: "stdlib", Version: "v" + goVersion, PackageURL: purl("stdlib", "v"+goVersion),
	}}
	for _, m := range info.Deps {
		if m.Replace != nil {
			m = m.Replace
		}
		p := purl(m.Path, m.Version)
		components = append(components, cdx.Component{BOMRef: p, Type: cdx.ComponentTypeLibrary, Name: m.Path, Version: m.Version, PackageURL: p})
	}
	bom.Components = &components
	enc := cdx.NewBOMEncoder(w, cdx.BOMFileFormatJSON)
	enc.SetPretty(true)
	return enc.Encode(bom)
}

// purl is a Go module's package URL (pkg:golang/<path>@<version>).
func purl(path, version string) string {
	return "pkg:golang/" + path + "@" + version
}

// buildProperties are the build settings that decide what the binary is
// (platform, cgo, flags), as properties of the application.
func buildProperties(info *buildinfo.BuildInfo) *[]cdx.Property {
	props := []cdx.Property{{Name: "go:version", Value: info.GoVersion}}
	for _, s := range info.Settings {
		switch s.Key {
		case "GOOS", "GOARCH", "CGO_ENABLED", "-trimpath", "vcs.revision", "vcs.time", "vcs.modified":
			props = append(props, cdx.Property{Name: "go:build:" + s.Key, Value: s.Value})
		}
	}
	return &props
}
