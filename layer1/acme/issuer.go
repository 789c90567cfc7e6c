package acme

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"golang.org/x/crypto/acme"
)

// LetsEncrypt is the directory URL of Let's Encrypt's production server.
const LetsEncrypt = "https://acme-v02.api.letsencrypt.org/directory"

// orderTimeout bounds one Issue when its context has no deadline.
const orderTimeout = 3 * time.Minute

// ChallengeStore publishes HTTP-01 challenge answers to the routers.
type ChallengeStore interface {
	// PutChallenge makes the routers answer token with keyAuth.
	PutChallenge(ctx context.Context, token, keyAuth string) error
	// DeleteChallenge stops the routers answering token.
	DeleteChallenge(ctx context.Context, token string) error
}

// Config configures an Issuer.
type Config struct {
	// Directory is the ACME directory URL; empty means LetsEncrypt.
	Directory string
	// Email is the contact of the ACME account; required.
	Email string
	// AccountKey is the key of the ACME account; required. The account is
	// registered (or found again) on the first Issue.
	AccountKey crypto.Signer
	// HTTPClient reaches the ACME server; nil means one that trusts the
	// system roots (see HTTPClientWithCA for a private server).
	HTTPClient *http.Client
	// Challenges publishes the challenge answers; required.
	Challenges ChallengeStore
	// Logger receives progress; nil discards it.
	Logger *slog.Logger
}

// Validate checks cfg.
func (c Config) Validate() error {
	switch {
	case c.Email == "":
		return errors.New("acme: Email is required")
	case c.AccountKey == nil:
		return errors.New("acme: AccountKey is required")
	case c.Challenges == nil:
		return errors.New("acme: Challenges is required")
	}
	return nil
}

// Issuer obtains certificates from one ACME server with one account.
type Issuer struct {
	cfg    Config
	client *acme.Client
	log    *slog.Logger

	regMu      sync.Mutex
	registered bool
}

