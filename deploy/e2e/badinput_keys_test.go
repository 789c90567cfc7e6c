package e2e

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// sshKeys are the SSH keys the bad-input cases send, in authorized_keys
// format unless said otherwise.
type sshKeys struct {
	plain   string // an ed25519 key without a comment
	rsa1024 string // an RSA key of 1024 bits
	private string // an OpenSSH private key (PEM)
}

func newSSHKeys() sshKeys {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		panic(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		panic(err)
	}
	return sshKeys{
		plain:   authorized(pub),
		rsa1024: authorized(&rsaKey.PublicKey),
		private: string(pem.EncodeToMemory(block)),
	}
}

func authorized(pub crypto.PublicKey) string {
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		panic(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

// certKey is a PEM certificate chain and the PEM key of its leaf.
type certKey struct{ cert, key string }

// badCerts are the certificates of the route cases.
type badCerts struct {
	good      certKey // good.example.test, valid now
	expired   certKey // expired.example.test, expired yesterday
	future    certKey // future.example.test, valid from tomorrow
	rsa1024   certKey // weak.example.test, an RSA key of 1024 bits
	longChain certKey // chain.example.test, leaf and 10 CAs
}

func newCerts() badCerts {
	now := time.Now()
	return badCerts{
		good:      leafCert("good.example.test", now.Add(-time.Hour), now.Add(24*time.Hour), ecKey(), 0),
		expired:   leafCert("expired.example.test", now.Add(-48*time.Hour), now.Add(-24*time.Hour), ecKey(), 0),
		future:    leafCert("future.example.test", now.Add(24*time.Hour), now.Add(48*time.Hour), ecKey(), 0),
		rsa1024:   leafCert("weak.example.test", now.Add(-time.Hour), now.Add(24*time.Hour), rsaKey(1024), 0),
		longChain: leafCert("chain.example.test", now.Add(-time.Hour), now.Add(24*time.Hour), ecKey(), 10),
	}
}

func ecKey() crypto.Signer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

func rsaKey(bits int) crypto.Signer {
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		panic(err)
	}
	return k
}

// leafCert makes a certificate for domain with key, valid from notBefore
// to notAfter, signed by the last of cas CAs in a row (self-signed for 0);
// the chain is the leaf, then the CAs from the one that signed it up.
func leafCert(domain string, notBefore, notAfter time.Time, key crypto.Signer, cas int) certKey {
	serial := int64(1)
	issue := func(tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) *x509.Certificate {
		serial++
		tmpl.SerialNumber = big.NewInt(serial)
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
		if err != nil {
			panic(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			panic(err)
		}
		return c
	}
	var chain []*x509.Certificate
	var parent *x509.Certificate
	var parentKey crypto.Signer
	for i := range cas {
		caKey := ecKey()
		tmpl := &x509.Certificate{
			Subject:               pkix.Name{CommonName: "bad-input CA " + string(rune('A'+i))},
			NotBefore:             time.Now().Add(-time.Hour),
			NotAfter:              time.Now().Add(48 * time.Hour),
			IsCA:                  true,
			BasicConstraintsValid: true,
			KeyUsage:              x509.KeyUsageCertSign,
		}
		p, pk := parent, parentKey
		if p == nil {
			p, pk = tmpl, caKey
		}
		parent, parentKey = issue(tmpl, p, caKey.Public(), pk), caKey
		chain = append([]*x509.Certificate{parent}, chain...)
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: domain},
		DNSNames:    []string{domain},
		NotBefore:   notBefore,
		NotAfter:    notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	leaf := issue(tmpl, parent, key.Public(), parentKey)
	var certs strings.Builder
	for _, c := range append([]*x509.Certificate{leaf}, chain...) {
		certs.Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		panic(err)
	}
	return certKey{cert: certs.String(), key: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))}
}
