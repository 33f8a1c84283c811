#!/usr/bin/env bash
# Builds the real parts of the test bed from the Go module proxy, each from its
# own wrapper module beside this script, into a cache outside the clone keyed by
# part and pinned version, and links them into <repo>/bin. A part already in the
# cache is skipped, so a fresh clone on the same machine is ready in seconds.
#
#   etcd kube csidriver helm vault   the processes the host-process bed runs
#   registry  the CNCF Distribution registry (make push's test)
#   node      kubelet, kube-controller-manager, kube-scheduler, kube-proxy
#   coredns   the cluster DNS (only the plugins the bed uses)
#   sidecars  node-driver-registrar and livenessprobe, from ../shared/third_party
#   operators the vault-operator (module proxy), bank-vaults and the etcd operator (third_party)
#   debs      containerd, runc, the CNI plugins, iptables and busybox-static, from Debian (apt)
#   images    the cluster's images, assembled from the binaries above (bin/images), and
#             the HashiCorp provider's (test/migration), built from ../shared/third_party
#
# usage: test/tools/build.sh [part...]   (default: all, in that order; images last)
# env:   OKEVAULT_TESTBIN_CACHE  cache folder (default: ${XDG_CACHE_HOME:-$HOME/.cache}/okevault-testbin)
#        OKEVAULT_THIRD_PARTY    the third-party source archives (default: ../shared/third_party
#                                beside the clone, else /work/shared/third_party)
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

