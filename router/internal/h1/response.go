package h1

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

var (
	ErrResponseHeadTooLarge = errors.New("backend response head larger than the read buffer")
	ErrBadResponse          = errors.New("malformed backend response")
)

// ResponseHead is what a proxy needs to know of a backend's response
// beyond its headers.
type ResponseHead struct {
	Status int
	// Length is the body length from Content-Length; -1 when unknown
	// (chunked or until close).
	Length  int64
	Chunked bool
	// NoBody is set for HEAD requests and 1xx, 204 and 304 responses.
	NoBody bool
	// KeepAlive is set when the connection may carry another request once
	// the body is read.
	KeepAlive bool
	// Upgrade is the Upgrade header of a 101 response.
	Upgrade string
}

// ReadResponseHead reads the next final response head from br into h (canonical
// keys, hop-by-hop headers removed). 1xx responses other than 101 are read
// and dropped. The whole head is read as one string and the header values
// are substrings of it, so a response costs a few allocations whatever its
// number of headers.
func ReadResponseHead(br *bufio.Reader, h http.Header, method string) (ResponseHead, error) {
	for {
		block, err := readBlock(br)
		if err != nil {
			return ResponseHead{}, err
		}
		status, minor, rest, err := parseStatusLine(block)
		if err != nil {
			return ResponseHead{}, err
		}
		if status >= 100 && status < 200 && status != http.StatusSwitchingProtocols {
			continue
		}
		hd := ResponseHead{Status: status, Length: -1, KeepAlive: minor >= 1}
		if err := parseHeaders(rest, h, &hd); err != nil {
			clear(h)
			return ResponseHead{}, err
		}
		hd.NoBody = method == http.MethodHead || status < 200 || status == http.StatusNoContent || status == http.StatusNotModified
		switch {
		case hd.NoBody:
		case hd.Chunked:
		case hd.Length < 0:
			hd.KeepAlive = false // the body ends when the backend closes
		}
		return hd, nil
	}
}

// readBlock returns the bytes up to and including the empty line that ends
// a response head.
func readBlock(br *bufio.Reader) (string, error) {
	from := 0
	for {
		buf, _ := br.Peek(br.Buffered())
		if end := headEnd(buf, from); end > 0 {
			s := string(buf[:end])
			br.Discard(end)
			return s, nil
		}
		if len(buf) == br.Size() {
			return "", ErrResponseHeadTooLarge
		}
		from = max(0, len(buf)-2)
		if _, err := br.Peek(len(buf) + 1); err != nil {
			if err == io.EOF && len(buf) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
	}
}

// headEnd returns the index just past the blank line ("\n\n" or "\n\r\n")
// that ends a head, searching from index from, or -1.
func headEnd(b []byte, from int) int {
	for i := from; i < len(b); {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1
		}
		i += j + 1
		if i < len(b) && b[i] == '\n' {
			return i + 1
		}
		if i+1 < len(b) && b[i] == '\r' && b[i+1] == '\n' {
			return i + 2
		}
	}
	return -1
}

// parseStatusLine parses "HTTP/1.x NNN reason" and returns the status, the
// minor version and the rest of the head.
func parseStatusLine(block string) (status, minor int, rest string, err error) {
	line, rest, _ := strings.Cut(block, "\n")
	line = strings.TrimSuffix(line, "\r")
	if len(line) < 12 || !strings.HasPrefix(line, "HTTP/1.") || line[8] != ' ' || (len(line) > 12 && line[12] != ' ') {
		return 0, 0, "", fmt.Errorf("%w: status line %q", ErrBadResponse, truncate(line))
	}
	switch line[7] {
	case '0':
	case '1':
		minor = 1
	default:
		return 0, 0, "", fmt.Errorf("%w: version %q", ErrBadResponse, truncate(line))
	}
	for _, c := range []byte(line[9:12]) {
		if c < '0' || c > '9' {
			return 0, 0, "", fmt.Errorf("%w: status %q", ErrBadResponse, truncate(line))
		}
		status = status*10 + int(c-'0')
	}
	if status < 100 {
		return 0, 0, "", fmt.Errorf("%w: status %q", ErrBadResponse, truncate(line))
	}
	return status, minor, rest, nil
}

