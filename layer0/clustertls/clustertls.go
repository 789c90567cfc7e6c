// Package clustertls holds a cluster's certificate authority and the
// certificates its hosts present to each other. etcd's clients and peers use
// them for mutual TLS: a process without a certificate the cluster CA signed
// cannot read or write the cluster's state.
//
// A host keeps its files in one directory (by default <data>/tls):
//
//	ca.crt    the cluster CA's certificate (public)
//	ca.key    the CA's private key (0600), on the hosts that may sign
//	host.crt  this host's certificate, signed by the CA, for both server
//	          and client authentication
//	host.key  its private key (0600)
package clustertls

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// File names in a host's TLS directory.
const (
	CACertFile   = "ca.crt"
	CAKeyFile    = "ca.key"
	HostCertFile = "host.crt"
	HostKeyFile  = "host.key"
)

const (
	// caValidity is how long a cluster CA is valid.
	caValidity = 20 * 365 * 24 * time.Hour
	// hostValidity is how long a host certificate is valid. A host
	// certificate is issued again, from the CA, when it is within
	// renewBefore of its end or no longer names the host's addresses.
	hostValidity = 5 * 365 * 24 * time.Hour
	renewBefore  = 30 * 24 * time.Hour
)

// ErrNoCA is returned when a directory holds no CA key to sign with.
var ErrNoCA = errors.New("no cluster CA key")

// Host names a host certificate's subject and the addresses it is valid for.
type Host struct {
	// ID is the host's ID, the certificate's common name; required.
	ID string
	// IPs are the addresses the host serves on (its advertised address,
	// loopback); at least one is required.
	IPs []net.IP
	// DNSNames are names the host serves under; may be empty.
	DNSNames []string
}

// Validate reports a missing ID or address.
func (h Host) Validate() error {
	if h.ID == "" {
		return errors.New("clustertls: no host ID")
	}
	if len(h.IPs) == 0 {
		return errors.New("clustertls: no host address")
	}
	return nil
}

// Paths are the files of one directory.
type Paths struct {
	CACert, CAKey, HostCert, HostKey string
}

// PathsIn returns the file paths in dir.
func PathsIn(dir string) Paths {
	return Paths{
		CACert:   filepath.Join(dir, CACertFile),
		CAKey:    filepath.Join(dir, CAKeyFile),
		HostCert: filepath.Join(dir, HostCertFile),
		HostKey:  filepath.Join(dir, HostKeyFile),
	}
}

// Init makes sure dir holds a cluster CA and a certificate of host signed by
// it: it creates the CA when dir has none (a new cluster), and issues the
// host certificate when it is missing, close to its end, or does not name
// every address of host. A certificate issued again for the same host ID
// keeps the addresses and names of the one it replaces, so roles of one
// host can each add the addresses they listen on. It is idempotent; callers
// in several processes serialize their calls.
func Init(dir string, host Host) error {
	if err := host.Validate(); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	p := PathsIn(dir)
	if _, err := os.Stat(p.CACert); errors.Is(err, os.ErrNotExist) {
		if err := newCA(p); err != nil {
			return err
		}
	} else if err != nil {
		return fmt.Errorf("cluster CA: %w", err)
	}
	if current(p, host, time.Now()) {
		return nil
	}
	if old, err := readCert(p.HostCert); err == nil && old.Subject.CommonName == host.ID {
		for _, ip := range old.IPAddresses {
			if !slices.ContainsFunc(host.IPs, ip.Equal) {
				host.IPs = append(host.IPs, ip)
			}
		}
		for _, name := range old.DNSNames {
			if !slices.Contains(host.DNSNames, name) {
				host.DNSNames = append(host.DNSNames, name)
			}
		}
	}
	return issueHost(p, host)
}

// newCA writes a new self-signed CA.
func newCA(p Paths) error {
	key, serial, err := newKey("the cluster CA")
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "gantry cluster CA", Organization: []string{"gantry"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return fmt.Errorf("create the cluster CA certificate: %w", err)
	}
	if err := writeKey(p.CAKey, key); err != nil {
		return err
	}
	return writeFileAtomic(p.CACert, pemBlock("CERTIFICATE", der), 0o644)
}

// current reports whether the host certificate in p is signed by the CA in
// p, names every address of host and is not close to its end.
func current(p Paths, host Host, now time.Time) bool {
	ca, err := readCert(p.CACert)
	if err != nil {
		return false
	}
	cert, err := readCert(p.HostCert)
	if err != nil {
		return false
	}
	if _, err := tls.LoadX509KeyPair(p.HostCert, p.HostKey); err != nil {
		return false
	}
	if cert.CheckSignatureFrom(ca) != nil || cert.Subject.CommonName != host.ID || now.Add(renewBefore).After(cert.NotAfter) {
		return false
	}
	for _, ip := range host.IPs {
		if !slices.ContainsFunc(cert.IPAddresses, ip.Equal) {
			return false
		}
	}
	for _, name := range host.DNSNames {
		if !slices.Contains(cert.DNSNames, name) {
			return false
		}
	}
	return true
}

// issueHost signs a new host certificate with the CA key in p.
func issueHost(p Paths, host Host) error {
	caCert, err := readCert(p.CACert)
	if err != nil {
		return err
	}
	caKey, err := readKey(p.CAKey)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("issue a certificate for %s: %w in %s", host.ID, ErrNoCA, filepath.Dir(p.CAKey))
	}
	if err != nil {
		return err
	}
	key, serial, err := newKey(host.ID)
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: host.ID, Organization: []string{"gantry"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(hostValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  host.IPs,
		DNSNames:     host.DNSNames,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, key.Public(), caKey)
	if err != nil {
		return fmt.Errorf("sign the certificate of %s: %w", host.ID, err)
	}
	// The key first: a certificate on disk always has its key beside it.
	if err := writeKey(p.HostKey, key); err != nil {
		return err
	}
	return writeFileAtomic(p.HostCert, pemBlock("CERTIFICATE", der), 0o644)
}

// ClientConfig returns the TLS configuration of a client of the cluster's
// services (etcd): it presents the host certificate of dir and trusts only
// the cluster CA.
func ClientConfig(dir string) (*tls.Config, error) {
	p := PathsIn(dir)
	return ClientConfigFromFiles(p.CACert, p.HostCert, p.HostKey)
}

// ClientConfigFromFiles returns the TLS configuration of a client that
// presents the certificate of certFile and keyFile and trusts only the CAs
// of caFile (PEM).
func ClientConfigFromFiles(caFile, certFile, keyFile string) (*tls.Config, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load the client certificate %s: %w", certFile, err)
	}
	b, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", caFile, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", caFile)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{pair},
		RootCAs:      pool,
		MinVersion:   tls.VersionTLS12,
	}, nil
}

// CAPool returns a pool holding the cluster CA of dir.
func CAPool(dir string) (*x509.CertPool, error) {
	ca, err := readCert(PathsIn(dir).CACert)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pool, nil
}

// newKey generates the private key and the serial number of a new
// certificate for whom.
func newKey(whom string) (*ecdsa.PrivateKey, *big.Int, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate the key of %s: %w", whom, err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, fmt.Errorf("serial number of the certificate of %s: %w", whom, err)
	}
	return key, serial, nil
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	return writeFileAtomic(path, pemBlock("PRIVATE KEY", der), 0o600)
}

func readCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	return c, nil
}

func readKey(path string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s holds no PEM private key", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: a %T cannot sign", path, k)
	}
	return s, nil
}

// writeFileAtomic writes b to path through a temporary file and a rename,
// so a crash never leaves half a file.
func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
