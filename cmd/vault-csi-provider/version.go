package main

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Set at build time with -ldflags -X, like version (the Makefile does):
// the commit, "clean" or "dirty", the build's date, and the oldest Secrets
// Store CSI Driver release the tests vouch for.
var (
	gitCommit        = ""
	gitTreeState     = ""
	buildDate        = ""
	minDriverVersion = ""
)

// versionInfo is what -version prints. Its keys are the peer's, so scripts
// that read gitVersion or minDriverVersion from its -version keep working.
type versionInfo struct {
	Major            string `json:"major" yaml:"major"`
	Minor            string `json:"minor" yaml:"minor"`
	Patch            string `json:"patch" yaml:"patch"`
	GitVersion       string `json:"gitVersion" yaml:"gitVersion"`
	GitCommit        string `json:"gitCommit" yaml:"gitCommit"`
	GitTreeState     string `json:"gitTreeState" yaml:"gitTreeState"`
	BuildDate        string `json:"buildDate" yaml:"buildDate"`
	GoVersion        string `json:"goVersion" yaml:"goVersion"`
	Compiler         string `json:"compiler" yaml:"compiler"`
	Platform         string `json:"platform" yaml:"platform"`
	MinDriverVersion string `json:"minDriverVersion" yaml:"minDriverVersion"`
}

// currentVersion describes this binary.
func currentVersion() versionInfo {
	v := versionInfo{
		GitVersion:       version,
		GitCommit:        gitCommit,
		GitTreeState:     gitTreeState,
		BuildDate:        buildDate,
		GoVersion:        runtime.Version(),
		Compiler:         runtime.Compiler,
		Platform:         runtime.GOOS + "/" + runtime.GOARCH,
		MinDriverVersion: minDriverVersion,
	}
	// "v1.2.3-rc.1" → 1, 2, 3-rc.1; a version that is no release ("dev", a
	// commit) leaves them empty.
	if parts := strings.SplitN(strings.TrimPrefix(version, "v"), ".", 3); len(parts) == 3 {
		v.Major, v.Minor, v.Patch = parts[0], parts[1], parts[2]
	}
	return v
}

// printVersion writes v in the -output format: yaml, json (one line) or
// json-pretty.
func printVersion(w io.Writer, format string, v versionInfo) error {
	var (
		b   []byte
		err error
	)
	switch format {
	case "json", "":
		b, err = json.Marshal(v)
	case "json-pretty":
		b, err = json.MarshalIndent(v, "", "  ")
	case "yaml":
		b, err = yaml.Marshal(v)
		b = []byte(strings.TrimSuffix(string(b), "\n"))
	default:
		return fmt.Errorf("-output %q: want yaml, json or json-pretty", format)
	}
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}
