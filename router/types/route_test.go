package types

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"
)

func TestRouteValidate(t *testing.T) {
	cert, key := pair(t)
	_, otherKey := pair(t)
	ok := Route{Domain: "app.example.com", App: "app", Service: "app-web"}
	tests := []struct {
		name  string
		mod   func(*Route)
		valid bool
	}{
		{"plain", func(*Route) {}, true},
		{"wildcard", func(r *Route) { r.Domain = "*.example.com" }, true},
		{"single label", func(r *Route) { r.Domain = "localhost" }, true},
		{"with certificate", func(r *Route) { r.TLSCert, r.TLSKey = cert, key }, true},
		{"https only", func(r *Route) { r.HTTPSOnly = true }, true},
		{"upper case", func(r *Route) { r.Domain = "App.example.com" }, false},
		{"port", func(r *Route) { r.Domain = "app.example.com:80" }, false},
		{"trailing dot", func(r *Route) { r.Domain = "app.example.com." }, false},
		{"inner wildcard", func(r *Route) { r.Domain = "a.*.example.com" }, false},
		{"bare wildcard", func(r *Route) { r.Domain = "*." }, false},
		{"dash label", func(r *Route) { r.Domain = "-a.example.com" }, false},
		{"long label", func(r *Route) { r.Domain = strings.Repeat("a", 64) + ".com" }, false},
		{"empty", func(r *Route) { r.Domain = "" }, false},
		{"no app", func(r *Route) { r.App = "" }, false},
		{"no service", func(r *Route) { r.Service = "" }, false},
		{"service with slash", func(r *Route) { r.Service = "a/b" }, false},
		{"cert without key", func(r *Route) { r.TLSCert = cert }, false},
		{"key without cert", func(r *Route) { r.TLSKey = key }, false},
		{"mismatched pair", func(r *Route) { r.TLSCert, r.TLSKey = cert, otherKey }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ok
			tt.mod(&r)
			err := r.Validate()
			if (err == nil) != tt.valid {
				t.Fatalf("Validate(%+v) = %v, want valid=%v", r.Domain, err, tt.valid)
			}
			if err != nil && !errors.Is(err, ErrInvalidRoute) {
				t.Errorf("error %v is not ErrInvalidRoute", err)
			}
		})
	}
}

func pair(t *testing.T) (string, string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "x"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}))
}