// parseHeaders adds the header lines of block to h and fills the framing
// fields of hd. Connection, Keep-Alive, Proxy-*, TE, Trailer,
// Transfer-Encoding, Upgrade and the headers Connection names are not
// added.
func parseHeaders(block string, h http.Header, hd *ResponseHead) error {
	vals := make([]string, strings.Count(block, "\n"))
	nv := 0
	var connTokens string
	var te string
	for {
		key, val, rest, done, err := nextField(block)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrBadResponse, err)
		}
		if done {
			break
		}
		block = rest
		switch key {
		case "Content-Length":
			u, err := strconv.ParseUint(val, 10, 63)
			n := int64(u)
			if err != nil || (hd.Length >= 0 && n != hd.Length) {
				return fmt.Errorf("%w: content-length %q", ErrBadResponse, truncate(val))
			}
			if hd.Length >= 0 {
				continue // a repeated identical value
			}
			hd.Length = n
		case "Connection":
			connTokens = joinTokens(connTokens, val)
			continue
		case "Transfer-Encoding":
			te = joinTokens(te, val)
			continue
		case "Upgrade":
			hd.Upgrade = val
			continue
		case "Keep-Alive", "Te", "Trailer":
			continue
		default:
			if strings.HasPrefix(key, "Proxy-") {
				continue
			}
		}
		if old, ok := h[key]; ok {
			h[key] = append(old, val)
			continue
		}
		vals[nv] = val
		h[key] = vals[nv : nv+1 : nv+1]
		nv++
	}
	if te != "" {
		last := te[strings.LastIndexByte(te, ',')+1:]
		hd.Chunked = strings.EqualFold(strings.TrimSpace(last), "chunked")
		hd.Length = -1
		delete(h, "Content-Length")
		if !hd.Chunked {
			hd.KeepAlive = false
		}
	}
	for connTokens != "" {
		var tok string
		tok, connTokens, _ = strings.Cut(connTokens, ",")
		tok = strings.TrimSpace(tok)
		switch {
		case strings.EqualFold(tok, "close"):
			hd.KeepAlive = false
		case strings.EqualFold(tok, "keep-alive"):
			hd.KeepAlive = true
		case tok != "":
			delete(h, http.CanonicalHeaderKey(tok))
		}
	}
	return nil
}

// ReadTrailers reads the trailer section after a chunked body into h under
// http.TrailerPrefix, so the server sends them as trailers.
func ReadTrailers(br *bufio.Reader, h http.Header) error {
	for total := 0; ; {
		line, err := br.ReadSlice('\n')
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		total += len(line)
		if total > br.Size() {
			return ErrResponseHeadTooLarge
		}
		key, val, _, done, err := nextField(string(line))
		switch {
		case err != nil:
			return fmt.Errorf("%w: trailer: %w", ErrBadResponse, err)
		case done:
			return nil
		}
		h.Add(http.TrailerPrefix+key, val)
	}
}

// ParseChunkSize parses the hexadecimal size of a chunk size line, ignoring
// chunk extensions.
func ParseChunkSize(line string) (int64, error) {
	if i := strings.IndexByte(line, ';'); i >= 0 {
		line = line[:i]
	}
	line = strings.TrimRight(line, " \t")
	if line == "" || len(line) > 15 {
		return 0, fmt.Errorf("%w: chunk size %q", ErrBadResponse, truncate(line))
	}
	n, err := strconv.ParseInt(line, 16, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%w: chunk size %q", ErrBadResponse, truncate(line))
	}
	return n, nil
}

// validToken reports whether s is an RFC 9110 token (a header name).
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !tokenChar[s[i]] {
			return false
		}
	}
	return true
}

var tokenChar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// canonicalKey returns the canonical form of a valid header name without
// allocating when it already is canonical.
func canonicalKey(k string) string {
	upper := true
	for i := 0; i < len(k); i++ {
		c := k[i]
		if upper && 'a' <= c && c <= 'z' || !upper && 'A' <= c && c <= 'Z' {
			return http.CanonicalHeaderKey(k)
		}
		upper = c == '-'
	}
	return k
}

// trimOWS removes the spaces and tabs around a header value.
func trimOWS(s string) string {
	for s != "" && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for s != "" && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

func joinTokens(a, b string) string {
	if a == "" {
		return b
	}
	return a + "," + b
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
