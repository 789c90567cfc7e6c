package router

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gantryhq/gantry/router/internal/h1"
)

// maxAttempts bounds the attempts of one request, retries on stale pooled
// connections included.
const maxAttempts = 8

// smallBody is the largest request body read from the client before the
// first attempt and sent with the head: it can be sent again when an attempt
// fails before a byte went upstream. Larger bodies and bodies of unknown
// length are streamed by a goroutine of their own while the response is
// awaited, and are never sent twice. It is the size of bufPool's buffers.
const smallBody = 32 << 10

// frontend serves the requests of one listener.
type frontend struct {
	r     *Router
	tls   bool
	proto string // X-Forwarded-Proto
	port  string // X-Forwarded-Port
}

// exchange is the state of one request, filled in as it goes and written to
// the access log at the end.
type exchange struct {
	w   http.ResponseWriter
	req *http.Request
	// ctx is done when the client has gone (net/http's server) or when the
	// router closes its connections (the router's HTTP/1.1 server, whose
	// clients are watched through peer instead).
	ctx context.Context
	// peer is the client connection of the router's own HTTP/1.1 server;
	// nil under net/http.
	peer     *h1.Conn
	start    time.Time
	now      int64 // start on the router's clock
	id       string
	idVal    [1]string // backs idHeader
	app      string
	status   int
	bytes    int64
	upstream time.Duration
	backend  string
	// mode is how the request body is framed upstream; body holds a small
	// body read ahead (see smallBody).
	mode bodyKind
	body []byte
	err  error
	// abort is set when a response was cut short by the backend: the
	// client connection is reset so the client sees the truncation.
	abort bool
}

// connHandler serves the requests of one connection of the router's
// HTTP/1 server; its exchange is reused from one request to the next.
type connHandler struct {
	f *frontend
	x exchange
}

var _ h1.Handler = (*connHandler)(nil)

func (f *frontend) newConnHandler(*h1.Conn) h1.Handler { return &connHandler{f: f} }

func (h *connHandler) ServeH1(c *h1.Conn) (abort bool) {
	h.x = exchange{w: c.ResponseWriter(), req: c.Request(), ctx: c.Context(), peer: c}
	h.f.serve(&h.x)
	return h.x.abort
}

// ServeHTTP serves the requests of net/http's server (HTTP/2 on the HTTPS
// listener).
func (f *frontend) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	cfg := &f.r.cfg
	d := &h2Deadlines{
		ResponseWriter: w, rc: http.NewResponseController(w),
		bodyTimeout: cfg.ClientBodyTimeout, bodySlack: h1.Slack(cfg.ClientBodyTimeout),
		sendTimeout: cfg.SendTimeout, sendSlack: h1.Slack(cfg.SendTimeout),
	}
	if req.Body != nil && req.Body != http.NoBody {
		d.body = req.Body
		req.Body = h2Body{d}
	}
	x := exchange{w: d, req: req, ctx: req.Context()}
	f.serve(&x)
	if x.abort {
		panic(http.ErrAbortHandler)
	}
}

// serve answers the request of x; its w, req and ctx (and peer) are set.
// When it sets x.abort the client connection must be closed at once.
func (f *frontend) serve(x *exchange) {
	r, req := f.r, x.req
	x.start = time.Now()
	x.now = int64(x.start.Sub(r.base))
	x.id = requestID(req)
	if x.peer == nil {
		// The router's own server checked the request as it parsed it;
		// net/http's gets the same rules here.
		if status := h1.CheckRequest(req); status != 0 {
			if req.ProtoMajor == 1 {
				x.w.Header()["Connection"] = []string{"close"}
			}
			x.page(status, refusedPage(status))
			r.finish(x)
			return
		}
	}
	if !f.tls && f.challenge(x) {
		r.finish(x)
		return
	}
	host, ok := parseHost(req.Host)
	var tgt *target
	var tab *table
	if ok {
		tab = r.table.Load()
		tgt = tab.lookup(host)
	}
	switch {
	case !ok:
		x.page(http.StatusBadRequest, badHostPage)
	case tgt == nil:
		x.page(http.StatusNotFound, notFoundPage(host))
	default:
		x.app = tgt.route.App
		switch {
		case !f.tls && redirectsToHTTPS(&tgt.route.Route, tab.cert(host) != nil, req):
			f.redirect(x, host)
		case len(tgt.backends) == 0:
			x.page(http.StatusServiceUnavailable, noInstancePage(tgt.route.App))
		default:
			f.forward(x, tgt)
		}
	}
	r.finish(x)
}

