package testbed

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"time"
)

// pki is the key material of one test cluster.
type pki struct {
	caPEM, caKeyPEM           []byte // the cluster CA
	servingPEM, servingKeyPEM []byte // kube-apiserver's serving certificate (127.0.0.1, localhost, extra IPs)
	saKeyPEM, saPubPEM        []byte // service-account token signing key

	ca    *x509.Certificate
	caKey *ecdsa.PrivateKey
}

// newPKI makes a CA, the apiserver's serving certificate for 127.0.0.1 and
// servingIPs, and a service-account signing key.
func newPKI(servingIPs ...net.IP) (*pki, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "testbed-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate: %w", err)
	}

	p := &pki{caPEM: pemBlock("CERTIFICATE", caDER), ca: ca, caKey: caKey}
	p.servingPEM, p.servingKeyPEM, err = p.issue(certRequest{
		commonName: "kube-apiserver",
		server:     true,
		ips:        append([]net.IP{net.IPv4(127, 0, 0, 1)}, servingIPs...),
		dnsNames:   []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
	})
	if err != nil {
		return nil, err
	}

	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("generate service-account key: %w", err)
	}
	saPub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("marshal service-account public key: %w", err)
	}

	caKeyDER, err := x509.MarshalECPrivateKey(caKey)
	if err != nil {
		return nil, fmt.Errorf("marshal CA key: %w", err)
	}
	p.caKeyPEM = pemBlock("EC PRIVATE KEY", caKeyDER)
	p.saKeyPEM = pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(saKey))
	p.saPubPEM = pemBlock("PUBLIC KEY", saPub)
	return p, nil
}

// certRequest describes a certificate the CA issues.
type certRequest struct {
	commonName    string
	organizations []string // Kubernetes groups of a client certificate
	server        bool     // server auth (else client auth)
	ips           []net.IP
	dnsNames      []string
}

// issue returns a certificate and its key, PEM-encoded, signed by the CA.
func (p *pki) issue(r certRequest) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key for %s: %w", r.commonName, err)
	}
	now := time.Now()
	usage := x509.ExtKeyUsageClientAuth
	if r.server {
		usage = x509.ExtKeyUsageServerAuth
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: r.commonName, Organization: r.organizations},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(7 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		IPAddresses:  r.ips,
		DNSNames:     r.dnsNames,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("create certificate for %s: %w", r.commonName, err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("marshal key of %s: %w", r.commonName, err)
	}
	return pemBlock("CERTIFICATE", der), pemBlock("EC PRIVATE KEY", keyDER), nil
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return n
}
