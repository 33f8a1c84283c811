# The project's commands. `make help` lists them.
SHELL := /bin/bash
include test/tools/versions.env

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
IMAGE ?= vault-csi-provider:$(VERSION)
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
	./internal/render:FuzzExecuteBounded
# The checksum database has no entry for the CSI driver's module; go.sum pins it.
export GONOSUMDB := sigs.k8s.io/secrets-store-csi-driver,monis.app/mlog,github.com/bank-vaults

.PHONY: help build test test-unit fuzz testbin lint demo bench load image clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

build: ## build the static provider binary into dist/
	CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o dist/vault-csi-provider ./cmd/vault-csi-provider

testbin: ## build the real test-bed parts (Vault, etcd, kube-apiserver, kubectl, CSI driver, helm); first run ~25 min, cached after
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

demo: testbin build ## the local demo: real Vault, apiserver, CSI driver and the provider mount a secret
	go run ./test/demo

bench: testbin ## the performance benchmark: a mount storm, rotation passes and the Vault floor (docs/benchmark.md)
	go run ./test/bench $(BENCH_ARGS)

load: testbin ## 1,000 concurrent mounts through the real socket: errors, logins, peak RSS, goroutines (SECURITY.md)
	go test -count=1 -run TestLoad -v ./test/chaos/ -args -load

image: ## container image (needs a container engine)
	docker build --build-arg VERSION=$(VERSION) -t $(IMAGE) .

clean: ## remove build output (the test-bed cache outside the clone stays)
	rm -rf dist bin