// finish records the end of the request of x: the app's counters and the
// access log.
func (r *Router) finish(x *exchange) {
	if x.app != "" && r.stats != nil {
		r.stats.observe(x.app, x.status, x.bytes, time.Since(x.start))
	}
	r.access.log(x)
}

// left returns an error once the client has gone or the router is closing
// its connections, nil before. It is checked when an attempt fails and
// every cancelCheck while a backend keeps the request waiting.
func (x *exchange) left() error {
	if err := x.ctx.Err(); err != nil {
		return err
	}
	if x.peer != nil && !x.peer.Alive() {
		return errClientLeft
	}
	return nil
}

var errClientLeft = errors.New("client closed the connection")

// idHeader returns the request ID as a header value, without allocating.
func (x *exchange) idHeader() []string {
	x.idVal[0] = x.id
	return x.idVal[:]
}

// forward sends the request to the target's backends until one answers.
//
// The retry rule: a request goes to another attempt only when nothing of it
// reached a backend (the connection was refused or failed, or a pooled
// connection was found dead before a byte was written), or when it is
// idempotent and bodiless (GET, HEAD, OPTIONS, TRACE) and the connection
// failed before any byte of the response came back. A request with a body
// is never sent twice once its first byte went upstream, and nothing is
// retried once the response has started. The router's client never retries
// on its own: this is the only retry.
//
// A pooled connection is checked before it is used (see backend.get), but
// the backend may still close it in the meantime; one that turns out dead
// has the backend's other idle connections checked before the retry.
func (f *frontend) forward(x *exchange, tgt *target) {
	req := x.req
	x.mode = bodyMode(req)
	if x.mode == bodyLength && req.ContentLength <= smallBody {
		bp := bufPool.Get().(*[]byte)
		defer bufPool.Put(bp)
		body := (*bp)[:req.ContentLength]
		if _, err := io.ReadFull(req.Body, body); err != nil {
			x.clientError(err)
			return
		}
		x.body = body
	}
	var triedBuf [maxAttempts]*backend
	tried := triedBuf[:0]
	upgrade := isUpgrade(req)
	for attempts := 0; attempts < maxAttempts; {
		b := pick(tgt.backends, tried, x.now)
		if b == nil {
			break
		}
		// A backend that drains left the routing table after this request
		// looked its target up: the request goes by the current table
		// instead. The check comes after the in-flight count is raised, so
		// once a drained backend shows none in flight it never gets another
		// request (a deregistered instance can stop at once).
		b.inflight.Add(1)
		if b.draining.Load() {
			b.inflight.Add(-1)
			tried = append(tried, b)
			if host, ok := parseHost(x.req.Host); ok {
				if cur := f.r.table.Load().lookup(host); cur != nil {
					tgt = cur
				}
			}
			continue
		}
		attempts++
		var retry, blame bool
		func() {
			defer b.inflight.Add(-1)
			retry, blame = f.attempt(x, b, upgrade)
		}()
		if !retry {
			return
		}
		if blame {
			tried = append(tried, b)
		}
	}
	x.page(http.StatusBadGateway, badGatewayPage(x.app))
}

