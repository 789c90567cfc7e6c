// Package types holds the router's wire types: the route value the
// controller writes under keyspace.Route(domain) and the router reads, and
// the names of the router's metrics and of its discovery service.
package types

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
)

// ErrInvalidRoute is returned by Route.Validate.
var ErrInvalidRoute = errors.New("invalid route")

// Route sends the requests for one domain to one discovery service. It is the
// JSON value under keyspace.Route(domain), written by the controller.
type Route struct {
	// Domain is the lower-case host name the route serves, without a port
	// or a trailing dot, or a wildcard "*.example.com" that matches exactly
	// one more label (a.example.com, not a.b.example.com nor example.com),
	// like a TLS wildcard certificate. Exact domains win over wildcards.
	Domain string `json:"domain"`
	// App is the app the route belongs to; it names the requests in the
	// access log.
	App string `json:"app"`
	// Service is the discovery service whose instances serve the domain,
	// e.g. "<app>-web".
	Service string `json:"service"`
	// HTTPSOnly makes the HTTP listener answer 308 with the https URL
	// (the route's own https_only).
	HTTPSOnly bool `json:"https_only,omitempty"`
	// AppHTTPSOnly does the same once the router has a certificate for
	// the domain (the route's own, or that of a wildcard route covering
	// it): the app's https_only, which covers all its domains, and which
	// must not send a domain to HTTPS before it can be served there.
	AppHTTPSOnly bool `json:"app_https_only,omitempty"`
	// TLSCert is the PEM certificate chain presented for the domain (SNI);
	// empty means the router's default certificate.
	TLSCert string `json:"tls_cert,omitempty"`
	// TLSKey is the PEM private key of TLSCert, sealed (layer0/sealed) when
	// the controller has a secrets key; set exactly when TLSCert is. The
	// router opens a sealed key before Validate.
	TLSKey string `json:"tls_key,omitempty"`
}

// Validate reports a malformed domain, a missing app or service, or a
// certificate and key that do not form a pair.
func (r Route) Validate() error {
	var errs []error
	if err := ValidDomain(r.Domain); err != nil {
		errs = append(errs, err)
	}
	if r.App == "" {
		errs = append(errs, errors.New("no app"))
	}
	if r.Service == "" || strings.ContainsAny(r.Service, "/ \t\r\n") {
		errs = append(errs, fmt.Errorf("service %q: want a name without slashes or spaces", r.Service))
	}
	switch {
	case r.TLSCert == "" && r.TLSKey == "":
	case r.TLSCert == "" || r.TLSKey == "":
		errs = append(errs, errors.New("tls_cert and tls_key go together"))
	default:
		if _, err := tls.X509KeyPair([]byte(r.TLSCert), []byte(r.TLSKey)); err != nil {
			errs = append(errs, fmt.Errorf("tls key pair: %w", err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w %q: %w", ErrInvalidRoute, r.Domain, errors.Join(errs...))
	}
	return nil
}

// ValidDomain reports whether d is a lower-case host name (labels of
// letters, digits and dashes, 1 to 63 bytes each, 253 bytes in all) or such a
// name behind a "*." wildcard label.
func ValidDomain(d string) error {
	name := strings.TrimPrefix(d, "*.")
	if name == "" || len(name) > 253 {
		return fmt.Errorf("domain %q: want 1 to 253 bytes", d)
	}
	for label := range strings.SplitSeq(name, ".") {
		if len(label) == 0 || len(label) > 63 {
			return fmt.Errorf("domain %q: empty or over-long label", d)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("domain %q: label %q starts or ends with a dash", d, label)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return fmt.Errorf("domain %q: want lower-case letters, digits, dashes and dots", d)
			}
		}
	}
	return nil
}
