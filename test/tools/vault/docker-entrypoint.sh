#!/bin/sh
# The test bed's stand-in for the entrypoint of the official Vault image, which
# the bank-vaults operator relies on: it starts Vault with the one argument
# `server`. `server ...` runs Vault's server with the config directory the
# operator fills (when there is one); a first argument that is a flag, or that
# no command on PATH is called, goes to vault; anything else runs as given.
# The official script also grants the binary IPC_LOCK and drops to the vault
# user; here Vault runs as the pod's user (root unless the pod says otherwise),
# with the capabilities the pod is given.
set -e
if [ "$1" = server ]; then
	shift
	config=${VAULT_CONFIG_DIR:-/vault/config}
	if [ -d "$config" ]; then set -- -config="$config" "$@"; fi
	set -- vault server "$@"
elif [ "${1#-}" != "$1" ] || ! command -v "$1" >/dev/null 2>&1; then
	set -- vault "$@"
fi
exec "$@"
