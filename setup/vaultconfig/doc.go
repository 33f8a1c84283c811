// Package vaultconfig brings a Vault server's configuration — policies,
// secrets engines, auth methods and their roles, initial secrets — to a
// declared state. Plan only reads; Apply writes exactly what Plan found
// different, so a caller can validate everything, show the plan, and only
// then touch Vault. Verify logs in as the declared identities and checks
// what they can and cannot do.
package vaultconfig
