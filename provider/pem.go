package provider

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"

	"github.com/okevault/vault-csi-provider/internal/config"
	"github.com/okevault/vault-csi-provider/internal/vault"
)

// The files of objectFormat pem-split, under objectName/.
const (
	pemCert  = "tls.crt"      // the certificate and the intermediates up to (not including) a root
	pemKey   = "tls.key"      // the private key, when the response has one (issue, not sign)
	pemCA    = "ca.crt"       // the issuing CA
	pemChain = "ca-chain.crt" // Vault's ca_chain, when it sends one
)

// pemFiles shapes a PKI issue or sign response: certificate, private_key,
// issuing_ca and ca_chain in its data.
func pemFiles(i int, o config.Object, r *vault.Response) ([]file, error) {
	cert, _ := r.Data["certificate"].(string)
	if !strings.Contains(cert, "-----BEGIN CERTIFICATE-----") {
		return nil, fmt.Errorf("%w: objectFormat %s takes the response of a PKI issue or sign call, and this one has no certificate", errUnfit, o.Format)
	}
	key, _ := r.Data["private_key"].(string)
	ca, _ := r.Data["issuing_ca"].(string)
	var chain []string
	if list, ok := r.Data["ca_chain"].([]any); ok {
		for _, c := range list {
			if s, ok := c.(string); ok && s != "" {
				chain = append(chain, s)
			}
		}
	}
	leaf := served(cert, chain)
	f := func(path, contents string) file {
		return file{path: path, mode: o.Mode, contents: []byte(contents), index: i, object: o}
	}

	if o.Format == config.FormatPEMBundle {
		if key == "" {
			return nil, fmt.Errorf("%w: objectFormat pem-bundle needs a private key, and the response has none (a sign call returns none: use pem-split)", errUnfit)
		}
		// Key first, then the certificates: the driver's kubernetes.io/tls
		// sync takes tls.key and tls.crt from one such file.
		b := f(o.Name, pemText(key)+leaf)
		b.mode = o.KeyMode
		return []file{b}, nil
	}
	out := []file{f(o.Name+"/"+pemCert, leaf)}
	if key != "" {
		k := f(o.Name+"/"+pemKey, pemText(key))
		k.mode = o.KeyMode
		out = append(out, k)
	}
	if ca != "" {
		out = append(out, f(o.Name+"/"+pemCA, pemText(ca)))
	}
	if len(chain) > 0 {
		var b strings.Builder
		for _, c := range chain {
			b.WriteString(pemText(c))
		}
		out = append(out, f(o.Name+"/"+pemChain, b.String()))
	}
	return out, nil
}

// served is what a server presents: the certificate, then the chain's
// certificates that are not self-signed roots (clients hold those).
func served(cert string, chain []string) string {
	var b strings.Builder
	b.WriteString(pemText(cert))
	for _, c := range chain {
		if !selfSigned(c) && strings.TrimSpace(c) != strings.TrimSpace(cert) {
			b.WriteString(pemText(c))
		}
	}
	return b.String()
}

// selfSigned reports whether the PEM certificate's subject is its issuer.
// What does not parse is kept in the chain: it is not the provider's to drop.
func selfSigned(text string) bool {
	block, _ := pem.Decode([]byte(text))
	if block == nil {
		return false
	}
	c, err := x509.ParseCertificate(block.Bytes)
	return err == nil && bytes.Equal(c.RawSubject, c.RawIssuer)
}

// pemText ends a PEM text with exactly one newline, so that concatenations
// stay valid PEM.
func pemText(s string) string {
	return strings.TrimRight(s, "\n") + "\n"
}