// attempt sends the request to b once; b's in-flight count is raised
// during it (see forward). It reports retry when the request may be sent
// again, and blame when b itself failed, so that it is not chosen again for
// this request.
func (f *frontend) attempt(x *exchange, b *backend, upgrade bool) (retry, blame bool) {
	r, req := f.r, x.req
	x.backend = b.addr

	replayable := idempotent(req)
	c := b.get(x.now)
	if c == nil {
		var err error
		if c, err = b.dial(x.ctx); err != nil {
			if left := x.left(); left != nil {
				x.clientGone(left)
				return false, false
			}
			b.failed(r.now())
			x.err = err
			return true, true
		}
	}
	sent := time.Now()
	bodyDone, err := f.send(x, c, upgrade, sent)
	if err != nil {
		c.close()
		if left := x.left(); left != nil {
			x.clientGone(left)
			return false, false
		}
		if !c.reused {
			b.failed(r.now())
		}
		x.err = err
		if c.written == 0 || replayable {
			if c.reused {
				b.closeDead()
			}
			return true, !c.reused
		}
		x.page(http.StatusBadGateway, badGatewayPage(x.app))
		return false, false
	}

	h := x.w.Header()
	hd, err := f.awaitHead(x, c, h, sent, bodyDone != nil)
	if err != nil {
		c.close()
		var bodyErr error
		if bodyDone != nil {
			bodyErr = <-bodyDone // see finishBody
		}
		var ce *copyError
		left := x.left()
		switch {
		case left != nil:
			x.clientGone(left)
		case errors.As(bodyErr, &ce) && ce.client:
			x.clientError(bodyErr)
		case isTimeout(err) || isTimeout(bodyErr):
			x.err = err
			if isTimeout(bodyErr) {
				x.err = bodyErr
			}
			x.page(http.StatusGatewayTimeout, timeoutPage(x.app))
		case bodyDone == nil && c.read == 0 && replayable:
			if c.reused {
				b.closeDead()
			} else {
				b.failed(r.now())
			}
			x.err = err
			return true, !c.reused
		default:
			if !c.reused && c.read == 0 {
				b.failed(r.now())
			}
			x.err = err
			x.page(http.StatusBadGateway, badGatewayPage(x.app))
		}
		return false, false
	}
	x.upstream = time.Since(sent)
	x.err = nil
	b.succeeded()

	if hd.Status == http.StatusSwitchingProtocols {
		// A request body still streaming goes up whole before the switch.
		var bodyErr error
		if bodyDone != nil {
			bodyErr = <-bodyDone
		}
		if upgrade && bodyErr == nil {
			f.splice(x, c, &hd)
			return false, false
		}
		c.close()
		clear(h)
		var ce *copyError
		switch {
		case errors.As(bodyErr, &ce) && ce.client:
			x.clientError(bodyErr)
		case bodyErr != nil:
			x.err = bodyErr
			x.page(http.StatusBadGateway, badGatewayPage(x.app))
		default:
			x.err = errors.New("backend switched protocols unasked")
			x.page(http.StatusBadGateway, badGatewayPage(x.app))
		}
		return false, false
	}

	if _, ok := h["Content-Type"]; !ok {
		h["Content-Type"] = nil // no sniffing: the client gets what the backend sent
	}
	h["X-Request-Id"] = x.idHeader()
	switch {
	case hd.Status == http.StatusNoContent:
		delete(h, "Content-Length") // RFC 9110, 8.6: never on a 204
	case hd.Status == http.StatusNotModified && x.peer == nil:
		// The Content-Length of a 304 tells the size of the
		// representation, but net/http's server takes it for the size of
		// the body and cuts the HTTP/2 stream short when none comes.
		delete(h, "Content-Length")
	}
	x.w.WriteHeader(hd.Status)
	x.status = hd.Status
	n, err := copyResponse(x, c, &hd)
	x.bytes = n
	reuse := hd.KeepAlive && err == nil
	if bodyDone != nil {
		reuse = finishBody(c, bodyDone) && reuse
	}
	if reuse {
		b.put(c, r.now())
	} else {
		c.close()
	}
	if err != nil {
		x.err = err
		var ce *copyError
		if !errors.As(err, &ce) || !ce.client {
			x.abort = true
		}
	}
	return false, false
}

// awaitHead reads the response head from c. Its reads carry a deadline at
// most cancelCheck away, renewed while the client is there and the response
// header timeout has not passed; for a streamed request body that timeout
// counts from the end of the body.
func (f *frontend) awaitHead(x *exchange, c *upstreamConn, h http.Header, sent time.Time, streaming bool) (h1.ResponseHead, error) {
	timeout := f.r.cfg.ResponseHeaderTimeout
	first := min(timeout, cancelCheck)
	c.readBy(sent.Add(first), first/10)
	for {
		hd, err := h1.ReadResponseHead(c.br, h, x.req.Method)
		if err == nil || !isTimeout(err) || x.left() != nil {
			return hd, err
		}
		var waited time.Duration
		if !streaming {
			waited = time.Since(sent)
		} else if at := c.bodySentAt.Load(); at != 0 {
			waited = time.Duration(f.r.now() - at)
		}
		if waited >= timeout {
			return hd, err
		}
		c.readBy(time.Now().Add(min(timeout-waited, cancelCheck)), 0)
	}
}

