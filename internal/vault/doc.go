// Package vault talks to Vault for the provider: one base client per Vault
// address and TLS setting (sharing its connection pool across identities),
// Kubernetes/JWT logins, and reads of any secrets engine with KV v1/v2
// unwrapping. Errors are *Error values carrying Vault's HTTP status, so the
// server edge can map them to gRPC codes; they never include tokens or values.
package vault
