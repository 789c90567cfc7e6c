package controller

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/gantryhq/gantry/layer1/controller/types"
)

func authorizedKey(t testing.TB, key any) string {
	t.Helper()
	pub, err := ssh.NewPublicKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
}

func testKeys(t testing.TB) (ed, ec, rsa2048, rsa1024, privPEM, cert string) {
	t.Helper()
	edPub, edPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	big, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	small, err := rsa.GenerateKey(rand.Reader, 1024) // too weak on purpose
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(edPriv, "")
	if err != nil {
		t.Fatal(err)
	}
	sshPub, _ := ssh.NewPublicKey(edPub)
	signer, err := ssh.NewSignerFromKey(edPriv)
	if err != nil {
		t.Fatal(err)
	}
	c := &ssh.Certificate{Key: sshPub, CertType: ssh.UserCert, ValidPrincipals: []string{"me"}, ValidBefore: uint64(time.Now().Add(time.Hour).Unix())}
	if err := c.SignCert(rand.Reader, signer); err != nil {
		t.Fatal(err)
	}
	return authorizedKey(t, edPub), authorizedKey(t, &ecKey.PublicKey), authorizedKey(t, &big.PublicKey),
		authorizedKey(t, &small.PublicKey), string(pem.EncodeToMemory(block)),
		strings.TrimSpace(string(ssh.MarshalAuthorizedKey(c)))
}

func TestParseKey(t *testing.T) {
	ed, ec, rsa2048, rsa1024, privPEM, cert := testKeys(t)
	tests := []struct {
		name, in string
		typ      string // expected type when valid
		comment  string
		msg      string // expected message part when invalid
	}{
		{"ed25519", ed + " me@laptop", "ssh-ed25519", "me@laptop", ""},
		{"ecdsa no comment", ec, "ecdsa-sha2-nistp256", "", ""},
		{"rsa 2048", rsa2048 + " ci", "ssh-rsa", "ci", ""},
		{"comment with spaces", ed + "  my laptop  ", "ssh-ed25519", "my laptop", ""},
		{"surrounding space and comment lines", "\n# my key\n  " + ed + " x\n\n", "ssh-ed25519", "x", ""},
		{"empty", "  \n", "", "", "the key is empty"},
		{"garbage", "not a key", "", "", "not an SSH public key"},
		{"bad base64", "ssh-ed25519 AAAA!!!! me", "", "", "not an SSH public key"},
		{"private key", privPEM, "", "", "this is a private key"},
		{"PEM public key", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "", "", `PEM "PUBLIC KEY" block`},
		{"two keys", ed + "\n" + ec, "", "", "found 2 keys"},
		{"key and garbage", ed + "\ngarbage", "", "", "expected one line, got 2"},
		{"options", `no-pty,command="id" ` + ed, "", "", "key options (no-pty"},
		{"certificate", cert, "", "", "certificates are not supported"},
		{"weak rsa", rsa1024, "", "", "has 1024 bits"},
		{"dsa", "ssh-dss AAAAB3NzaC1kc3MAAACBAJeq me", "", "", "DSA keys are insecure"},
		{"control character in comment", ed + " a\x1bb", "", "", "control characters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := parseKey(tt.in)
			if tt.msg != "" {
				if !errors.Is(err, types.ErrInvalid) || !strings.Contains(err.Error(), tt.msg) {
					t.Fatalf("err = %v, want ErrInvalid saying %q", err, tt.msg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if k.Type != tt.typ || k.Comment != tt.comment || !strings.HasPrefix(k.Fingerprint, "SHA256:") {
				t.Errorf("got %+v", k)
			}
			want := strings.Join(strings.Fields(strings.TrimSpace(tt.in[strings.Index(tt.in, tt.typ):]))[:2], " ")
			if tt.comment != "" {
				want += " " + tt.comment
			}
			if k.Key != want {
				t.Errorf("Key = %q, want %q", k.Key, want)
			}
		})
	}
}

func FuzzParseKey(f *testing.F) {
	ed, ec, rsa2048, rsa1024, privPEM, cert := testKeys(f)
	for _, s := range []string{ed, ed + " me@host", ec, rsa2048, rsa1024, privPEM, cert,
		"", "garbage", ed + "\n" + ec, `command="x" ` + ed, "ssh-dss AAAA", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		k, err := parseKey(in)
		if err != nil {
			if !errors.Is(err, types.ErrInvalid) {
				t.Fatalf("rejection is not ErrInvalid: %v", err)
			}
			return
		}
		if strings.ContainsAny(k.Key, "\r\n") || strings.ContainsFunc(k.Comment, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			t.Fatalf("accepted key %q has control characters", k.Key)
		}
		// The stored form parses back to the same key.
		again, err := parseKey(k.Key)
		if err != nil {
			t.Fatalf("stored form %q does not parse: %v", k.Key, err)
		}
		if again != k {
			t.Fatalf("round trip changed %+v into %+v", k, again)
		}
	})
}

func TestGenerateName(t *testing.T) {
	for range 1000 {
		name := generateName()
		if err := types.ValidateAppName(name); err != nil {
			t.Fatalf("generated an invalid name: %v", err)
		}
	}
}