// send writes the request to c. A small body read ahead goes with the
// head; a larger or unknown one is copied by a goroutine, whose result
// arrives on the returned channel. Writes carry a deadline of the response
// header timeout, renewed for each piece of a streamed body, so a backend
// that stops taking the request is given up on.
//
// A streamed body that cannot be sent whole, because the client's body
// failed or the backend took nothing for that long, ends the exchange: the
// goroutine closes c, so that awaitHead returns at once instead of waiting
// for a response the backend cannot give.
func (f *frontend) send(x *exchange, c *upstreamConn, upgrade bool, sent time.Time) (<-chan error, error) {
	req, mode := x.req, x.mode
	timeout := f.r.cfg.ResponseHeaderTimeout
	c.writeBy(sent.Add(timeout), timeout/10)
	f.writeHead(c.bw, x, upgrade, mode)
	switch {
	case mode == bodyNone:
		return nil, c.bw.Flush()
	case x.body != nil:
		c.bw.Write(x.body)
		return nil, c.bw.Flush()
	}
	if err := c.bw.Flush(); err != nil {
		return nil, err
	}
	if fd, ok := x.w.(interface{ EnableFullDuplex() error }); ok {
		fd.EnableFullDuplex()
	}
	c.bodySentAt.Store(0)
	done := make(chan error, 1)
	go func() {
		err := writeBody(c, req.Body, mode == bodyChunked, timeout)
		var ce *copyError
		switch {
		case err == nil:
			c.bodySentAt.Store(f.r.now())
		case errors.As(err, &ce) && ce.client || isTimeout(err):
			c.close()
		}
		done <- err
	}()
	return done, nil
}

// finishBody waits for the goroutine streaming the request body once the
// response is complete, and reports whether the body went up whole. A
// backend that answered before reading the whole body is done with the
// request: its connection is closed, which ends the goroutine at its next
// write. The handler must not return before the goroutine, or the server
// would abort the goroutine's pending read of the client's body and lose
// track of where the next request starts.
func finishBody(c *upstreamConn, done <-chan error) bool {
	select {
	case err := <-done:
		return err == nil
	default:
	}
	c.close()
	<-done
	return false
}

type bodyKind int

const (
	bodyNone bodyKind = iota
	bodyLength
	bodyChunked
)

func bodyMode(req *http.Request) bodyKind {
	switch {
	case req.Body == nil || req.Body == http.NoBody || req.ContentLength == 0:
		return bodyNone
	case req.ContentLength > 0:
		return bodyLength
	}
	return bodyChunked
}

// writeBody copies a request body to c (chunk-encoded when chunked) and
// flushes. Each flush may take up to timeout. A failed read of the
// client's body is a copyError with client set.
func writeBody(c *upstreamConn, body io.Reader, chunked bool, timeout time.Duration) error {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	bw := c.bw
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			if chunked {
				bw.Write(strconv.AppendUint(bw.AvailableBuffer(), uint64(n), 16))
				bw.WriteString("\r\n")
			}
			bw.Write(buf[:n])
			if chunked {
				bw.WriteString("\r\n")
			}
			c.writeBy(time.Now().Add(timeout), timeout/10)
			if err := bw.Flush(); err != nil {
				return &copyError{err: err}
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return &copyError{client: true, err: rerr}
		}
	}
	if chunked {
		bw.WriteString("0\r\n\r\n")
	}
	c.writeBy(time.Now().Add(timeout), timeout/10)
	if err := bw.Flush(); err != nil {
		return &copyError{err: err}
	}
	return nil
}

