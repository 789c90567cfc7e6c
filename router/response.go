package router

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

var (
	errHeadTooLarge = errors.New("backend response head larger than the read buffer")
	errBadResponse  = errors.New("malformed backend response")
)

// respHead is what the router needs to know of a backend's response beyond
// its headers.
type respHead struct {
	status int
	// length is the body length from Content-Length; -1 when unknown
	// (chunked or until close).
	length  int64
	chunked bool
	// noBody is set for HEAD requests and 1xx, 204 and 304 responses.
	noBody bool
	// keepAlive is set when the connection may carry another request once
	// the body is read.
	keepAlive bool
	// upgrade is the Upgrade header of a 101 response.
	upgrade string
}

// readHead reads the next final response head from br into h (canonical
// keys, hop-by-hop headers removed). 1xx responses other than 101 are read
// and dropped. The whole head is read as one string and the header values
// are substrings of it, so a response costs a few allocations whatever its
// number of headers.
func readHead(br *bufio.Reader, h http.Header, method string) (respHead, error) {
	for {
		block, err := readBlock(br)
		if err != nil {
			return respHead{}, err
		}
		status, minor, rest, err := parseStatusLine(block)
		if err != nil {
			return respHead{}, err
		}
		if status >= 100 && status < 200 && status != http.StatusSwitchingProtocols {
			continue
		}
		hd := respHead{status: status, length: -1, keepAlive: minor >= 1}
		if err := parseHeaders(rest, h, &hd); err != nil {
			clear(h)
			return respHead{}, err
		}
		hd.noBody = method == http.MethodHead || status < 200 || status == http.StatusNoContent || status == http.StatusNotModified
		switch {
		case hd.noBody:
		case hd.chunked:
		case hd.length < 0:
			hd.keepAlive = false // the body ends when the backend closes
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
			return "", errHeadTooLarge
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
		return 0, 0, "", fmt.Errorf("%w: status line %q", errBadResponse, truncate(line))
	}
	switch line[7] {
	case '0':
	case '1':
		minor = 1
	default:
		return 0, 0, "", fmt.Errorf("%w: version %q", errBadResponse, truncate(line))
	}
	for _, c := range []byte(line[9:12]) {
		if c < '0' || c > '9' {
			return 0, 0, "", fmt.Errorf("%w: status %q", errBadResponse, truncate(line))
		}
		status = status*10 + int(c-'0')
	}
	if status < 100 {
		return 0, 0, "", fmt.Errorf("%w: status %q", errBadResponse, truncate(line))
	}
	return status, minor, rest, nil
}

// parseHeaders adds the header lines of block to h and fills the framing
// fields of hd. Connection, Keep-Alive, Proxy-*, TE, Trailer,
// Transfer-Encoding, Upgrade and the headers Connection names are not
// added.
func parseHeaders(block string, h http.Header, hd *respHead) error {
	vals := make([]string, strings.Count(block, "\n"))
	nv := 0
	var connTokens string
	var te string
	for block != "" {
		var line string
		line, block, _ = strings.Cut(block, "\n")
		line = strings.TrimSuffix(line, "\r")
		if line == "" {
			break
		}
		colon := strings.IndexByte(line, ':')
		if colon <= 0 {
			return fmt.Errorf("%w: header line %q", errBadResponse, truncate(line))
		}
		key := line[:colon]
		if !validToken(key) { // also rejects obs-fold continuation lines
			return fmt.Errorf("%w: header name %q", errBadResponse, truncate(key))
		}
		key = canonicalKey(key)
		val := trimOWS(line[colon+1:])
		switch key {
		case "Content-Length":
			u, err := strconv.ParseUint(val, 10, 63)
			n := int64(u)
			if err != nil || (hd.length >= 0 && n != hd.length) {
				return fmt.Errorf("%w: content-length %q", errBadResponse, truncate(val))
			}
			if hd.length >= 0 {
				continue // a repeated identical value
			}
			hd.length = n
		case "Connection":
			connTokens = joinTokens(connTokens, val)
			continue
		case "Transfer-Encoding":
			te = joinTokens(te, val)
			continue
		case "Upgrade":
			hd.upgrade = val
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
		hd.chunked = strings.EqualFold(strings.TrimSpace(last), "chunked")
		hd.length = -1
		delete(h, "Content-Length")
		if !hd.chunked {
			hd.keepAlive = false
		}
	}
	for connTokens != "" {
		var tok string
		tok, connTokens, _ = strings.Cut(connTokens, ",")
		tok = strings.TrimSpace(tok)
		switch {
		case strings.EqualFold(tok, "close"):
			hd.keepAlive = false
		case strings.EqualFold(tok, "keep-alive"):
			hd.keepAlive = true
		case tok != "":
			delete(h, http.CanonicalHeaderKey(tok))
		}
	}
	return nil
}

// readTrailers reads the trailer section after a chunked body into h under
// http.TrailerPrefix, so the server sends them as trailers.
func readTrailers(br *bufio.Reader, h http.Header) error {
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
			return errHeadTooLarge
		}
		s := strings.TrimRight(string(line), "\r\n")
		if s == "" {
			return nil
		}
		key, val, ok := strings.Cut(s, ":")
		if !ok || !validToken(key) {
			return fmt.Errorf("%w: trailer %q", errBadResponse, truncate(s))
		}
		h.Add(http.TrailerPrefix+canonicalKey(key), trimOWS(val))
	}
}

// copyError says which side of the proxy failed while a body was copied.
type copyError struct {
	client bool // writing to the client failed; otherwise reading the backend
	err    error
}

