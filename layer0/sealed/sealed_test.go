package sealed

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSealer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secrets.key")
	key, err := LoadKey(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode = %v, want 0600", fi.Mode().Perm())
	}
	again, err := LoadKey(path)
	if err != nil || !bytes.Equal(again, key) {
		t.Fatalf("LoadKey again = %x, %v; want the same key", again, err)
	}
	s, err := NewSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewSealer(bytes.Repeat([]byte{1}, KeySize))
	if err != nil {
		t.Fatal(err)
	}
	const secret = "-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n"
	sealed, err := s.Seal(secret)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		sealer  *Sealer
		in      string
		want    string
		wantErr error
	}{
		{"round trip", s, sealed, secret, nil},
		{"plain value passes", s, secret, secret, nil},
		{"other key", other, sealed, "", ErrSealed},
		{"altered", s, sealed[:len(sealed)-2] + "AA", "", ErrSealed},
		{"truncated", s, SealedPrefix + "AAAA", "", ErrSealed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.sealer.Open(tt.in)
			if !errors.Is(err, tt.wantErr) || got != tt.want {
				t.Errorf("Open = %q, %v; want %q, %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
	if strings.Contains(sealed, "PRIVATE KEY") {
		t.Error("sealed value holds the plain text")
	}

	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKey(path); err == nil {
		t.Error("LoadKey accepted a key file other users may read")
	}
}
