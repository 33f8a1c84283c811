// Package setup stands up and configures Vault on a Kubernetes cluster from
// one declarative file (kind VaultSetup): it loads the file strictly,
// validates all of it before touching anything, plans against what is live,
// applies the difference, and verifies the result by logging in as the
// declared service accounts.
//
// Two stages, each idempotent: deploy (the Vault operator's Helm chart, the
// etcd operator, the Vault and EtcdCluster objects, service accounts — server-side
// applied, package setup/deploy) and configure (policies, secrets engines,
// auth methods, roles, initial secrets in Vault — package setup/vaultconfig).
package setup