# build PART VERSION ESTIMATE PKG... : go build PKGs from test/tools/PART (or
# $MODDIR) into the cache.
build() {
	local part=$1 version=$2 estimate=$3; shift 3
	local dest="$cache/$part-$version" names=() moddir=${MODDIR:-$here/$part}
	# `go build -o dir/ .` names the binary after the wrapper module: the part.
	for p in "$@"; do if [ "$p" = . ]; then names+=("$part"); else names+=("$(basename "$p")"); fi; done
	if cached "$part" "$version" "${names[@]}"; then
		log "$part $version: cached in $dest"
	else
		log "$part $version: building (about $estimate on 2 cores with an empty Go build cache)..."
		local start=$SECONDS tmp="$dest.tmp.$$"
		rm -rf "$tmp" && mkdir -p "$tmp"
		(cd "$moddir" && go build -trimpath -ldflags "${LDFLAGS:-}" -o "$tmp/" "$@")
		rm -rf "$dest" && mv "$tmp" "$dest"
		touch "$dest/.complete"
		log "$part $version: built in $((SECONDS - start))s"
	fi
	[ -n "${NOLINK:-}" ] || link "$part" "$version" "${names[@]}"
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
kube_ldflags() {
	local minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
	echo "-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
}
part_kube() {
	LDFLAGS=$(kube_ldflags) build kube "$KUBE_VERSION" "6.5 min" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl
}
# The node's parts build from the same wrapper module (and build cache) as the apiserver.
part_node() {
	LDFLAGS=$(kube_ldflags) MODDIR="$here/kube" build node "$KUBE_VERSION" "6 min after kube" \
		k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-controller-manager \
		k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kube-proxy
}
part_coredns() { LDFLAGS="-s -w" build coredns "$COREDNS_VERSION" "2 min" .; }
part_csidriver() {
	build csidriver "$CSI_DRIVER_VERSION" "75 s" sigs.k8s.io/secrets-store-csi-driver/cmd/secrets-store-csi-driver
	# The driver's CRDs and CSIDriver object, for the host-process bed to apply.
	local deploy="$cache/csidriver-$CSI_DRIVER_VERSION/deploy" dir
	if [ ! -d "$deploy" ]; then
		dir=$(cd "$here/csidriver" && go list -m -f '{{.Dir}}' sigs.k8s.io/secrets-store-csi-driver)
		cp -r "$dir/manifest_staging/deploy" "$deploy" && chmod -R u+w "$deploy"
	fi
	ln -sfn "$deploy" "$bin/csidriver-deploy"
	# The cluster bed's driver (its image) and its Helm chart, which the bed
	# installs the way users do; not linked into bin/ but the chart.
	NOLINK=1 MODDIR="$here/csidriver-cluster" build csidriver "$CLUSTER_CSI_DRIVER_VERSION" "75 s" \
		sigs.k8s.io/secrets-store-csi-driver/cmd/secrets-store-csi-driver
	local chart="$cache/csidriver-$CLUSTER_CSI_DRIVER_VERSION/chart"
	if [ ! -d "$chart" ]; then
		dir=$(cd "$here/csidriver-cluster" && go list -m -f '{{.Dir}}' sigs.k8s.io/secrets-store-csi-driver)
		cp -r "$dir/charts/secrets-store-csi-driver" "$chart.tmp" && chmod -R u+w "$chart.tmp" && mv "$chart.tmp" "$chart"
	fi
	ln -sfn "$chart" "$bin/csidriver-chart"
}
part_helm() { LDFLAGS="-s -w" build helm "$HELM_VERSION" "70 s" helm.sh/helm/v3/cmd/helm; }
# The CNCF Distribution registry that make push is tested against (test/release).
part_registry() { LDFLAGS="-s -w" build registry "$REGISTRY_VERSION" "40 s" .; }
part_vault() {
	if ! cached vault "$VAULT_VERSION" vault; then vault_sdk; fi
	LDFLAGS="-s -w" build vault "$VAULT_VERSION" "12 min, linking needs ~6 GB of memory" .
}

third_party() {
	local d
	for d in "${OKEVAULT_THIRD_PARTY:-}" "$root/../shared/third_party" /work/shared/third_party; do
		[ -n "$d" ] && [ -d "$d" ] && { echo "$d"; return; }
	done
	echo "third-party sources not found: set OKEVAULT_THIRD_PARTY" >&2
	return 1
}

# sidecar NAME VERSION CMD : build a kubernetes-csi sidecar from its source
# archive (with its vendor/ folder) in the third-party folder.
sidecar() {
	local name=$1 version=$2 cmd=$3 dest="$cache/$1-$2"
	if cached "$name" "$version" "$cmd"; then
		log "$name $version: cached in $dest"
	else
		log "$name $version: building from its source archive (about 1 min)..."
		local src tmp="$dest.tmp.$$" start=$SECONDS
		src=$(third_party)/$name-$version.tar.gz
		rm -rf "$tmp" && mkdir -p "$tmp/src"
		tar -xzf "$src" -C "$tmp/src" --strip-components=1
		(cd "$tmp/src" && go build -mod=vendor -trimpath -ldflags "-s -w -X main.version=$version" -o "$tmp/" "./cmd/$cmd")
		rm -rf "$tmp/src" "$dest" && mv "$tmp" "$dest"
		touch "$dest/.complete"
		log "$name $version: built in $((SECONDS - start))s"
	fi
	link "$name" "$version" "$cmd"
}
# from_source NAME VERSION SRC CGO PKG=BIN... : build each ./PKG of a source
# tree (a third-party archive, or a module from the proxy) into the cache as
# BIN, with the tree's own go.mod and go.sum, as its release does ($LDFLAGS
# added to -s -w).
from_source() {
	local name=$1 version=$2 src=$3 cgo=$4; shift 4
	local dest="$cache/$name-$version" names=() p
	for p in "$@"; do names+=("${p#*=}"); done
	if cached "$name" "$version" "${names[@]}"; then
		log "$name $version: cached in $dest"
		return
	fi
	log "$name $version: building from its source (about 8 min on 2 cores with an empty Go build cache)..."
	local tmp="$dest.tmp.$$" start=$SECONDS
	rm -rf "$tmp" && mkdir -p "$tmp/src"
	if [ -d "$src" ]; then cp -r "$src/." "$tmp/src/" && chmod -R u+w "$tmp/src"; else tar -xzf "$src" -C "$tmp/src" --strip-components=1; fi
	for p in "$@"; do
		(cd "$tmp/src" && CGO_ENABLED=$cgo go build -trimpath -ldflags "-s -w ${LDFLAGS:-}" -o "$tmp/${p#*=}" "./${p%%=*}")
	done
	rm -rf "$tmp/src" "$dest" && mv "$tmp" "$dest"
	touch "$dest/.complete"
	log "$name $version: built in $((SECONDS - start))s"
}
# The operators setup deploys: the bank-vaults vault-operator from its module
# (the version setup pins), its bank-vaults sidecar (unseal, configure and the
# config template; cgo for its PKCS#11 package) and the etcd operator, both
# from their source archives.
part_operators() {
	local dir
	dir=$(cd "$here" && go mod download -json "github.com/bank-vaults/vault-operator@$VAULT_OPERATOR_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
	from_source vault-operator "$VAULT_OPERATOR_VERSION" "$dir" 0 cmd=vault-operator
	from_source bank-vaults "$BANK_VAULTS_VERSION" "$(third_party)/bank-vaults-$BANK_VAULTS_VERSION.tar.gz" 1 \
		cmd/bank-vaults=bank-vaults cmd/template=template
	from_source etcd-operator "$ETCD_OPERATOR_VERSION" "$(third_party)/etcd-operator-$ETCD_OPERATOR_VERSION.tar.gz" 0 cmd=manager
}
part_sidecars() {
	sidecar node-driver-registrar "$NODE_DRIVER_REGISTRAR_VERSION" csi-node-driver-registrar
	sidecar livenessprobe "$LIVENESSPROBE_VERSION" livenessprobe
}

# The node's runtime comes from Debian: containerd, runc, the CNI plugins and
# iptables (kube-proxy's). Installed only when one is missing.
part_debs() {
	local missing=()
	command -v containerd >/dev/null || missing+=(containerd)
	command -v runc >/dev/null || missing+=(runc)
	[ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
	command -v iptables >/dev/null || missing+=(iptables)
	[ -x /bin/busybox ] || missing+=(busybox-static) # the test pods' shell and tools
	[ -x /usr/lib/postgresql/15/bin/postgres ] || missing+=(postgresql-15) # test/peer's database image
	if [ ${#missing[@]} -eq 0 ]; then
		log "debs: containerd, runc, CNI plugins, iptables installed"
		return
	fi
	log "debs: installing ${missing[*]} from Debian (about 30 s)..."
	local sudo=; [ "$(id -u)" -eq 0 ] || sudo=sudo
	$sudo apt-get update -q >/dev/null
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
	# Debian starts a system containerd where systemd runs; the bed runs its own.
	log "debs: installed ${missing[*]}"
}

# image NAME TAG ARGS... : assemble bin/images/NAME.tar with the images tool.
image() {
	local name=$1 tag=$2; shift 2
	local out="$images/$name.tar"
	[ -f "$out" ] && return
	"$cache/imagetool-$IMAGES_TOOL_VERSION/imagetool" -o "$out" -tag "$tag" "$@"
	log "image $tag: $(du -h "$out" | cut -f1)"
}
# The cluster's images, each under the name its chart or manifest asks for,
# rebuilt when a pinned version changes (the folder is keyed by all of them).
part_images() {
	build imagetool "$IMAGES_TOOL_VERSION" "30 s" .
	build pause "$IMAGES_TOOL_VERSION" "5 s" .
	local key
	key=$(cat "$here/versions.env" "$here/build.sh" "$here/imagetool/main.go" "$here/pause/main.go" "$here/vault/docker-entrypoint.sh" "$here/pg-entrypoint/main.go" "$here/printenv/main.go" | sha256sum | cut -c1-12)
	images="$cache/images-$key"
	mkdir -p "$images"
	# Images of older recipes or versions are never used again.
	find "$cache" -maxdepth 1 -name 'images-*' ! -name "images-$key" -exec rm -rf {} +
	local c=$cache ca=/etc/ssl/certs/ca-certificates.crt
	image pause registry.k8s.io/pause:3.10 -entrypoint /pause -file "$c/pause-$IMAGES_TOOL_VERSION/pause=/pause"
	image driver "registry.k8s.io/csi-secrets-store/driver:$CLUSTER_CSI_DRIVER_VERSION" -entrypoint /secrets-store-csi \
		-file "$c/csidriver-$CLUSTER_CSI_DRIVER_VERSION/secrets-store-csi-driver=/secrets-store-csi" \
		-file /usr/bin/mount=/usr/bin/mount -file /usr/bin/umount=/usr/bin/umount -libs -file "$ca=$ca"
	image driver-crds "registry.k8s.io/csi-secrets-store/driver-crds:$CLUSTER_CSI_DRIVER_VERSION" -entrypoint /kubectl \
		-file "$c/kube-$KUBE_VERSION/kubectl=/kubectl" -file "$c/csidriver-$CLUSTER_CSI_DRIVER_VERSION/chart/crds=/crds"
	image registrar "registry.k8s.io/sig-storage/csi-node-driver-registrar:$NODE_DRIVER_REGISTRAR_VERSION" \
		-entrypoint /csi-node-driver-registrar \
		-file "$c/node-driver-registrar-$NODE_DRIVER_REGISTRAR_VERSION/csi-node-driver-registrar=/csi-node-driver-registrar"
	image livenessprobe "registry.k8s.io/sig-storage/livenessprobe:$LIVENESSPROBE_VERSION" -entrypoint /livenessprobe \
		-file "$c/livenessprobe-$LIVENESSPROBE_VERSION/livenessprobe=/livenessprobe"
	image coredns "registry.k8s.io/coredns/coredns:$COREDNS_VERSION" -entrypoint /coredns -user 65532:65532 -nonroot \
		-file "$c/coredns-$COREDNS_VERSION/coredns=/coredns"
	# The test workload: busybox's sh, cat, ls, env and sleep, and the stat
	# the peer's suite (test/peer) calls (each a copy; busybox picks the
	# applet by its name); Debian's busybox-static has no printenv applet, so
	# the suite's printenv is a static one of the bed's (test/tools/printenv).
	NOLINK=1 build printenv "$IMAGES_TOOL_VERSION" "5 s" .
	local applets=() a
	for a in sh cat ls env sleep stat; do applets+=(-file "/bin/busybox=/bin/$a"); done
	image testapp docker.io/library/busybox:1.35 -entrypoint /bin/sleep -cmd infinity "${applets[@]}" \
		-file "$c/printenv-$IMAGES_TOOL_VERSION/printenv=/bin/printenv"
	# Vault runs as root, as the official image's entrypoint starts (it drops to
	# the vault user after granting the binary IPC_LOCK, which a tarball cannot
	# carry): the operator adds IPC_LOCK for mlock. Manifests that want a user
	# set runAsUser (the bed's dev Vault does).
	image vault "docker.io/hashicorp/vault:${VAULT_VERSION#v}" -entrypoint /usr/local/bin/docker-entrypoint.sh \
		-cmd server -cmd -dev -nonroot -env PATH=/usr/local/bin:/bin -env HOME=/home/nonroot \
		-file "$c/vault-$VAULT_VERSION/vault=/bin/vault" -file /bin/busybox=/bin/sh \
		-file "$here/vault/docker-entrypoint.sh=/usr/local/bin/docker-entrypoint.sh" -file "$ca=$ca"
	# The peer suite's database (test/peer), under a tag of the bed's own:
	# Debian's PostgreSQL 15 server binaries with the real psql and pg_isready
	# (/usr/bin's are Perl wrappers), where their share folder is found; every
	# server library but the LLVM JIT; UTC; a shell for initdb's popen; and an
	# entrypoint honouring POSTGRES_DB, POSTGRES_USER and POSTGRES_PASSWORD.
	NOLINK=1 build pg-entrypoint "$IMAGES_TOOL_VERSION" "5 s" .
	local pg=/usr/lib/postgresql/15 pglibs=() so z
	for so in "$pg"/lib/*.so; do [ "${so##*/}" = llvmjit.so ] || pglibs+=(-file "$so=$so"); done
	for z in UTC Etc/UTC GMT; do pglibs+=(-file "/usr/share/zoneinfo/$z=/usr/share/zoneinfo/$z"); done
	image postgres okevault.test/postgres:15 -entrypoint /usr/local/bin/pg-entrypoint -nonroot \
		-env "PATH=$pg/bin:/usr/local/bin:/bin" -file "$c/pg-entrypoint-$IMAGES_TOOL_VERSION/pg-entrypoint=/usr/local/bin/pg-entrypoint" \
		-file "$pg/bin=$pg/bin" "${pglibs[@]}" -file "/usr/share/postgresql/15=/usr/share/postgresql/15" \
		-file /bin/busybox=/bin/sh -libs
	# The provider this one replaces, for test/migration: hashicorp/vault-csi-provider
	# from its source archive (its go.mod and go.sum; modules from the proxy),
	# static as its Makefile builds it, laid out as its dev image (the binary
	# at /bin, root), under a tag of the bed's own that vault-helm's
	# csi.image points at.
	local peer=vault-csi-provider-$PEER_PROVIDER_VERSION vpkg=github.com/hashicorp/vault-csi-provider/internal/version
	local pv=${PEER_PROVIDER_VERSION#v}
	LDFLAGS="-X $vpkg.GitVersion=$PEER_PROVIDER_VERSION -X $vpkg.Major=${pv%%.*} -X $vpkg.Minor=$(echo "$pv" | cut -d. -f2) -X $vpkg.Patch=${pv##*.}" \
		from_source peer-vault-csi-provider "$PEER_PROVIDER_VERSION" "$(third_party)/$peer.tar.gz" 0 .=vault-csi-provider
	image peer-vault-csi-provider "okevault.test/peer-vault-csi-provider:$pv" -entrypoint /bin/vault-csi-provider \
		-file "$c/peer-vault-csi-provider-$PEER_PROVIDER_VERSION/vault-csi-provider=/bin/vault-csi-provider" -file "$ca=$ca"
	# The operators and what they run, under the names setup pins (examples/setup).
	image etcd "gcr.io/etcd-development/etcd:$ETCD_VERSION" -entrypoint /usr/local/bin/etcd \
		-file "$c/etcd-$ETCD_VERSION/etcd=/usr/local/bin/etcd"
	image etcd-operator "gcr.io/etcd-development/etcd-operator:$ETCD_OPERATOR_VERSION" -entrypoint /manager \
		-user 65532:65532 -nonroot -file "$c/etcd-operator-$ETCD_OPERATOR_VERSION/manager=/manager"
	image vault-operator "ghcr.io/bank-vaults/vault-operator:$VAULT_OPERATOR_VERSION" -entrypoint /usr/local/bin/vault-operator \
		-user 65532:65532 -nonroot -env PATH=/usr/local/bin:/bin \
		-file "$c/vault-operator-$VAULT_OPERATOR_VERSION/vault-operator=/usr/local/bin/vault-operator" -file "$ca=$ca"
	# bank-vaults is built with cgo: -libs adds glibc and the loader.
	image bank-vaults "ghcr.io/bank-vaults/bank-vaults:$BANK_VAULTS_VERSION" -entrypoint /usr/local/bin/bank-vaults \
		-user 65534:65534 -env PATH=/usr/local/bin:/bin \
		-file "$c/bank-vaults-$BANK_VAULTS_VERSION/bank-vaults=/usr/local/bin/bank-vaults" \
		-file "$c/bank-vaults-$BANK_VAULTS_VERSION/template=/usr/local/bin/template" -libs -file "$ca=$ca"
	ln -sfn "$images" "$bin/images"
}

all=(etcd kube csidriver helm registry vault node coredns sidecars operators debs images)
parts=("$@")
[ ${#parts[@]} -gt 0 ] || parts=("${all[@]}")
for p in "${parts[@]}"; do
	[[ " ${all[*]} " == *" $p "* ]] || { echo "unknown part $p (parts: ${all[*]})" >&2; exit 2; }
done
log "cache $cache; a fresh machine needs about 60 minutes and ~16 GB of Go caches for all parts"
if [ $# -eq 0 ]; then
	# Vault's build is the longest and its link single-threaded: run it beside
	# the rest (memory allows: its link peaks near 6 GB), images after both.
	part_vault > >(sed -u 's/^/[vault] /') 2>&1 &
	vault_pid=$!
	for p in etcd kube csidriver helm registry node coredns sidecars operators debs; do "part_$p"; done
	wait "$vault_pid" || { log "vault: build failed"; exit 1; }
	part_images
else
	for p in "${parts[@]}"; do "part_$p"; done
fi
log "ready: $(cd "$bin" && ls | tr '\n' ' ')"
