package controller

import (
	"bytes"
	"crypto/rsa"
	"encoding/pem"
	"errors"
	"net/http"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/ssh"

	"github.com/gantryhq/gantry/layer1/controller/store"
	"github.com/gantryhq/gantry/layer1/controller/types"
)

const (
	// minRSABits is the smallest RSA key accepted.
	minRSABits = 2048
	// keyTypeDSA is the type of DSA keys, which are refused.
	keyTypeDSA = "ssh-dss"
)

// keyFormatHint ends the messages about keys that do not parse.
const keyFormatHint = `send one public key in authorized_keys format, e.g. the contents of ~/.ssh/id_ed25519.pub ("ssh-ed25519 AAAA... me@laptop")`

// parseKey parses one SSH public key in authorized_keys format. It returns
// an ErrInvalid that says what is wrong for private keys, garbage, several
// keys, key options, certificates and weak keys.
func parseKey(authorizedKey string) (types.Key, error) {
	invalid := func(format string, args ...any) (types.Key, error) {
		return types.Key{}, types.ErrInvalid.WithMessage(format, args...)
	}
	in := bytes.TrimSpace([]byte(authorizedKey))
	if len(in) == 0 {
		return invalid("the key is empty; %s", keyFormatHint)
	}
	if block, _ := pem.Decode(in); block != nil {
		if strings.Contains(block.Type, "PRIVATE KEY") {
			return invalid("this is a private key, which must stay secret; send the public key instead (the .pub file)")
		}
		return invalid("this is a PEM %q block, not an SSH public key; %s", block.Type, keyFormatHint)
	}
	var lines [][]byte
	for line := range bytes.Lines(in) {
		if line = bytes.TrimSpace(line); len(line) > 0 && line[0] != '#' {
			lines = append(lines, line)
		}
	}
	if len(lines) != 1 {
		keys := 0
		for _, line := range lines {
			if _, _, _, _, err := ssh.ParseAuthorizedKey(line); err == nil {
				keys++
			}
		}
		if keys > 1 {
			return invalid("found %d keys; add one key per request", keys)
		}
		return invalid("expected one line, got %d; %s", len(lines), keyFormatHint)
	}
	pub, comment, options, _, err := ssh.ParseAuthorizedKey(lines[0])
	if err != nil {
		if fields := bytes.Fields(lines[0]); string(fields[0]) == keyTypeDSA {
			return invalid("DSA keys are insecure and not accepted; use an ed25519 key (ssh-keygen -t ed25519)")
		}
		return invalid("not an SSH public key; %s", keyFormatHint)
	}
	if len(options) > 0 {
		return invalid("key options (%s) are not supported; remove them", strings.Join(options, ","))
	}
	if _, ok := pub.(*ssh.Certificate); ok {
		return invalid("SSH certificates are not supported; send the plain public key")
	}
	if ck, ok := pub.(ssh.CryptoPublicKey); ok {
		if rk, ok := ck.CryptoPublicKey().(*rsa.PublicKey); ok && rk.N.BitLen() < minRSABits {
			return invalid("this RSA key has %d bits, fewer than %d; use an ed25519 key (ssh-keygen -t ed25519)", rk.N.BitLen(), minRSABits)
		}
	}
	comment = strings.TrimSpace(comment)
	if len(comment) > types.MaxKeyComment {
		return invalid("the key comment is %d bytes, the limit is %d", len(comment), types.MaxKeyComment)
	}
	if !utf8.ValidString(comment) || strings.ContainsFunc(comment, unicode.IsControl) {
		return invalid("the key comment holds control characters or invalid UTF-8")
	}
	key := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
	if comment != "" {
		key += " " + comment
	}
	return types.Key{
		Fingerprint: ssh.FingerprintSHA256(pub),
		Type:        pub.Type(),
		Comment:     comment,
		Key:         key,
	}, nil
}

func (s *Server) addKey(w http.ResponseWriter, r *http.Request) {
	var req types.AddKeyRequest
	if e := decodeJSON(w, r, &req, false); e != nil {
		writeError(w, e)
		return
	}
	k, err := parseKey(req.Key)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	added, err := s.store.AddKey(r.Context(), k)
	if errors.Is(err, store.ErrConflict) {
		err = types.ErrConflict.WithMessage("this key is already added (fingerprint %s)", k.Fingerprint)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, added)
}

func (s *Server) listKeys(w http.ResponseWriter, r *http.Request) {
	keys, err := s.store.ListKeys(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if keys == nil {
		keys = []types.Key{}
	}
	writeJSON(w, http.StatusOK, keys)
}

func (s *Server) getKey(w http.ResponseWriter, r *http.Request) {
	k, err := s.store.GetKey(r.Context(), r.PathValue("fingerprint"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, k)
}

func (s *Server) removeKey(w http.ResponseWriter, r *http.Request) {
	if err := s.store.RemoveKey(r.Context(), r.PathValue("fingerprint")); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
