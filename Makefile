# The project's commands. `make help` lists them.
SHELL := /bin/bash
include test/tools/versions.env

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
# What -version prints beside the version (the peer's keys). The date is the
# commit's, so that building a tag again gives the same bytes (and checksums).
GIT_COMMIT := $(shell git rev-parse HEAD 2>/dev/null)
GIT_TREE_STATE := $(shell [ -z "$$(git status --porcelain 2>/dev/null)" ] && echo clean || echo dirty)
BUILD_DATE := $(shell TZ=UTC git log -1 --format=%cd --date=format-local:%Y-%m-%dT%H:%M:%SZ 2>/dev/null)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.gitCommit=$(GIT_COMMIT) -X main.gitTreeState=$(GIT_TREE_STATE) \
	-X main.buildDate=$(BUILD_DATE) -X main.minDriverVersion=$(CSI_DRIVER_VERSION)
IMAGE ?= vault-csi-provider:$(VERSION)
# make release: where, for which platforms (OKE runs amd64 and Ampere arm64
# node pools), and the chart version (the release without its "v").
RELEASE_DIR ?= dist/$(VERSION)
PLATFORMS := linux/amd64 linux/arm64
CHART_VERSION = $(patsubst v%,%,$(VERSION))
# helm, pinned in test/tools/helm (built by go, not the test bed).
HELM := go tool -modfile=test/tools/helm/go.mod helm
GO_TEST_FLAGS ?= -count=1
# How many inputs `make fuzz` tries per fuzz target; `make test` runs their seeds only.
# A count, not a duration: Go 1.26's fuzz coordinator can fail a duration run at its
# very end with a bare "context deadline exceeded" and no failing input (golang/go#75804,
# fixed in Go 1.27); a count budget has no deadline to race.
FUZZTIME ?= 20000x
# Every fuzz target, as package:Target. `go test -fuzz` takes one at a time.
FUZZ_TARGETS := \
	./internal/config:FuzzParse \
	./internal/config:FuzzAttributes \
	./internal/config:FuzzObjectName \
	./internal/config:FuzzSecretPath \
	./internal/config:FuzzFilePermission \
	./internal/config:FuzzEncoding \
	./internal/config:FuzzTokens \
	./internal/auth:FuzzClaims \
	./internal/auth:FuzzIdentityKeysApart \
	./internal/vault:FuzzParse \
	./internal/render:FuzzExecuteBounded \
	./internal/render:FuzzFuncsNested
comma := ,
# The checksum database has no entry for the CSI driver's module; go.sum pins it.
export GONOSUMDB := sigs.k8s.io/secrets-store-csi-driver,monis.app/mlog,github.com/bank-vaults

.PHONY: help build release push test test-peer test-unit fuzz testbin lint demo demo-quick bench bench-pods load image image-push clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

build: ## build the static provider binary into dist/
	CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o dist/vault-csi-provider ./cmd/vault-csi-provider

release: ## VERSION=vX.Y.Z: both commands for linux/amd64 and arm64, the provider image (OCI archive, both platforms), SBOMs, the chart package and SHA256SUMS in dist/<version>/ (no container engine; README "Releases")
	@[[ "$(VERSION)" =~ ^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$$ ]] || \
		{ echo "make release needs VERSION=vX.Y.Z (a semantic version, not "$(VERSION)")" >&2; exit 2; }
	rm -rf $(RELEASE_DIR)
	mkdir -p $(RELEASE_DIR)
	@set -e; for p in $(PLATFORMS); do for c in vault-csi-provider vault-oke-setup; do \
		out=$(RELEASE_DIR)/$$c-$(VERSION)-$${p%/*}-$${p#*/}; echo "build $$out"; \
		CGO_ENABLED=0 GOOS=$${p%/*} GOARCH=$${p#*/} go build -trimpath -ldflags "$(LDFLAGS)" -o $$out ./cmd/$$c; \
	done; done
	$(HELM) package charts/vault-csi-provider --version $(CHART_VERSION) --app-version $(CHART_VERSION) --destination $(RELEASE_DIR)
	go run ./cmd/vault-csi-release assemble -version $(VERSION) -dir $(RELEASE_DIR)
	cd $(RELEASE_DIR) && sha256sum -- * > SHA256SUMS
	@echo "release $(VERSION) in $(RELEASE_DIR):"; ls -l $(RELEASE_DIR)

