package stack

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// testCert returns a self-signed CA certificate as PEM.
func testCert(t *testing.T, name string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Unix(0, 0),
		NotAfter:              time.Unix(0, 0).Add(100 * 365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestHostCAExtras(t *testing.T) {
	a, b, c := testCert(t, "a"), testCert(t, "b"), testCert(t, "c")
	garbage := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("not DER")})
	key := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("x")})
	join := func(parts ...[]byte) []byte { return bytes.Join(parts, []byte("# comment\n")) }
	tests := []struct {
		name        string
		host, image []byte
		want        [][]byte
	}{
		{"same bundle", join(a, b), join(b, a), nil},
		{"host has local CAs", join(a, c, b), join(a), [][]byte{c, b}},
		{"duplicates once", join(c, c), join(a), [][]byte{c}},
		{"junk left out", join(garbage, key, b, []byte("trailing text")), nil, [][]byte{b}},
		{"no host bundle", nil, join(a), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got [][]byte
			for _, block := range hostCAExtras(tt.host, tt.image) {
				got = append(got, pem.EncodeToMemory(block))
			}
			if !slices.EqualFunc(got, tt.want, bytes.Equal) {
				t.Errorf("hostCAExtras returned %d certificates, want %d", len(got), len(tt.want))
			}
		})
	}
}

func TestSlim(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	files := []string{
		"usr/share/man/man1/ls.1.gz",
		"usr/share/info/dir",
		"usr/share/locale/de/LC_MESSAGES/apt.mo",
		"usr/share/locale/locale.alias",
		"usr/share/doc/apt/copyright",
		"usr/share/doc/apt/changelog.gz",
		"usr/share/doc/apt/examples/sources.list",
		"usr/share/doc/README",
		"usr/share/zoneinfo/UTC",
		"etc/dpkg/dpkg.cfg.d/excludes",
	}
	for _, f := range files {
		p := filepath.Join(root, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A documentation link pointing out of the tree must not be followed.
	if err := os.WriteFile(filepath.Join(outside, "keep"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "usr/share/doc/linked")); err != nil {
		t.Fatal(err)
	}

	if err := slim(root); err != nil {
		t.Fatalf("slim: %v", err)
	}

	for f, want := range map[string]bool{
		"usr/share/man/man1":                  false,
		"usr/share/info/dir":                  false,
		"usr/share/locale/de":                 false,
		"usr/share/locale/locale.alias":       true,
		"usr/share/doc/apt/copyright":         true,
		"usr/share/doc/apt/changelog.gz":      false,
		"usr/share/doc/apt/examples":          false,
		"usr/share/doc/README":                false,
		"usr/share/doc/linked":                false,
		"usr/share/zoneinfo/UTC":              true,
		"etc/dpkg/dpkg.cfg.d/gantry-excludes": true,
		"usr/share/man":                       true,
		"etc/dpkg/dpkg.cfg.d/excludes":        true,
	} {
		_, err := os.Lstat(filepath.Join(root, f))
		if got := err == nil; got != want {
			t.Errorf("%s exists = %v, want %v (%v)", f, got, want, err)
		}
	}
	if _, err := os.Stat(filepath.Join(outside, "keep")); err != nil {
		t.Errorf("file behind a symbolic link was touched: %v", err)
	}
}

func TestOutputTail(t *testing.T) {
	var logs bytes.Buffer
	o := newOutput(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})), "cmd")
	for i := range tailLines + 5 {
		fmt.Fprintf(o, "line %d\r\n", i)
	}
	// Split writes and an unterminated last line.
	o.Write([]byte("par"))
	o.Write([]byte("tial"))
	o.flush()

	lines := strings.Split(o.tail(), "\n")
	if len(lines) != tailLines {
		t.Fatalf("tail has %d lines, want %d", len(lines), tailLines)
	}
	if lines[0] != "line 6" || lines[len(lines)-1] != "partial" {
		t.Errorf("tail = %q ... %q, want %q ... %q", lines[0], lines[len(lines)-1], "line 6", "partial")
	}
	if !strings.Contains(logs.String(), `msg="line 0" cmd=cmd`) {
		t.Errorf("first line not logged at debug level: %s", logs.String())
	}
}

func TestUnescapeMount(t *testing.T) {
	tests := map[string]string{
		"/tmp/plain":              "/tmp/plain",
		`/tmp/with\040space`:      "/tmp/with space",
		`/tmp/tab\011and\134back`: "/tmp/tab\tand\\back",
		`/tmp/short\04`:           `/tmp/short\04`,
		`/tmp/notoctal\999`:       `/tmp/notoctal\999`,
	}
	for in, want := range tests {
		t.Run(in, func(t *testing.T) {
			if got := unescapeMount(in); got != want {
				t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
			}
		})
	}
}

func TestRemoveScratch(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "scratch with space")
	if err := os.MkdirAll(filepath.Join(dir, "rootfs/etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := removeScratch(dir); err != nil {
		t.Fatalf("removeScratch: %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("scratch dir still there: %v", err)
	}
	mounts, err := mountsUnder("/proc")
	if err != nil || !slices.Contains(mounts, "/proc") {
		t.Fatalf("mountsUnder(/proc) = %v, %v; want /proc among them", mounts, err)
	}
}

func TestLock(t *testing.T) {
	var progress bytes.Buffer
	b, err := newBuild(Config{CacheDir: t.TempDir(), Progress: &progress})
	if err != nil {
		t.Fatal(err)
	}
	unlock, err := b.lock(t.Context())
	if err != nil {
		t.Fatalf("first lock: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := b.lock(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("second lock while held = %v, want context.Canceled", err)
	}
	if !strings.Contains(progress.String(), "Waiting for another stack build") {
		t.Errorf("progress = %q, want a waiting line", progress.String())
	}
	unlock()
	unlock2, err := b.lock(t.Context())
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	unlock2()
}
