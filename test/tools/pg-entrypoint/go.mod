module github.com/okevault/vault-csi-provider/test/tools/pg-entrypoint

go 1.26.0
