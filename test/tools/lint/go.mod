module github.com/okevault/vault-csi-provider/test/tools/lint

go 1.26

tool github.com/golangci/golangci-lint/v2/cmd/golangci-lint

require github.com/golangci/golangci-lint/v2 v2.15.0
