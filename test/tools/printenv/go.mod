module github.com/okevault/vault-csi-provider/test/tools/printenv

go 1.26.0
