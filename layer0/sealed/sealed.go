// Package sealed encrypts secrets at rest (AES-256-GCM) with a key kept in
// a file of the data dir: the private keys of the routes' certificates and
// the ACME account key, in PostgreSQL and in etcd, where any local process
// could otherwise read them. The controller seals; the controller and the
// routers open.
package sealed

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// SealedPrefix starts every value Seal returns, so that sealed and plain
// values can be told apart (keys stored before sealing was on are plain).
const SealedPrefix = "gantry-sealed:v1:"

// KeySize is the size of a sealing key, in bytes (AES-256).
const KeySize = 32

// ErrSealed is returned by Open for a value that does not open with the
// key: it was sealed with another key, or altered.
var ErrSealed = errors.New("sealed value does not open with this key")

// Sealer encrypts and decrypts secrets with AES-256-GCM.
type Sealer struct {
	aead cipher.AEAD
}

// NewSealer returns a Sealer for a KeySize-byte key.
func NewSealer(key []byte) (*Sealer, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("sealing key is %d bytes, want %d", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("sealing key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("sealing key: %w", err)
	}
	return &Sealer{aead: aead}, nil
}

// LoadKey reads the sealing key file at path, creating it with a random key
// (mode 0600) when it does not exist. It refuses a file that other users
// may read or that does not hold KeySize bytes.
func LoadKey(path string) ([]byte, error) {
	_, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		key := make([]byte, KeySize)
		if _, err := rand.Read(key); err != nil {
			return nil, fmt.Errorf("make sealing key: %w", err)
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			return ReadKey(path) // another process made it first
		}
		if err != nil {
			return nil, fmt.Errorf("make sealing key: %w", err)
		}
		if _, err := f.Write(key); err != nil {
			f.Close()
			os.Remove(path)
			return nil, fmt.Errorf("write sealing key %s: %w", path, err)
		}
		if err := f.Close(); err != nil {
			os.Remove(path)
			return nil, fmt.Errorf("write sealing key %s: %w", path, err)
		}
		return key, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read sealing key: %w", err)
	}
	return ReadKey(path)
}

// ReadKey reads the sealing key file at path, which must exist. It refuses
// a file that other users may read or that does not hold KeySize bytes.
func ReadKey(path string) ([]byte, error) {
	key, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read sealing key: %w", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("read sealing key: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("sealing key %s has mode %v: other users may read it; chmod 600 it", path, fi.Mode().Perm())
	}
	if len(key) != KeySize {
		return nil, fmt.Errorf("sealing key %s is %d bytes, want %d", path, len(key), KeySize)
	}
	return key, nil
}

// Seal encrypts plain and returns SealedPrefix followed by the base64 of
// the nonce and ciphertext.
func (s *Sealer) Seal(plain string) (string, error) {
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("seal: %w", err)
	}
	out := s.aead.Seal(nonce, nonce, []byte(plain), nil)
	return SealedPrefix + base64.RawStdEncoding.EncodeToString(out), nil
}

// Open decrypts a value Seal returned. A value without SealedPrefix is
// returned as it is (stored before sealing was on).
func (s *Sealer) Open(v string) (string, error) {
	b64, ok := strings.CutPrefix(v, SealedPrefix)
	if !ok {
		return v, nil
	}
	raw, err := base64.RawStdEncoding.DecodeString(b64)
	if err != nil || len(raw) < s.aead.NonceSize() {
		return "", ErrSealed
	}
	n := s.aead.NonceSize()
	plain, err := s.aead.Open(nil, raw[:n], raw[n:], nil)
	if err != nil {
		return "", ErrSealed
	}
	return string(plain), nil
}