push: ## REGISTRY=<host>/<namespace> VERSION=vX.Y.Z [REGISTRY_USERNAME=...] (password in the environment as REGISTRY_PASSWORD, or docker login's): push make release's image and chart, print the digests (README "Install")
	@[ -n "$(REGISTRY)" ] || { echo "make push needs REGISTRY=<host>/<namespace>, e.g. fra.ocir.io/<tenancy-namespace>/vault" >&2; exit 2; }
	go run ./cmd/vault-csi-release push -version $(VERSION) -dir $(RELEASE_DIR) -registry $(REGISTRY) $(if $(REGISTRY_USERNAME),-username '$(REGISTRY_USERNAME)')

testbin: ## build the real test-bed parts and the cluster's images (test/tools/build.sh); first run ~60 min, cached after
	test/tools/build.sh

test: testbin ## the whole suite against the real parts (what CI runs)
	go test -race $(GO_TEST_FLAGS) -timeout 40m ./...

test-unit: ## quick loop: unit tests only, no real parts
	go test -race -short $(GO_TEST_FLAGS) ./...

fuzz: ## try FUZZTIME inputs on each fuzz target (default 20000x), e.g. make fuzz FUZZTIME=1000000x
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "fuzz $${t#*:} in $${t%%:*}: $(FUZZTIME)"; \
		go test -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime $(FUZZTIME) "$${t%%:*}"; \
	done

lint: ## golangci-lint (pinned in test/tools/lint)
	go tool -modfile=test/tools/lint/go.mod golangci-lint run ./...

demo: testbin ## the local demo on a real single-node cluster: helm installs the driver and this provider, a pod gets its secret (root)
	go run ./test/demo

demo-quick: testbin build ## the quicker demo without a node: the parts as processes, the test playing kubelet
	go run ./test/demo -quick

bench: testbin ## the performance benchmark: a mount storm, rotation passes and the Vault floor (docs/benchmark.md)
	go run ./test/bench $(BENCH_ARGS)

bench-pods: testbin ## pod start to Ready through kubelet, with and without secrets, 1 and 50 replicas, this provider and the peer (BENCHMARKS.md)
	go test -p 1 -run '^$$' -bench PodStart -benchtime 3x -timeout 40m ./test/cluster/ ./test/migration/

test-peer: testbin ## only the HashiCorp provider's own e2e suite (v1.7.4, from ../shared/third_party) against this provider on the cluster bed (make test runs it too)
	go test $(GO_TEST_FLAGS) -v -timeout 40m ./test/peer/

test-migration: testbin ## only the live switch from the HashiCorp provider v1.7.4 (vault-helm) to this one and back, with docs/migration.md's commands, pods starting throughout (make test runs it too)
	go test $(GO_TEST_FLAGS) -v -timeout 30m ./test/migration/

load: testbin ## 1,000 concurrent mounts through the real socket: errors, logins, peak RSS, goroutines (SECURITY.md)
	go test -count=1 -run TestLoad -v ./test/chaos/ -args -load

image: ## container image for this machine's platform (needs a container engine)
	docker build --build-arg VERSION=$(VERSION) -t $(IMAGE) .

image-push: ## IMAGE=<registry>/<repo>:<tag>: build for linux/amd64 and arm64 and push (docker buildx; README "Image")
	docker buildx build --platform $(subst $(eval) ,$(comma),$(PLATFORMS)) --build-arg VERSION=$(VERSION) -t $(IMAGE) --push .

clean: ## remove build output (the test-bed cache outside the clone stays)
	rm -rf dist bin