// NewIssuer returns an Issuer for cfg. It does not contact the server.
func NewIssuer(cfg Config) (*Issuer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Directory == "" {
		cfg.Directory = LetsEncrypt
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	return &Issuer{
		cfg:    cfg,
		client: &acme.Client{Key: cfg.AccountKey, DirectoryURL: cfg.Directory, HTTPClient: hc, UserAgent: "gantry"},
		log:    log,
	}, nil
}

// HTTPClientWithCA returns an HTTP client that trusts the PEM certificates
// of caFile in addition to the system roots; an empty caFile means the
// system roots only.
func HTTPClientWithCA(caFile string) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if caFile != "" {
		pemData, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("acme CA file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pemData) {
			return nil, fmt.Errorf("acme CA file %s holds no PEM certificate", caFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}, nil
}

// NewAccountKey returns a new ECDSA P-256 account key as PEM.
func NewAccountKey() (string, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", fmt.Errorf("make account key: %w", err)
	}
	return marshalKey(k)
}

// ParseKey parses a PEM PKCS #8 private key, as NewAccountKey and Issue
// return.
func ParseKey(keyPEM string) (crypto.Signer, error) {
	block, _ := pem.Decode([]byte(keyPEM))
	if block == nil {
		return nil, errors.New("acme: key holds no PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("acme: parse key: %w", err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("acme: unsupported key type %T", k)
	}
	return s, nil
}

func marshalKey(k crypto.Signer) (string, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return "", fmt.Errorf("marshal key: %w", err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), nil
}

// Certificate is an issued certificate.
type Certificate struct {
	// CertPEM is the chain, leaf first, as the server sent it.
	CertPEM string
	// KeyPEM is the leaf's private key (PKCS #8).
	KeyPEM string
	// NotAfter is when the leaf expires.
	NotAfter time.Time
}

// Issue runs one order for domain and returns its certificate. The
// challenge answers it publishes are deleted before it returns. Its errors
// carry the server's problem (see Problem and RetryAt).
func (i *Issuer) Issue(ctx context.Context, domain string) (Certificate, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, orderTimeout)
		defer cancel()
	}
	if err := i.register(ctx); err != nil {
		return Certificate{}, err
	}
	order, err := i.client.AuthorizeOrder(ctx, acme.DomainIDs(domain))
	if err != nil {
		return Certificate{}, fmt.Errorf("new order for %s: %w", domain, err)
	}
	for _, u := range order.AuthzURLs {
		if err := i.authorize(ctx, u); err != nil {
			return Certificate{}, fmt.Errorf("authorize %s: %w", domain, err)
		}
	}
	order, err = i.client.WaitOrder(ctx, order.URI)
	if err != nil {
		return Certificate{}, fmt.Errorf("order for %s: %w", domain, err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Certificate{}, fmt.Errorf("make certificate key: %w", err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: []string{domain}}, key)
	if err != nil {
		return Certificate{}, fmt.Errorf("make CSR for %s: %w", domain, err)
	}
	ders, _, err := i.client.CreateOrderCert(ctx, order.FinalizeURL, csr, true)
	if err != nil {
		return Certificate{}, fmt.Errorf("finalize order for %s: %w", domain, err)
	}
	if len(ders) == 0 {
		return Certificate{}, fmt.Errorf("finalize order for %s: the server sent no certificate", domain)
	}
	leaf, err := x509.ParseCertificate(ders[0])
	if err != nil {
		return Certificate{}, fmt.Errorf("certificate for %s: %w", domain, err)
	}
	var chain []byte
	for _, der := range ders {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	keyPEM, err := marshalKey(key)
	if err != nil {
		return Certificate{}, err
	}
	i.log.Info("certificate issued", "domain", domain, "not_after", leaf.NotAfter.UTC())
	return Certificate{CertPEM: string(chain), KeyPEM: keyPEM, NotAfter: leaf.NotAfter.UTC()}, nil
}

// register registers the account once per Issuer; an account that exists
// for the key is reused.
func (i *Issuer) register(ctx context.Context) error {
	i.regMu.Lock()
	defer i.regMu.Unlock()
	if i.registered {
		return nil
	}
	_, err := i.client.Register(ctx, &acme.Account{Contact: []string{"mailto:" + i.cfg.Email}}, acme.AcceptTOS)
	if err != nil && !errors.Is(err, acme.ErrAccountAlreadyExists) {
		return fmt.Errorf("register ACME account %s: %w", i.cfg.Email, err)
	}
	i.registered = true
	return nil
}

// authorize completes the pending authorization at url with HTTP-01.
func (i *Issuer) authorize(ctx context.Context, url string) error {
	z, err := i.client.GetAuthorization(ctx, url)
	if err != nil {
		return err
	}
	if z.Status == acme.StatusValid {
		return nil
	}
	var chal *acme.Challenge
	for _, c := range z.Challenges {
		if c.Type == "http-01" {
			chal = c
			break
		}
	}
	if chal == nil {
		return fmt.Errorf("%w: the server offers no http-01 challenge", ErrNoChallenge)
	}
	keyAuth, err := i.client.HTTP01ChallengeResponse(chal.Token)
	if err != nil {
		return err
	}
	// Deleted whatever happens, even when the put seems to fail: it may
	// have reached etcd before ctx ended.
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := i.cfg.Challenges.DeleteChallenge(dctx, chal.Token); err != nil {
			i.log.Warn("challenge answer not deleted; its lease ends it", "token", chal.Token, "err", err)
		}
	}()
	if err := i.cfg.Challenges.PutChallenge(ctx, chal.Token, keyAuth); err != nil {
		return fmt.Errorf("publish challenge: %w", err)
	}
	if _, err := i.client.Accept(ctx, chal); err != nil {
		return err
	}
	_, err = i.client.WaitAuthorization(ctx, z.URI)
	return err
}

// ErrNoChallenge is returned when the server offers no challenge Gantry
// can answer.
var ErrNoChallenge = errors.New("no usable challenge")
