// Package deploy renders and server-side applies the Kubernetes side of a
// Vault setup: the bank-vaults vault-operator (its Helm chart, rendered with
// helm.sh/helm/v3 as a library, CRDs included), the official etcd operator
// (an embedded, pinned install manifest), the Vault and EtcdCluster custom
// resources, and the service accounts and RBAC the scenario needs.
//
// Objects are applied with server-side apply under one field manager, so a
// second run changes nothing and fields that others own are left alone.
// The Helm chart is rendered, not installed: there is no Helm release
// record, the objects are ours like the rest.
package deploy
