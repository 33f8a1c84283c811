module github.com/okevault/vault-csi-provider/test/tools/vault

go 1.26

require github.com/hashicorp/vault v1.21.4

// Vault v1.21.4 was built against its in-tree ./sdk, which no published sdk
// version matches. build.sh derives ./sdk from sdk v0.21.0 in the module cache
// with two small fixes (see there); the copy is git-ignored.
replace github.com/hashicorp/vault/sdk => ./sdk
