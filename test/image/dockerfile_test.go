// Tests of the container image's recipe: the Dockerfile at the module root
// must build a static, trimmed binary and ship it alone on a distroless
// nonroot base, with every base image pinned by digest.
package image_test

import (
	"encoding/json"
	"fmt"
	"go/version"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/okevault/vault-csi-provider/test/testbed"
)

const binary = "/bin/vault-csi-provider"

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	line int    // where it starts, 1-based
	cmd  string // upper case: FROM, RUN, COPY, ...
	args string // the rest, trimmed
}

// stage is a FROM and what follows it.
type stage struct {
	index  int
	name   string // after AS, lower case; "" if none
	base   string // the image, ARGs expanded
	from   instruction
	instrs []instruction
}

// parseDockerfile splits src into stages. It knows what this test needs:
// comments, parser directives, backslash continuations, global ARGs in FROM.
func parseDockerfile(src string) ([]stage, error) {
	var instrs []instruction
	var cur *instruction
	for i, raw := range strings.Split(src, "\n") {
		line := strings.TrimSpace(raw)
		if strings.HasPrefix(line, "#") || (line == "" && cur == nil) {
			continue // comments (also inside continuations) and blank lines
		}
		cont := strings.HasSuffix(line, `\`)
		line = strings.TrimSuffix(line, `\`)
		if cur == nil {
			cmd, args, _ := strings.Cut(line, " ")
			cur = &instruction{line: i + 1, cmd: strings.ToUpper(cmd), args: args}
		} else {
			cur.args += " " + line
		}
		if !cont {
			cur.args = strings.TrimSpace(cur.args)
			instrs = append(instrs, *cur)
			cur = nil
		}
	}
	if cur != nil {
		return nil, fmt.Errorf("line %d: continuation at end of file", cur.line)
	}

	globalArgs := map[string]string{}
	var stages []stage
	for _, in := range instrs {
		switch {
		case in.cmd == "ARG" && len(stages) == 0:
			k, v, _ := strings.Cut(in.args, "=")
			globalArgs[k] = strings.Trim(v, `"`)
		case in.cmd == "FROM":
			var words []string
			for _, w := range strings.Fields(in.args) {
				if !strings.HasPrefix(w, "--") { // --platform=...
					words = append(words, w)
				}
			}
			s := stage{index: len(stages), from: in}
			switch {
			case len(words) == 1:
			case len(words) == 3 && strings.EqualFold(words[1], "AS"):
				s.name = strings.ToLower(words[2])
			default:
				return nil, fmt.Errorf("line %d: cannot read FROM %s", in.line, in.args)
			}
			s.base = os.Expand(words[0], func(k string) string { return globalArgs[k] })
			stages = append(stages, s)
		case len(stages) == 0:
			return nil, fmt.Errorf("line %d: %s before the first FROM", in.line, in.cmd)
		default:
			stages[len(stages)-1].instrs = append(stages[len(stages)-1].instrs, in)
		}
	}
	if len(stages) == 0 {
		return nil, fmt.Errorf("no FROM")
	}
	return stages, nil
}

// imageRef splits an image reference into repository, tag and digest.
func imageRef(ref string) (repo, tag, digest string) {
	repo, digest, _ = strings.Cut(ref, "@")
	if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		repo, tag = repo[:i], repo[i+1:]
	}
	return repo, tag, digest
}

// stageByRef finds the earlier stage a --from= or FROM names, by name or index.
func stageByRef(stages []stage, ref string, before int) (stage, bool) {
	for _, s := range stages[:before] {
		if s.name == strings.ToLower(ref) || strconv.Itoa(s.index) == ref {
			return s, true
		}
	}
	return stage{}, false
}

// last returns the last instruction of cmd in s.
func (s stage) last(cmd string) (instruction, bool) {
	for i := len(s.instrs) - 1; i >= 0; i-- {
		if s.instrs[i].cmd == cmd {
			return s.instrs[i], true
		}
	}
	return instruction{}, false
}

// goBuildOutput returns the -o path of a `go build` in cmd, or "".
func goBuildOutput(cmd string) string {
	f := strings.Fields(cmd)
	i := slices.Index(f, "build")
	if i < 1 || f[i-1] != "go" {
		return ""
	}
	for j := i + 1; j < len(f); j++ {
		switch {
		case f[j] == "-o" && j+1 < len(f):
			return f[j+1]
		case strings.HasPrefix(f[j], "-o="):
			return strings.TrimPrefix(f[j], "-o=")
		case f[j] == "&&" || f[j] == ";":
			return ""
		}
	}
	return ""
}

