// Package config turns a driver MountRequest (its attributes JSON, target path
// and default file permission) plus the provider-wide defaults into a
// validated Mount.
//
// The parameters are those of hashicorp/vault-csi-provider so that existing
// SecretProviderClasses keep working, plus per-object template, write,
// expand and maxObjects and the PEM object formats. Templates are parsed
// here (internal/render), so that the secrets they read are requests known
// before any is made. Everything a later stage relies on is
// checked here, once: object names are local paths (CVE-2020-8567), request
// paths cannot climb out of /v1/, and file modes are real modes. Failures are
// *Error values, which the server reports as InvalidArgument; their text ends
// up in pod events, so it names the parameter and never carries tokens,
// secretArgs or the raw attributes.
package config
