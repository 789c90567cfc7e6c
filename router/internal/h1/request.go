package h1

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"time"
)

var (
	errBadRequest          = errors.New("malformed request")
	errRequestHeadTooLarge = errors.New("request head too large")
)

// request is the request being served on an Conn: the http.Request the
// exchange reads, and what the server needs to frame the response.
//
// Only the fields of r the router reads are set: Method, RequestURI (always
// origin-form, or "*"), Proto*, Host, Header (canonical keys, without Host
// and Transfer-Encoding), ContentLength (-1 for a chunked body), Body,
// Close and RemoteAddr. URL is empty.
type request struct {
	r   http.Request
	url url.URL
	// proto10 is set for an HTTP/1.0 request.
	proto10 bool
	// close is set when the connection ends after the response: the client
	// asked for it, or sent HTTP/1.0 without keep-alive.
	close bool
	// head is set for a HEAD request.
	head bool
	// expect is set when the client waits for 100 Continue before sending
	// the body.
	expect bool
}

// readRequest reads the next request head into c.req and prepares its
// body. On failure it returns the status to answer with, or 0 when the
// client went away or sent nothing readable in time.
func (c *Conn) readRequest() (int, error) {
	block, err := c.readHeadBlock()
	switch {
	case errors.Is(err, errRequestHeadTooLarge):
		return http.StatusRequestHeaderFieldsTooLarge, err
	case errors.Is(err, errBadRequest):
		return http.StatusBadRequest, err
	case err != nil:
		return 0, err
	}
	if status, err := c.parseRequest(block); err != nil {
		return status, err
	}
	if c.body.active {
		c.bodyDeadline()
	}
	return 0, nil
}

// readHeadBlock returns the request head, up to and including the empty
// line that ends it. Up to a few empty lines before the request line are
// skipped (RFC 9112, section 2.2). When the head is not in the read buffer
// at once, the rest must come within the read header timeout.
func (c *Conn) readHeadBlock() (string, error) {
	br := c.br
	for skipped := 0; ; skipped++ {
		b, err := br.Peek(1)
		if err != nil {
			return "", err
		}
		if b[0] != '\r' && b[0] != '\n' {
			break
		}
		if skipped == 8 {
			return "", errBadRequest
		}
		br.Discard(1)
	}
	from, deadline := 0, false
	for {
		buf, _ := br.Peek(br.Buffered())
		if end := headEnd(buf, from); end > 0 {
			s := string(buf[:end])
			br.Discard(end)
			return s, nil
		}
		if !deadline {
			c.setReadDeadline(time.Now().Add(c.s.readHeaderTimeout))
			deadline = true
		}
		if len(buf) == br.Size() {
			return c.readLongHead()
		}
		from = max(0, len(buf)-2)
		if _, err := br.Peek(len(buf) + 1); err != nil {
			return "", unexpectedEOF(err)
		}
	}
}

// readLongHead assembles a head larger than the read buffer, up to
// MaxHeadBytes.
func (c *Conn) readLongHead() (string, error) {
	br := c.br
	acc := make([]byte, 0, 2*br.Size())
	for {
		buf, _ := br.Peek(br.Buffered())
		from := max(0, len(acc)-2)
		acc = append(acc, buf...)
		if end := headEnd(acc, from); end > 0 {
			if end > MaxHeadBytes {
				return "", errRequestHeadTooLarge
			}
			br.Discard(end - (len(acc) - len(buf)))
			return string(acc[:end]), nil
		}
		br.Discard(len(buf))
		if len(acc) > MaxHeadBytes {
			return "", errRequestHeadTooLarge
		}
		if _, err := br.Peek(1); err != nil {
			return "", unexpectedEOF(err)
		}
	}
}

