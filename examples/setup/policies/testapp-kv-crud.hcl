# The application's own secrets, KV v2 at secret/.
path "secret/data/testapp" {
  capabilities = ["create", "read", "update", "delete", "list"]
}
path "secret/data/testapp/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}
path "secret/metadata/testapp/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}
