package cli

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func testHostKey(t *testing.T) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

func TestPinHostKey(t *testing.T) {
	key, other := testHostKey(t), testHostKey(t)
	for _, tc := range []struct {
		name     string
		existing string // content of ~/.ssh/known_hosts; "-" for no ~/.ssh at all
		gitURL   string
		wantLine string // a line the file must hold afterwards
		wantOut  string
		wantErr  string
	}{
		{"no ~/.ssh", "-", "ssh://git@127.0.0.1:2222", "[127.0.0.1]:2222 " + key, "Added the platform's SSH host key for [127.0.0.1]:2222 to ~/.ssh/known_hosts", ""},
		{"port 22 is written bare", "", "ssh://git@git.example.test", "git.example.test " + key, "for git.example.test", ""},
		{"already pinned", "[127.0.0.1]:2222 " + key + "\n", "ssh://git@127.0.0.1:2222", "[127.0.0.1]:2222 " + key, "", ""},
		{"other hosts are kept", "example.org " + other + "\n", "ssh://git@127.0.0.1:2222", "example.org " + other, "Added", ""},
		{"a changed key is reported, not replaced", "[127.0.0.1]:2222 " + other + "\n", "ssh://git@127.0.0.1:2222", "[127.0.0.1]:2222 " + other, "", "a different SSH host key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			home := t.TempDir()
			file := filepath.Join(home, ".ssh", "known_hosts")
			if tc.existing != "-" {
				os.MkdirAll(filepath.Dir(file), 0o700)
				os.WriteFile(file, []byte(tc.existing), 0o600)
			}
			var stdout bytes.Buffer
			r := &runner{stdout: &stdout, getenv: func(k string) string {
				if k == "HOME" {
					return home
				}
				return ""
			}}
			err := r.pin(tc.gitURL, key)
			if (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("pin: %v, want error %q", err, tc.wantErr)
			}
			b, _ := os.ReadFile(file)
			if !strings.Contains(string(b), tc.wantLine+"\n") {
				t.Errorf("known_hosts:\n%s\nwant the line %q", b, tc.wantLine)
			}
			if strings.Count(string(b), "\n") > strings.Count(tc.existing, "\n")+1 {
				t.Errorf("known_hosts grew by more than a line:\n%s", b)
			}
			if tc.wantOut == "" && stdout.Len() > 0 || !strings.Contains(stdout.String(), tc.wantOut) {
				t.Errorf("output %q, want %q", stdout.String(), tc.wantOut)
			}
			if fi, err := os.Stat(file); err == nil && fi.Mode().Perm() != 0o600 {
				t.Errorf("known_hosts mode %v", fi.Mode().Perm())
			}
		})
	}
}