// writeHead writes the request line and headers for the backend: the
// client's headers minus the hop-by-hop ones (Connection and the headers it
// names, Keep-Alive, Proxy-*, TE, Trailer, Transfer-Encoding, Upgrade unless
// upgrading), Expect (the router's server already answered it) and the
// client's forwarding headers (see ownRequestHeader), then the router's
// X-Forwarded-For (the client's address only), X-Forwarded-Proto,
// X-Forwarded-Port, X-Request-Id and X-Request-Start.
func (f *frontend) writeHead(bw *bufio.Writer, x *exchange, upgrade bool, mode bodyKind) {
	req := x.req
	bw.WriteString(req.Method)
	bw.WriteByte(' ')
	uri := req.RequestURI
	if uri == "" || uri[0] != '/' && uri != "*" {
		uri = req.URL.RequestURI()
	}
	bw.WriteString(uri)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(req.Host)
	bw.WriteString("\r\n")

	var listedBuf [8]string
	listed := listedBuf[:0]
	for _, v := range req.Header["Connection"] {
		for v != "" {
			var tok string
			tok, v, _ = strings.Cut(v, ",")
			if tok = strings.TrimSpace(tok); tok != "" {
				listed = append(listed, tok)
			}
		}
	}
	for k, vv := range req.Header {
		if ownRequestHeader(k) || isListed(listed, k) {
			continue
		}
		for _, v := range vv {
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	if upgrade {
		bw.WriteString("Connection: Upgrade\r\n")
		for _, v := range req.Header["Upgrade"] {
			bw.WriteString("Upgrade: ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	bw.WriteString("X-Forwarded-For: ")
	bw.WriteString(clientIP(req.RemoteAddr))
	bw.WriteString("\r\nX-Forwarded-Proto: ")
	bw.WriteString(f.proto)
	bw.WriteString("\r\nX-Forwarded-Port: ")
	bw.WriteString(f.port)
	bw.WriteString("\r\nX-Request-Id: ")
	bw.WriteString(x.id)
	bw.WriteString("\r\nX-Request-Start: t=")
	bw.Write(strconv.AppendInt(bw.AvailableBuffer(), x.start.UnixMilli(), 10))
	bw.WriteString("\r\n")
	switch mode {
	case bodyLength:
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(bw.AvailableBuffer(), req.ContentLength, 10))
		bw.WriteString("\r\n")
	case bodyChunked:
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	default:
		if req.Method == http.MethodPost || req.Method == http.MethodPut || req.Method == http.MethodPatch {
			bw.WriteString("Content-Length: 0\r\n")
		}
	}
	bw.WriteString("\r\n")
}

// ownRequestHeader reports the headers writeHead does not copy from the
// client: hop-by-hop ones, those the router writes itself, and the
// forwarding headers an app could take for the router's (Forwarded,
// X-Real-Ip and every X-Forwarded-*), so that what an app reads there
// comes from the router.
func ownRequestHeader(k string) bool {
	switch k {
	case "Connection", "Keep-Alive", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
		"Host", "Content-Length", "Expect", "X-Request-Id", "X-Request-Start",
		"Forwarded", "X-Real-Ip":
		return true
	}
	return strings.HasPrefix(k, "Proxy-") || strings.HasPrefix(k, "X-Forwarded-")
}

func isListed(listed []string, k string) bool {
	for _, t := range listed {
		if strings.EqualFold(t, k) {
			return true
		}
	}
	return false
}

// isUpgrade reports an HTTP/1.1 request asking to switch protocols
// (WebSocket and others).
func isUpgrade(req *http.Request) bool {
	if req.ProtoMajor != 1 || len(req.Header["Upgrade"]) == 0 {
		return false
	}
	for _, v := range req.Header["Connection"] {
		if h1.HasToken(v, "upgrade") {
			return true
		}
	}
	return false
}

// idempotent reports a request that may be sent twice: a safe method and
// no body.
func idempotent(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return req.Body == nil || req.Body == http.NoBody
	}
	return false
}

func clientIP(remote string) string {
	if host, _, err := net.SplitHostPort(remote); err == nil {
		return host
	}
	return remote
}

// requestID returns the client's X-Request-Id when it is 1 to 200 visible
// ASCII characters, and a new random UUID otherwise.
func requestID(req *http.Request) string {
	if v := req.Header["X-Request-Id"]; len(v) > 0 && validRequestID(v[0]) {
		return v[0]
	}
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(b[8:], rand.Uint64())
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}

func validRequestID(s string) bool {
	if s == "" || len(s) > 200 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// redirect answers an https_only route on the HTTP listener with a 308 to
// the same URL on the HTTPS listener.
func (f *frontend) redirect(x *exchange, host string) {
	uri := x.req.RequestURI
	if uri == "" || uri[0] != '/' {
		uri = x.req.URL.RequestURI()
	}
	h := x.w.Header()
	h["Location"] = []string{"https://" + host + f.r.httpsPortSuffix + uri}
	h["X-Request-Id"] = x.idHeader()
	x.w.WriteHeader(http.StatusPermanentRedirect)
	x.status = http.StatusPermanentRedirect
}

// clientGone records that the client went away before the response.
func (x *exchange) clientGone(err error) {
	x.status = statusClientClosed
	x.err = err
}

// clientError answers a failure to read the client's request body: 400,
// or 408 when the client was too slow.
func (x *exchange) clientError(err error) {
	x.err = err
	if x.left() != nil {
		x.status = statusClientClosed
		return
	}
	if isTimeout(err) {
		// The client sent nothing of its body for ClientBodyTimeout.
		x.w.Header()["Connection"] = []string{"close"}
		x.page(http.StatusRequestTimeout, refusedPage(http.StatusRequestTimeout))
		return
	}
	x.page(http.StatusBadRequest, badBodyPage)
}

// statusClientClosed is logged for requests whose client left before the
// response (nginx's 499); it is never sent.
const statusClientClosed = 499
