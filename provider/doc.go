// Package provider is the Vault provider's face to the Secrets Store CSI
// Driver: the v1alpha1 gRPC server (Version and Mount) and the mount
// pipeline behind it — parse the attributes, take the pod's token, log in to
// Vault (cached per identity), read each distinct request once (then the
// secrets expand: tree listings name), shape the files (content.go: keys,
// templates, expansions, PEM), and answer with every file or with none. Errors become gRPC codes here and only here.
package provider