func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// parseRequest parses a request head into c.req and sets up c.body. It
// rejects what could make the router and a backend disagree on where a
// request ends: both Content-Length and Transfer-Encoding, differing
// Content-Lengths, a coding other than chunked, folded or malformed header
// lines, control characters, and a missing or repeated Host.
func (c *Conn) parseRequest(block string) (int, error) {
	q := &c.req
	line, rest, _ := strings.Cut(block, "\n")
	line = strings.TrimSuffix(line, "\r")
	method, after, ok1 := strings.Cut(line, " ")
	target, version, ok2 := strings.Cut(after, " ")
	if !ok1 || !ok2 || !validToken(method) || !validTarget(target) {
		return http.StatusBadRequest, errBadRequest
	}
	proto10 := false
	switch version {
	case "HTTP/1.1":
	case "HTTP/1.0":
		proto10 = true
	default:
		if strings.HasPrefix(version, "HTTP/") {
			return http.StatusHTTPVersionNotSupported, errBadRequest
		}
		return http.StatusBadRequest, errBadRequest
	}
	if status := checkTarget(method, target, 1); status != 0 {
		return status, errBadRequest
	}

	uri, host, hostInTarget := target, "", false
	if target[0] != '/' && target != "*" {
		// absolute-form (checked by checkTarget): its authority is the
		// host (RFC 9112, 3.2.2)
		_, hier, _ := strings.Cut(target, "://")
		host, uri = hier, "/"
		if i := strings.IndexAny(hier, "/?"); i >= 0 {
			host, uri = hier[:i], hier[i:]
			if uri[0] == '?' {
				uri = "/" + uri
			}
		}
		hostInTarget = true
	}

	h := q.r.Header
	clear(h)
	vals := c.vals[:0]
	hosts := 0
	length := int64(-1)
	var te string
	tes, fields := 0, 0
	for {
		key, val, after, done, err := nextField(rest)
		if err != nil {
			return http.StatusBadRequest, errBadRequest
		}
		if done {
			break
		}
		rest = after
		if fields++; fields > MaxHeaderFields {
			return http.StatusRequestHeaderFieldsTooLarge, errRequestHeadTooLarge
		}
		switch key {
		case "Host":
			hosts++
			if !hostInTarget {
				host = val
			}
			continue
		case "Content-Length":
			n, err := strconv.ParseUint(val, 10, 63)
			if err != nil || length >= 0 && int64(n) != length {
				return http.StatusBadRequest, errBadRequest
			}
			if length >= 0 {
				continue // a repeated identical value
			}
			length = int64(n)
		case "Transfer-Encoding":
			te = val
			tes++
			continue
		}
		if old, ok := h[key]; ok {
			h[key] = append(old, val)
			continue
		}
		vals = append(vals, val)
		h[key] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	c.vals = vals
	if hosts > 1 || hosts == 0 && !proto10 && !hostInTarget || host != "" && !validTarget(host) {
		return http.StatusBadRequest, errBadRequest
	}
	chunked := false
	if tes > 0 {
		switch {
		case proto10 || length >= 0:
			return http.StatusBadRequest, errBadRequest
		case tes > 1 || !strings.EqualFold(te, "chunked"):
			return http.StatusNotImplemented, errBadRequest
		}
		chunked = true
	}

	closeConn, keepAlive := false, false
	for _, v := range h["Connection"] {
		closeConn = closeConn || HasToken(v, "close")
		keepAlive = keepAlive || HasToken(v, "keep-alive")
	}
	if proto10 && !keepAlive {
		closeConn = true
	}
	hasBody := chunked || length > 0
	expect := false
	if v, ok := h["Expect"]; ok {
		if len(v) != 1 || !strings.EqualFold(v[0], "100-continue") {
			return http.StatusExpectationFailed, errBadRequest
		}
		expect = hasBody && !proto10
	}

	*q = request{url: url.URL{}, proto10: proto10, close: closeConn, head: method == http.MethodHead, expect: expect}
	q.r = http.Request{
		Method:     method,
		URL:        &q.url,
		Proto:      version,
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     h,
		Body:       http.NoBody,
		Host:       host,
		Close:      closeConn,
		RemoteAddr: c.remoteAddr,
		RequestURI: uri,
	}
	if proto10 {
		q.r.ProtoMinor = 0
	}
	c.body.reset(false, 0, false)
	switch {
	case chunked:
		q.r.ContentLength = -1
		c.body.reset(true, 0, expect)
		q.r.Body = &c.body
	case length > 0:
		q.r.ContentLength = length
		c.body.reset(false, length, expect)
		q.r.Body = &c.body
	}
	return 0, nil
}

// checkTarget applies the rules every request target follows, whichever
// front end and protocol it came through (protoMajor is the request's HTTP
// major version): no control characters or spaces; origin-form ("/..."),
// "*" for OPTIONS only, and, for HTTP/1, absolute-form with an http or
// https scheme and no user information. CONNECT is refused. It returns the
// status to refuse the request with, or 0.
func checkTarget(method, target string, protoMajor int) int {
	switch {
	case !validTarget(target):
		return http.StatusBadRequest
	case method == http.MethodConnect:
		return http.StatusMethodNotAllowed
	case target[0] == '/':
		return 0
	case target == "*":
		if method != http.MethodOptions {
			return http.StatusBadRequest
		}
		return 0
	case protoMajor != 1:
		return http.StatusBadRequest
	}
	scheme, hier, ok := strings.Cut(target, "://")
	if !ok || !strings.EqualFold(scheme, "http") && !strings.EqualFold(scheme, "https") {
		return http.StatusBadRequest
	}
	host := hier
	if i := strings.IndexAny(hier, "/?"); i >= 0 {
		host = hier[:i]
	}
	if host == "" || strings.IndexByte(host, '@') >= 0 {
		return http.StatusBadRequest
	}
	return 0
}

// CheckRequest applies the rules of parseRequest that another server's
// parser may not (net/http's on the HTTPS listener: HTTP/2, and the
// HTTP/1.1 it parses itself): a token method, the target rules of
// checkTarget, header values without control characters, and at most
// MaxHeaderFields field lines, every repeated name counted. It returns the
// status to refuse the request with, or 0.
func CheckRequest(req *http.Request) int {
	if !validToken(req.Method) || req.Host != "" && !validTarget(req.Host) {
		return http.StatusBadRequest
	}
	if status := checkTarget(req.Method, req.RequestURI, req.ProtoMajor); status != 0 {
		return status
	}
	fields := 0
	for k, vv := range req.Header {
		if !validToken(k) {
			return http.StatusBadRequest
		}
		for _, v := range vv {
			if !validFieldValue(v) {
				return http.StatusBadRequest
			}
		}
		fields += len(vv)
	}
	if fields > MaxHeaderFields {
		return http.StatusRequestHeaderFieldsTooLarge
	}
	return 0
}

// validTarget reports whether a request target (or a Host) has no control
// characters or spaces.
func validTarget(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

// validFieldValue reports whether a header value has no control characters
// other than tab.
func validFieldValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// body reads the body of a request on an Conn: Content-Length bytes
// or a chunked body, whose trailer section is read and dropped.
type body struct {
	c *Conn
	// active is set when the request has a body.
	active  bool
	chunked bool
	cr      io.Reader // the chunked decoder, made on the first read
	remain  int64     // bytes left of a Content-Length body
	// done is set once the whole body is read.
	done bool
	err  error // a read error, returned again by later reads
	// expect is set while the client waits for a 100 Continue that was
	// not sent.
	expect bool
}

var _ io.ReadCloser = (*body)(nil)

func (b *body) reset(chunked bool, length int64, expect bool) {
	*b = body{c: b.c, active: chunked || length > 0, chunked: chunked, remain: length, expect: expect}
}

// Read reads the body. The first read sends the 100 Continue the client
// may wait for, unless the response has started. Each read renews the
// body's inactivity deadline (see Conn.bodyDeadline).
func (b *body) Read(p []byte) (int, error) {
	switch {
	case b.done:
		return 0, io.EOF
	case b.err != nil:
		return 0, b.err
	case len(p) == 0:
		return 0, nil
	}
	if b.expect && b.c.writeContinue() {
		b.expect = false
	}
	b.c.bodyDeadline()
	var n int
	var err error
	if b.chunked {
		if b.cr == nil {
			b.cr = httputil.NewChunkedReader(b.c.br)
		}
		n, err = b.cr.Read(p)
		if err == io.EOF {
			if terr := b.skipTrailers(); terr != nil {
				err = terr
			} else {
				b.done = true
			}
		}
	} else {
		if int64(len(p)) > b.remain {
			p = p[:b.remain]
		}
		n, err = b.c.br.Read(p)
		b.remain -= int64(n)
		switch {
		case b.remain == 0:
			b.done, err = true, io.EOF
		case err == io.EOF:
			err = io.ErrUnexpectedEOF
		}
	}
	if err != nil && err != io.EOF {
		b.err = err
	}
	return n, err
}

// Close does nothing: what is left of the body is read or the connection
// closed after the response (see Conn.discardBody).
func (b *body) Close() error { return nil }

// skipTrailers reads the trailer section after the last chunk; the router
// does not forward request trailers.
func (b *body) skipTrailers() error {
	for total := 0; ; {
		line, err := b.c.br.ReadSlice('\n')
		if err != nil {
			return unexpectedEOF(err)
		}
		if total += len(line); total > MaxHeadBytes {
			return errRequestHeadTooLarge
		}
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			return nil
		}
	}
}

var continueResponse = []byte("HTTP/1.1 100 Continue\r\n\r\n")

// writeContinue sends 100 Continue unless the response has started, and
// reports whether it did.
func (c *Conn) writeContinue() bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.w.started {
		return false
	}
	c.sendDeadline()
	_, err := c.rwc.Write(continueResponse)
	return err == nil
}
