// Package leases remembers Vault responses that carry a lease (database
// credentials, PKI certificates issued with generate_lease, cloud
// credentials) so that the driver's rotation polls, which call Mount again,
// get the same credentials instead of minting new ones on every poll.
//
// A response is remembered per Key: who may share it (the pod by default, or
// the service-account identity, which also names the Vault, auth mount and
// role) and the request. The SecretProviderClass is not part of it: the
// driver's rotation requests do not carry its name (v1.5.4 sends the class's
// parameters and the pod's fields only), so a key with it would re-issue on
// the first poll; what a class can change is in the identity or the request.
// Responses without a lease_id (KV reads, PKI without generate_lease) are not
// kept: their lifetime is not Vault's to tell.
//
// # Leases die with their token
//
// Vault revokes a token's leases when the token expires or is revoked. The
// provider's login cache replaces a login shortly before its token expires,
// so a lease outlives the login that made it only if something keeps that
// token alive. The store does both of the sound things:
//
//   - it keeps the issuing token with each lease, and while a remembered
//     lease would outlive its token it renews the token (auth/token/renew-self,
//     which the default policy allows), up to the token's max TTL;
//   - it treats a lease as ending when its token ends, so once the token can
//     no longer be renewed the lease is re-issued, with the then-current
//     login, before the token takes it down.
//
// # Renewal and re-issue
//
// A background pass (Run) renews a renewable lease after two thirds of its
// TTL (sys/leases/renew, with the issuing token), asking for its original
// TTL again. When Vault grants less than that, the lease has reached its max
// TTL: renewal stops and the lease is served until shortly before its end
// (a fifth of its TTL, at most five minutes), then re-issued on the next
// mount. A refusal (4xx: the lease or the token is gone) forgets the lease at
// once; a transient failure (no answer, 5xx) is retried.
//
// Each remembered response is checked with sys/leases/lookup before it is
// served, so a lease revoked behind the provider's back, or by the revocation
// of its token, is re-issued on the next mount rather than served on. That
// costs one lookup per object per poll, which creates nothing in Vault.
//
// A pass never waits for a renewal: each runs in a goroutine of its own
// with a timeout, at most a few at a time per Vault (address and namespace)
// and a few dozen in all, so a Vault that never answers delays only its own
// leases.
//
// Forgetting never revokes: a pod may still use the credentials until their
// lease ends. Only RevokePod does, for a pod that is gone
// (-revoke-on-pod-delete, fed by internal/podwatch): its leases are
// forgotten, so never renewed again, and revoked where the role's policy
// allows sys/leases/revoke (a role whose policy does not is warned of once).
// Recently deleted pods are remembered, so a lease stored by a mount that
// was still in flight when its pod went is revoked at once. After a provider
// restart memory is empty and each pod's dynamic objects are issued once
// more.
package leases