var (
	distrolessStatic = regexp.MustCompile(`^gcr\.io/distroless/static(-debian[0-9]+)?$`)
	sha256Digest     = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	goDirective      = regexp.MustCompile(`(?m)^go (\d+\.\d+(?:\.\d+)?)\s*$`)
	goTag            = regexp.MustCompile(`^\d+\.\d+(?:\.\d+)?`)
)

func TestDockerfile(t *testing.T) {
	root, err := testbed.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(root, "Dockerfile")
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	stages, err := parseDockerfile(string(src))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	final := stages[len(stages)-1]

	t.Run("multi-stage", func(t *testing.T) {
		if len(stages) < 2 {
			t.Fatalf("%d stage(s): build in one stage, ship from another", len(stages))
		}
	})

	t.Run("final base is distroless static nonroot", func(t *testing.T) {
		repo, tag, _ := imageRef(final.base)
		if !distrolessStatic.MatchString(repo) || tag != "nonroot" {
			t.Errorf("line %d: final stage FROM %s, want gcr.io/distroless/static-debian12:nonroot", final.from.line, final.base)
		}
	})

	t.Run("user 65532:65532", func(t *testing.T) {
		u, ok := final.last("USER")
		if !ok || u.args != "65532:65532" {
			t.Errorf("final stage USER %q, want 65532:65532 (numeric, so runAsNonRoot can verify it)", u.args)
		}
	})

	t.Run("entrypoint is the copied binary", func(t *testing.T) {
		ep, ok := final.last("ENTRYPOINT")
		var argv []string
		if !ok || json.Unmarshal([]byte(ep.args), &argv) != nil {
			t.Fatalf("final stage ENTRYPOINT %q: want the exec form [%q]", ep.args, binary)
		}
		if !slices.Equal(argv, []string{binary}) {
			t.Errorf("line %d: ENTRYPOINT %q, want [%q]", ep.line, argv, binary)
		}
		// COPY --from=<stage> <go build -o> /bin/vault-csi-provider
		var found bool
		for _, in := range final.instrs {
			if in.cmd != "COPY" {
				continue
			}
			f := strings.Fields(in.args)
			var from string
			var paths []string
			for _, w := range f {
				if v, ok := strings.CutPrefix(w, "--from="); ok {
					from = v
				} else if !strings.HasPrefix(w, "--") {
					paths = append(paths, w)
				}
			}
			if len(paths) != 2 || paths[1] != binary {
				continue
			}
			found = true
			build, ok := stageByRef(stages, from, final.index)
			if !ok {
				t.Errorf("line %d: COPY --from=%q names no earlier stage", in.line, from)
				continue
			}
			var outputs []string
			for _, r := range build.instrs {
				if r.cmd == "RUN" {
					if o := goBuildOutput(r.args); o != "" {
						outputs = append(outputs, o)
					}
				}
			}
			if !slices.Contains(outputs, paths[0]) {
				t.Errorf("line %d: copies %s from stage %q, whose go build writes %q", in.line, paths[0], from, outputs)
			}
		}
		if !found {
			t.Errorf("final stage has no COPY --from=<build stage> ... %s", binary)
		}
	})

	t.Run("static trimmed build", func(t *testing.T) {
		var builds int
		for _, s := range stages[:len(stages)-1] {
			cgoOff := false
			for _, in := range s.instrs {
				if in.cmd == "ENV" && strings.Contains(in.args, "CGO_ENABLED=0") {
					cgoOff = true
				}
				if in.cmd != "RUN" || goBuildOutput(in.args) == "" {
					continue
				}
				builds++
				if !cgoOff && !strings.Contains(in.args, "CGO_ENABLED=0") {
					t.Errorf("line %d: go build without CGO_ENABLED=0 (the final base has no libc)", in.line)
				}
				if !strings.Contains(in.args, "-trimpath") {
					t.Errorf("line %d: go build without -trimpath", in.line)
				}
			}
		}
		if builds == 0 {
			t.Error("no `go build -o ...` in a build stage")
		}
	})

	t.Run("base images pinned by digest", func(t *testing.T) {
		for _, s := range stages {
			if _, isStage := stageByRef(stages, s.base, s.index); isStage || s.base == "scratch" {
				continue
			}
			repo, tag, digest := imageRef(s.base)
			if !sha256Digest.MatchString(digest) {
				t.Errorf("line %d: FROM %s is not pinned by digest: want %s:%s@sha256:<digest> (a tag can move; a digest is what was reviewed)",
					s.from.line, s.base, repo, tag)
			}
		}
	})
	t.Run("cross-builds for the target platform", func(t *testing.T) {
		// buildx --platform linux/amd64,linux/arm64: each build stage runs on
		// the builder's platform and the Go build targets the image's.
		for _, s := range stages[:len(stages)-1] {
			for _, in := range s.instrs {
				if in.cmd != "RUN" || goBuildOutput(in.args) == "" {
					continue
				}
				if !strings.Contains(s.from.args, "--platform=$BUILDPLATFORM") {
					t.Errorf("line %d: FROM %s without --platform=$BUILDPLATFORM: arm64 would build under emulation", s.from.line, s.from.args)
				}
				if !strings.Contains(in.args, "GOOS=${TARGETOS}") || !strings.Contains(in.args, "GOARCH=${TARGETARCH}") {
					t.Errorf("line %d: go build without GOOS=${TARGETOS} GOARCH=${TARGETARCH}: every platform would get the builder's binary", in.line)
				}
			}
		}
	})

	t.Run("licence label is the LICENSE's", func(t *testing.T) {
		lic, err := os.ReadFile(filepath.Join(root, "LICENSE"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(lic), "Apache License") || !strings.Contains(string(lic), "Version 2.0, January 2004") {
			t.Fatal("LICENSE is not the Apache License 2.0")
		}
		l, ok := final.last("LABEL")
		if !ok || !strings.Contains(l.args, `org.opencontainers.image.licenses="Apache-2.0"`) {
			t.Errorf("final stage LABEL %q: want org.opencontainers.image.licenses=\"Apache-2.0\"", l.args)
		}
	})

	t.Run("build image's Go is at least go.mod's", func(t *testing.T) {
		// The golang images set GOTOOLCHAIN=local: an older Go refuses the module.
		b, err := os.ReadFile("../../go.mod")
		if err != nil {
			t.Fatal(err)
		}
		want := goDirective.FindSubmatch(b)
		if want == nil {
			t.Fatal("go.mod has no go directive")
		}
		for _, s := range stages {
			repo, tag, _ := imageRef(s.base)
			if repo != "golang" {
				continue
			}
			have := goTag.FindString(tag)
			if have == "" || version.Compare("go"+have, "go"+string(want[1])) < 0 {
				t.Errorf("line %d: FROM %s: Go %q is older than go.mod's %s, or not a version", s.from.line, s.base, have, want[1])
			}
		}
	})
}

// TestParseDockerfile checks the parser on the forms the real Dockerfile
// may take once pinned.
func TestParseDockerfile(t *testing.T) {
	const src = `# syntax=docker/dockerfile:1
ARG GO=1.26
FROM --platform=$BUILDPLATFORM golang:${GO}-bookworm@sha256:` + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" + ` AS Build
RUN CGO_ENABLED=0 go build \
  # a comment inside a continuation
  -trimpath -o /out/x ./cmd/x
FROM build AS again
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/x /bin/x
USER 65532:65532
ENTRYPOINT ["/bin/x"]
`
	stages, err := parseDockerfile(src)
	if err != nil {
		t.Fatal(err)
	}
	if len(stages) != 3 {
		t.Fatalf("%d stages, want 3", len(stages))
	}
	repo, tag, digest := imageRef(stages[0].base)
	if repo != "golang" || tag != "1.26-bookworm" || !sha256Digest.MatchString(digest) || stages[0].name != "build" {
		t.Errorf("stage 0: %q %q %q name %q", repo, tag, digest, stages[0].name)
	}
	run := stages[0].instrs[0]
	if got := goBuildOutput(run.args); got != "/out/x" || !strings.Contains(run.args, "-trimpath") {
		t.Errorf("RUN %q: output %q", run.args, got)
	}
	if _, ok := stageByRef(stages, stages[1].base, 1); !ok {
		t.Error("FROM build is not recognised as a stage")
	}
	if repo, tag, digest := imageRef("registry:5000/a/b:c"); repo != "registry:5000/a/b" || tag != "c" || digest != "" {
		t.Errorf("imageRef with a registry port: %q %q %q", repo, tag, digest)
	}
}