func (e *copyError) Error() string {
	if e.client {
		return "write to client: " + e.err.Error()
	}
	return "read from backend: " + e.err.Error()
}

func (e *copyError) Unwrap() error { return e.err }

// copyResponse copies the body announced by hd from c to w and returns the
// bytes written. It writes straight from c's read buffer. Whenever the
// backend has nothing more buffered it flushes w before waiting, so a
// streamed response (server-sent events, long polls) reaches the client as
// the backend writes it, while a body that is already complete goes out in
// as few writes as possible.
func copyResponse(x *exchange, c *upstreamConn, hd *respHead) (int64, error) {
	if hd.noBody {
		return 0, nil
	}
	w := x.w
	bc := bodyCopier{x: x, w: w, c: c}
	bc.fl, _ = w.(http.Flusher)
	if hd.chunked {
		err := bc.chunked()
		if err == nil {
			if terr := readTrailers(c.br, w.Header()); terr != nil {
				hd.keepAlive = false
			}
		}
		return bc.n, err
	}
	if hd.length < 0 {
		err := bc.copy(-1)
		if err != nil && errors.Is(err, io.EOF) {
			err = nil // the body ends with the connection
		}
		return bc.n, err
	}
	return bc.n, bc.copy(hd.length)
}

// bodyCopier copies a response body from a backend's read buffer to the
// client.
type bodyCopier struct {
	x  *exchange
	w  io.Writer
	fl http.Flusher
	c  *upstreamConn
	n  int64 // bytes written to w
}

// more waits for more bytes from the backend, flushing what the client has
// been sent so far first. Errors are copyErrors.
func (bc *bodyCopier) more() error {
	if bc.fl != nil && bc.n > 0 {
		bc.fl.Flush()
	}
	if err := bc.c.fill(bc.x); err != nil {
		if bc.x.left() != nil {
			return &copyError{client: true, err: err}
		}
		return &copyError{err: err}
	}
	return nil
}

// copy copies n bytes, or until the backend closes when n < 0 (the error
// then wraps io.EOF).
func (bc *bodyCopier) copy(n int64) error {
	br := bc.c.br
	for n != 0 {
		if br.Buffered() == 0 {
			if err := bc.more(); err != nil {
				if n > 0 && errors.Is(err, io.EOF) {
					return &copyError{err: io.ErrUnexpectedEOF}
				}
				return err
			}
		}
		k := br.Buffered()
		if n >= 0 && int64(k) > n {
			k = int(n)
		}
		b, _ := br.Peek(k)
		m, err := bc.w.Write(b)
		br.Discard(k)
		bc.n += int64(m)
		if n > 0 {
			n -= int64(k)
		}
		if err != nil {
			return &copyError{client: true, err: err}
		}
	}
	return nil
}

// maxChunkLine bounds a chunk size line, extensions included.
const maxChunkLine = 4096

// chunked copies a chunked body's data (not its framing) up to the last
// chunk; the trailer section is left in the buffer. It is written against
// the read buffer so that waiting for a slow backend can be resumed after
// each cancelCheck deadline, which a plain chunked io.Reader cannot.
func (bc *bodyCopier) chunked() error {
	br := bc.c.br
	for {
		line, err := bc.line()
		if err != nil {
			return err
		}
		size, err := parseChunkSize(line)
		if err != nil {
			return &copyError{err: err}
		}
		if size == 0 {
			return nil
		}
		if err := bc.copy(size); err != nil {
			return err
		}
		for br.Buffered() < 2 {
			if err := bc.more(); err != nil {
				if errors.Is(err, io.EOF) && br.Buffered() == 1 {
					break
				}
				return err
			}
		}
		crlf, _ := br.Peek(min(2, br.Buffered()))
		switch {
		case len(crlf) == 2 && crlf[0] == '\r' && crlf[1] == '\n':
			br.Discard(2)
		case len(crlf) >= 1 && crlf[0] == '\n':
			br.Discard(1)
		default:
			return &copyError{err: fmt.Errorf("%w: no line end after a chunk", errBadResponse)}
		}
	}
}

// line returns the next line in the read buffer, without its line end, and
// consumes it.
func (bc *bodyCopier) line() (string, error) {
	br := bc.c.br
	from := 0
	for {
		buf, _ := br.Peek(br.Buffered())
		if i := bytes.IndexByte(buf[from:], '\n'); i >= 0 {
			end := from + i
			line := string(bytes.TrimSuffix(buf[:end], []byte("\r")))
			br.Discard(end + 1)
			return line, nil
		}
		if len(buf) >= maxChunkLine || len(buf) == br.Size() {
			return "", &copyError{err: fmt.Errorf("%w: chunk size line too long", errBadResponse)}
		}
		from = len(buf)
		if err := bc.more(); err != nil {
			if errors.Is(err, io.EOF) {
				return "", &copyError{err: io.ErrUnexpectedEOF}
			}
			return "", err
		}
	}
}

// parseChunkSize parses the hexadecimal size of a chunk size line, ignoring
// chunk extensions.
func parseChunkSize(line string) (int64, error) {
	if i := strings.IndexByte(line, ';'); i >= 0 {
		line = line[:i]
	}
	line = strings.TrimRight(line, " \t")
	if line == "" || len(line) > 15 {
		return 0, fmt.Errorf("%w: chunk size %q", errBadResponse, truncate(line))
	}
	n, err := strconv.ParseInt(line, 16, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%w: chunk size %q", errBadResponse, truncate(line))
	}
	return n, nil
}

// bufPool holds the 32 KiB buffers request bodies are copied through.
var bufPool = sync.Pool{New: func() any {
	b := make([]byte, 32<<10)
	return &b
}}

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
