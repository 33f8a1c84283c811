module github.com/okevault/vault-csi-provider/test/tools/pause

go 1.26.0
