package clustertls

import (
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// TestPinnedConfig serves TLS with one cluster's host certificate and
// connects with clients that pin a CA fingerprint: the cluster's passes,
// another cluster's and a malformed one do not.
func TestPinnedConfig(t *testing.T) {
	host := Host{ID: "host-a", IPs: []net.IP{net.ParseIP("127.0.0.1")}}
	ours, theirs := t.TempDir(), t.TempDir()
	for _, dir := range []string{ours, theirs} {
		if err := Init(dir, host); err != nil {
			t.Fatal(err)
		}
	}
	srvCfg, err := ServerConfig(ours)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", srvCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				io.WriteString(c, "hello")
			}()
		}
	}()
	fpOurs, err := Fingerprint(ours)
	if err != nil {
		t.Fatal(err)
	}
	fpTheirs, err := Fingerprint(theirs)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, fp, wantErr string
	}{
		{"the cluster's CA", fpOurs, ""},
		{"another cluster's CA", fpTheirs, "does not have the fingerprint"},
		{"malformed", "abc", "not 64 hex digits"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := PinnedConfig(tc.fp)
			if err == nil {
				var c *tls.Conn
				c, err = tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(), cfg)
				if err == nil {
					defer c.Close()
					var b []byte
					b, err = io.ReadAll(c)
					if err == nil && string(b) != "hello" {
						t.Fatalf("read %q", b)
					}
				}
			}
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}
