package clustertls

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
)

// Fingerprint returns the SHA-256 of the cluster CA's certificate of dir
// (DER), in hex: what a joining host pins before it trusts the cluster.
func Fingerprint(dir string) (string, error) {
	ca, err := readCert(PathsIn(dir).CACert)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(ca.Raw)
	return hex.EncodeToString(sum[:]), nil
}

// ServerConfig returns the TLS configuration of a server of the cluster
// (the controller's API to joining hosts): it presents the host
// certificate of dir followed by the CA's, so that a client that pins the
// CA by its fingerprint (PinnedConfig) can check the chain. Clients need
// no certificate.
func ServerConfig(dir string) (*tls.Config, error) {
	p := PathsIn(dir)
	pair, err := tls.LoadX509KeyPair(p.HostCert, p.HostKey)
	if err != nil {
		return nil, fmt.Errorf("load the host certificate %s: %w", p.HostCert, err)
	}
	ca, err := readCert(p.CACert)
	if err != nil {
		return nil, err
	}
	pair.Certificate = append(pair.Certificate, ca.Raw)
	return &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}, nil
}

// PinnedConfig returns the TLS configuration of a client that trusts only
// a server whose chain holds a CA certificate of the given SHA-256
// fingerprint (hex) that signed the server's certificate: a host that
// joins knows the cluster by the fingerprint in its join token, not by a
// CA it has.
func PinnedConfig(fingerprint string) (*tls.Config, error) {
	want, err := hex.DecodeString(fingerprint)
	if err != nil || len(want) != sha256.Size {
		return nil, errors.New("the CA fingerprint is not 64 hex digits")
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// The chain is checked below against the pinned CA alone.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) < 2 {
				return errors.New("the server sent no CA certificate: it is not a host of a Gantry cluster")
			}
			var ca *x509.Certificate
			for _, c := range cs.PeerCertificates[1:] {
				sum := sha256.Sum256(c.Raw)
				if subtle.ConstantTimeCompare(sum[:], want) == 1 {
					ca = c
				}
			}
			if ca == nil {
				return errors.New("the server's CA does not have the fingerprint of the join token: another cluster, or someone in between")
			}
			roots := x509.NewCertPool()
			roots.AddCert(ca)
			if _, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
				return fmt.Errorf("the server's certificate is not one of the pinned CA's: %w", err)
			}
			return nil
		},
	}, nil
}
