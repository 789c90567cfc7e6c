package clustertls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestInit(t *testing.T) {
	loop := net.ParseIP("127.0.0.1")
	adv := net.ParseIP("127.0.0.2")
	tests := []struct {
		name        string
		first       Host
		second      Host
		wantReissue bool
	}{
		{"same host again", Host{ID: "host-a", IPs: []net.IP{loop}}, Host{ID: "host-a", IPs: []net.IP{loop}}, false},
		{"a new address", Host{ID: "host-a", IPs: []net.IP{loop}}, Host{ID: "host-a", IPs: []net.IP{loop, adv}}, true},
		{"a new name", Host{ID: "host-a", IPs: []net.IP{loop}}, Host{ID: "host-a", IPs: []net.IP{loop}, DNSNames: []string{"localhost"}}, true},
		{"fewer addresses", Host{ID: "host-a", IPs: []net.IP{loop, adv}}, Host{ID: "host-a", IPs: []net.IP{adv}}, false},
		{"another host ID", Host{ID: "host-a", IPs: []net.IP{loop}}, Host{ID: "host-b", IPs: []net.IP{loop}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := Init(dir, tt.first); err != nil {
				t.Fatal(err)
			}
			p := PathsIn(dir)
			ca1, cert1 := read(t, p.CACert), read(t, p.HostCert)
			if err := Init(dir, tt.second); err != nil {
				t.Fatal(err)
			}
			if ca2 := read(t, p.CACert); ca2 != ca1 {
				t.Error("the CA changed")
			}
			if reissued := read(t, p.HostCert) != cert1; reissued != tt.wantReissue {
				t.Errorf("host certificate issued again: %v, want %v", reissued, tt.wantReissue)
			}
			checkChain(t, dir, tt.second)
			if tt.first.ID == tt.second.ID {
				checkChain(t, dir, tt.first) // nothing named before is lost
			}
		})
	}
}

func TestFileModes(t *testing.T) {
	dir := t.TempDir()
	if err := Init(dir, Host{ID: "h", IPs: []net.IP{net.ParseIP("127.0.0.1")}}); err != nil {
		t.Fatal(err)
	}
	p := PathsIn(dir)
	for path, want := range map[string]os.FileMode{p.CAKey: 0o600, p.HostKey: 0o600, p.CACert: 0o644, p.HostCert: 0o644} {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s has mode %v, want %v", filepath.Base(path), st.Mode().Perm(), want)
		}
	}
}

func TestNoCAKey(t *testing.T) {
	dir := t.TempDir()
	h := Host{ID: "h", IPs: []net.IP{net.ParseIP("127.0.0.1")}}
	if err := Init(dir, h); err != nil {
		t.Fatal(err)
	}
	// A host that holds only the CA certificate cannot issue itself a
	// certificate for a new address.
	if err := os.Remove(PathsIn(dir).CAKey); err != nil {
		t.Fatal(err)
	}
	h.IPs = append(h.IPs, net.ParseIP("127.0.0.9"))
	if err := Init(dir, h); !errors.Is(err, ErrNoCA) {
		t.Errorf("Init without the CA key: %v, want ErrNoCA", err)
	}
}

func TestValidate(t *testing.T) {
	for _, h := range []Host{{}, {ID: "h"}, {IPs: []net.IP{net.ParseIP("127.0.0.1")}}} {
		if err := Init(t.TempDir(), h); err == nil {
			t.Errorf("Init(%+v) succeeded", h)
		}
	}
}

// checkChain verifies the host certificate against the CA for both server
// and client use.
func checkChain(t *testing.T, dir string, h Host) {
	t.Helper()
	tc, err := ClientConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(tc.Certificates[0].Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: tc.RootCAs, KeyUsages: []x509.ExtKeyUsage{usage}, CurrentTime: time.Now()}); err != nil {
			t.Errorf("verify for %v: %v", usage, err)
		}
	}
	for _, ip := range h.IPs {
		if err := leaf.VerifyHostname(ip.String()); err != nil {
			t.Errorf("certificate does not name %s: %v", ip, err)
		}
	}
	if tc.MinVersion < tls.VersionTLS12 {
		t.Errorf("MinVersion %x", tc.MinVersion)
	}
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
