#!/usr/bin/env bash
# Builds the real parts of the test bed (Vault, etcd, kube-apiserver, kubectl,
# the Secrets Store CSI Driver, helm) from the Go module proxy, each from its own
# wrapper module beside this script, into a cache outside the clone keyed by part
# and pinned version, and links them into <repo>/bin. A part already in the cache
# is skipped, so a fresh clone on the same machine is ready in seconds.
#
# usage: test/tools/build.sh [part...]   (parts: etcd kube csidriver helm vault; default all)
# env:   OKEVAULT_TESTBIN_CACHE  cache folder (default: ${XDG_CACHE_HOME:-$HOME/.cache}/okevault-testbin)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

cache=${OKEVAULT_TESTBIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/okevault-testbin}
bin="$root/bin"
mkdir -p "$cache" "$bin"

# The checksum database has no entry for these modules; go.sum pins them instead.
export GONOSUMDB=sigs.k8s.io/secrets-store-csi-driver,monis.app/mlog
export CGO_ENABLED=0
export GOFLAGS=-buildvcs=false

log() { printf '%s testbin: %s\n' "$(date +%H:%M:%S)" "$*"; }

# cached PART VERSION BINARY... : true when every binary is in the cache.
cached() {
	local dest="$cache/$1-$2"; shift 2
	[ -f "$dest/.complete" ] || return 1
	for b in "$@"; do [ -x "$dest/$b" ] || return 1; done
}

# link PART VERSION NAME... : link cached files into bin/.
link() {
	local dest="$cache/$1-$2"; shift 2
	for b in "$@"; do ln -sfn "$dest/$b" "$bin/$b"; done
}

# build PART VERSION ESTIMATE PKG... : go build PKGs from test/tools/PART into the cache.
build() {
	local part=$1 version=$2 estimate=$3; shift 3
	local dest="$cache/$part-$version" names=()
	# `go build -o dir/ .` names the binary after the wrapper module: the part.
	for p in "$@"; do if [ "$p" = . ]; then names+=("$part"); else names+=("$(basename "$p")"); fi; done
	if cached "$part" "$version" "${names[@]}"; then
		log "$part $version: cached in $dest"
	else
		log "$part $version: building (about $estimate on 2 cores with an empty Go build cache)..."
		local start=$SECONDS tmp="$dest.tmp.$$"
		rm -rf "$tmp" && mkdir -p "$tmp"
		(cd "$here/$part" && go build -trimpath -ldflags "${LDFLAGS:-}" -o "$tmp/" "$@")
		rm -rf "$dest" && mv "$tmp" "$dest"
		touch "$dest/.complete"
		log "$part $version: built in $((SECONDS - start))s"
	fi
	link "$part" "$version" "${names[@]}"
}

# vault_sdk: Vault v1.21.4's go.mod replaces its sdk with the in-tree ./sdk, which
# no published sdk version matches. Derive that copy from sdk v0.21.0 in the
# module cache with the two changes Vault needs: framework.Backend.ActivationFunc
# without its third parameter, and keysutil's LockManager.RestorePolicy returning
# (string, error) as in sdk v0.25.1. Nothing third-party is committed.
vault_sdk() {
	local sdk="$here/vault/sdk" src fix
	[ -f "$sdk/.derived-$VAULT_SDK_VERSION" ] && return 0
	src=$(cd "$here/vault" && GOFLAGS=-mod=mod go mod download -json "github.com/hashicorp/vault/sdk@$VAULT_SDK_VERSION" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
	fix=$(cd "$here/vault" && GOFLAGS=-mod=mod go mod download -json "github.com/hashicorp/vault/sdk@$VAULT_SDK_FIX_VERSION" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
	rm -rf "$sdk" && cp -r "$src" "$sdk" && chmod -R u+w "$sdk"
	sed -i 's/ActivationFunc func(context.Context, \*logical.Request, string) error/ActivationFunc func(context.Context, *logical.Request) error/' "$sdk/framework/backend.go"
	grep -q 'ActivationFunc func(context.Context, \*logical.Request) error' "$sdk/framework/backend.go"
	cp "$fix/helper/keysutil/lock_manager.go" "$sdk/helper/keysutil/lock_manager.go"
	touch "$sdk/.derived-$VAULT_SDK_VERSION"
}

part_etcd() { build etcd "$ETCD_VERSION" "30 s" .; }
part_kube() {
	local minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
	LDFLAGS="-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor" \
		build kube "$KUBE_VERSION" "6.5 min" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl
}
part_csidriver() {
	build csidriver "$CSI_DRIVER_VERSION" "75 s" sigs.k8s.io/secrets-store-csi-driver/cmd/secrets-store-csi-driver
	# The driver's CRDs and CSIDriver object, for the test bed to apply.
	local deploy="$cache/csidriver-$CSI_DRIVER_VERSION/deploy" dir
	if [ ! -d "$deploy" ]; then
		dir=$(cd "$here/csidriver" && go list -m -f '{{.Dir}}' sigs.k8s.io/secrets-store-csi-driver)
		cp -r "$dir/manifest_staging/deploy" "$deploy" && chmod -R u+w "$deploy"
	fi
	ln -sfn "$deploy" "$bin/csidriver-deploy"
}
part_helm() { LDFLAGS="-s -w" build helm "$HELM_VERSION" "70 s" helm.sh/helm/v3/cmd/helm; }
part_vault() {
	if ! cached vault "$VAULT_VERSION" vault; then vault_sdk; fi
	LDFLAGS="-s -w" build vault "$VAULT_VERSION" "12 min, linking needs ~6 GB of memory" .
}

parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=(etcd kube csidriver helm vault)
for p in "${parts[@]}"; do
	case $p in etcd|kube|csidriver|helm|vault) ;; *) echo "unknown part $p" >&2; exit 2 ;; esac
done
log "cache $cache; a fresh machine needs about 25 minutes and ~14 GB of Go caches for all parts"
for p in "${parts[@]}"; do "part_$p"; done
log "ready: $(cd "$bin" && ls | tr '\n' ' ')"
