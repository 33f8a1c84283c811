// Package hostile runs the provider binary, as the DaemonSet runs it, under
// SecretProviderClasses written to take a node's provider down, while other
// pods mount, and measures what it costs the process.
package hostile
