package controller

import (
	"crypto"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gantryhq/gantry/layer1/controller/store"
	"github.com/gantryhq/gantry/layer1/controller/types"
)

// listRoutes answers the routes of an app: its default route <app>.<domain>
// when its current release has a web process, then its custom routes by
// domain.
func (s *Server) listRoutes(w http.ResponseWriter, r *http.Request) {
	ar, err := s.store.ListRoutes(r.Context(), r.PathValue("app"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := make([]types.Route, 0, len(ar.Routes)+1)
	if ar.Web {
		out = append(out, s.defaultRoute(ar))
	}
	for _, rt := range ar.Routes {
		out = append(out, routeOf(rt))
	}
	writeJSON(w, http.StatusOK, out)
}

// defaultRoute is the API view of the default route of ar.App, with the
// state of its certificate when the controller obtains one (a certificate
// obtained for an earlier domain of the platform is not shown).
func (s *Server) defaultRoute(ar store.AppRoutes) types.Route {
	rt := types.Route{Domain: s.cfg.defaultDomain(ar.App.Name), App: ar.App.Name, Default: true, CreatedAt: ar.App.CreatedAt}
	d := ar.DefaultCert
	if d == nil || d.Domain != rt.Domain || (s.certs == nil && d.TLSCert == "") {
		return rt
	}
	rt.TLS = d.TLSCert != ""
	rt.CertNotAfter, rt.CertState, rt.CertError, rt.CertRetryAt = d.CertNotAfter, d.CertState, d.CertError, d.CertRetryAt
	return rt
}

// routeOf is the API view of a stored route: without its key. An issued
// certificate that failed to renew shows as failed, with its expiry.
func routeOf(rt store.Route) types.Route {
	return types.Route{
		Domain:       rt.Domain,
		App:          rt.App,
		HTTPSOnly:    rt.HTTPSOnly,
		TLS:          rt.TLSCert != "",
		CertNotAfter: rt.CertNotAfter,
		CreatedAt:    rt.CreatedAt,
		CertState:    rt.CertState,
		CertError:    rt.CertError,
		CertRetryAt:  rt.CertRetryAt,
	}
}

// addRoute adds a custom route to an app (POST /v1/apps/{app}/routes).
func (s *Server) addRoute(w http.ResponseWriter, r *http.Request) {
	var req types.RouteRequest
	if e := decodeJSON(w, r, &req, false); e != nil {
		writeError(w, e)
		return
	}
	if err := types.ValidateRouteDomain(req.Domain, s.cfg.domain()); err != nil {
		s.fail(w, r, err)
		return
	}
	app := r.PathValue("app")
	rt := store.Route{Domain: req.Domain, App: app, HTTPSOnly: req.HTTPSOnly}
	if req.TLSCert != "" || req.TLSKey != "" {
		leaf, err := checkCertificate(req.Domain, req.TLSCert, req.TLSKey, time.Now())
		if err != nil {
			s.fail(w, r, err)
			return
		}
		rt.TLSCert, rt.TLSKey, rt.CertNotAfter = req.TLSCert, req.TLSKey, leaf.NotAfter.UTC()
		if s.sealer != nil {
			sealed, err := s.sealer.Seal(rt.TLSKey)
			if err != nil {
				s.fail(w, r, err)
				return
			}
			rt.TLSKey = sealed
		}
	} else if s.certs != nil && !strings.HasPrefix(req.Domain, "*.") {
		rt.CertState = types.CertPending
	}
	rt, err := s.store.AddRoute(r.Context(), rt, s.cfg.domain())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("route added", "app", app, "domain", rt.Domain, "tls", rt.TLSCert != "", "https_only", rt.HTTPSOnly)
	s.syncApp(r, app)
	if rt.CertState == types.CertPending {
		// Obtained in the background; route list shows the progress.
		s.certs.poke()
	}
	writeJSON(w, http.StatusCreated, routeOf(rt))
}

// removeRoute removes a custom route of an app (DELETE
// /v1/apps/{app}/routes/{domain}).
func (s *Server) removeRoute(w http.ResponseWriter, r *http.Request) {
	app, domain := r.PathValue("app"), r.PathValue("domain")
	if domain == s.cfg.defaultDomain(app) {
		if _, err := s.store.GetApp(r.Context(), app); err != nil {
			s.fail(w, r, err)
			return
		}
		writeError(w, types.ErrInvalid.WithMessage("%s is the default route of app %s; it cannot be removed", domain, app))
		return
	}
	if err := s.store.RemoveRoute(r.Context(), app, domain); err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("route removed", "app", app, "domain", domain)
	s.syncApp(r, app)
	w.WriteHeader(http.StatusNoContent)
}

// checkCertificate checks a route's PEM certificate chain and private key
// and returns the leaf (the first certificate). It returns an ErrInvalid
// that says what is wrong: one of the two is missing, a PEM block or
// certificate does not parse, the key does not parse or does not match the
// leaf, the leaf does not cover domain (a wildcard route needs a
// certificate for the same wildcard), it has expired or is not valid yet at
// now, its RSA key has fewer than 2048 bits, or the chain holds more than
// MaxCertChainLen certificates or either PEM is larger than MaxCertChain.
func checkCertificate(domain, certPEM, keyPEM string, now time.Time) (*x509.Certificate, error) {
	invalid := func(format string, args ...any) (*x509.Certificate, error) {
		return nil, types.ErrInvalid.WithMessage(format, args...)
	}
	switch {
	case certPEM == "":
		return invalid("tls_key needs tls_cert: give both the certificate and its private key, or neither")
	case keyPEM == "":
		return invalid("tls_cert needs tls_key: give both the certificate and its private key, or neither")
	}
	if len(certPEM) > types.MaxCertChain {
		return invalid("tls_cert is %d bytes, the limit is %d (64 KiB)", len(certPEM), types.MaxCertChain)
	}
	if len(keyPEM) > types.MaxCertChain {
		return invalid("tls_key is %d bytes, the limit is %d (64 KiB)", len(keyPEM), types.MaxCertChain)
	}
	// PEM is text; whatever else it holds would be stored with it.
	for _, f := range []struct{ name, pem string }{{"tls_cert", certPEM}, {"tls_key", keyPEM}} {
		if strings.ContainsRune(f.pem, 0) || !utf8.ValidString(f.pem) {
			return invalid("%s holds a NUL byte or invalid UTF-8; send PEM text", f.name)
		}
	}
	var chain []*x509.Certificate
	rest := []byte(certPEM)
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		switch {
		case strings.HasSuffix(block.Type, "PRIVATE KEY"):
			return invalid("tls_cert holds a private key; send the certificate in tls_cert and the key in tls_key")
		case block.Type != "CERTIFICATE":
			return invalid("tls_cert holds a PEM %q block; want CERTIFICATE blocks, the leaf first", block.Type)
		}
		if len(chain) == types.MaxCertChainLen {
			return invalid("tls_cert holds more than %d certificates, the limit is %d: send the leaf and its intermediates, not the root or a bundle",
				types.MaxCertChainLen, types.MaxCertChainLen)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return invalid("tls_cert: certificate %d does not parse: %v", len(chain)+1, err)
		}
		chain = append(chain, c)
	}
	if len(chain) == 0 {
		return invalid("tls_cert holds no PEM certificate (want -----BEGIN CERTIFICATE----- blocks, the leaf first)")
	}
	leaf := chain[0]
	key, err := parsePrivateKey(keyPEM)
	if err != nil {
		return nil, err
	}
	pub, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(key.Public()) {
		return invalid("tls_key does not match the certificate: it is the key of another certificate")
	}
	// The router loads the pair with tls.X509KeyPair; whatever it refuses
	// is refused here too.
	if _, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM)); err != nil {
		return invalid("the certificate and key do not form a pair: %v", err)
	}
	if err := leaf.VerifyHostname(domain); err != nil {
		return invalid("the certificate does not cover %s: it is for %s", domain, certNames(leaf))
	}
	if now.After(leaf.NotAfter) {
		return invalid("the certificate expired on %s", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(leaf.NotBefore) {
		return invalid("the certificate is not valid before %s; add it once it is", leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	if k, ok := leaf.PublicKey.(*rsa.PublicKey); ok && k.N.BitLen() < minRSABits {
		return invalid("the certificate's RSA key has %d bits, fewer than %d", k.N.BitLen(), minRSABits)
	}
	return leaf, nil
}

// parsePrivateKey parses the first PEM private key of keyPEM (PKCS #8,
// PKCS #1 or SEC 1).
func parsePrivateKey(keyPEM string) (crypto.Signer, error) {
	rest := []byte(keyPEM)
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, types.ErrInvalid.WithMessage("tls_key holds no PEM private key (want a -----BEGIN PRIVATE KEY----- block)")
		}
		if !strings.HasSuffix(block.Type, "PRIVATE KEY") {
			continue
		}
		if k, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
			if s, ok := k.(crypto.Signer); ok {
				return s, nil
			}
			return nil, types.ErrInvalid.WithMessage("tls_key: unsupported key type %T", k)
		}
		if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
			return k, nil
		}
		if k, err := x509.ParseECPrivateKey(block.Bytes); err == nil {
			return k, nil
		}
		return nil, types.ErrInvalid.WithMessage("tls_key: the %s block does not parse (encrypted keys are not supported)", block.Type)
	}
}

// certNames lists the names a certificate is for.
func certNames(c *x509.Certificate) string {
	names := c.DNSNames
	if len(names) == 0 && c.Subject.CommonName != "" {
		names = []string{c.Subject.CommonName + " (common name only, which is not used for host names)"}
	}
	if len(names) == 0 {
		return "no host name"
	}
	return strings.Join(names, ", ")
}
