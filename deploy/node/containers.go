package node

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// WriteDatabaseURL writes url to DatabaseURLFile (mode 0600), where the
// controller's container reads it (`gantryd controller
// --database-url-file`): a connection string with a password never goes
// on a command line.
func (n *Node) WriteDatabaseURL(url string) error {
	return writeFileAtomic(n.Path(DatabaseURLFile), []byte(url+"\n"), 0o600)
}

// InstallGantryd copies the gantryd executable src into BinDir, unless
// the copy there has the same content, and returns the copy's path: the
// host agent's container mounts it into slug containers, so it must be a
// path of the host that the agent's container sees too (the data dir is
// mounted at its own path).
func (n *Node) InstallGantryd(src string) (string, error) {
	dst := filepath.Join(n.Path(BinDir), "gantryd")
	want, err := fileDigest(src)
	if err != nil {
		return "", fmt.Errorf("install gantryd: %w", err)
	}
	if have, err := fileDigest(dst); err == nil && bytes.Equal(have, want) {
		return dst, nil
	}
	if err := os.MkdirAll(n.Path(BinDir), 0o755); err != nil {
		return "", fmt.Errorf("install gantryd: %w", err)
	}
	b, err := os.ReadFile(src)
	if err != nil {
		return "", fmt.Errorf("install gantryd: %w", err)
	}
	if err := writeFileAtomic(dst, b, 0o755); err != nil {
		return "", fmt.Errorf("install gantryd: %w", err)
	}
	return dst, nil
}

// fileDigest is the SHA-256 of the file at path.
func fileDigest(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return h.Sum(nil), nil
}

// DatabaseURL reads DatabaseURLFile.
func (n *Node) DatabaseURL() (string, error) {
	b, err := os.ReadFile(n.Path(DatabaseURLFile))
	if err != nil {
		return "", fmt.Errorf("read the database URL: %w", err)
	}
	url := strings.TrimSpace(string(b))
	if url == "" {
		return "", fmt.Errorf("%s is empty", n.Path(DatabaseURLFile))
	}
	return url, nil
}
