package router

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// h1server is the router's own HTTP/1.1 server, used on the plain HTTP
// listener, where nearly all of a cluster's traffic arrives. It does what
// net/http's server does for the router, with less work per request: one
// goroutine per connection and no other per request (net/http starts a
// reader goroutine for each request to notice a client leaving; this
// server looks at the socket instead, only while a backend keeps a request
// waiting), request and response state reused across the requests of a
// connection, and response heads written without copying the header map.
//
// On the HTTPS listener it does the TLS handshake and serves the
// connections that chose HTTP/1.1, so that HTTP/1 follows one set of rules
// whatever the listener; those that chose HTTP/2 go to net/http's server
// through h2 (see connQueue).
//
// Its methods mirror http.Server's: Serve, Shutdown, Close,
// SetKeepAlivesEnabled.
type h1server struct {
	f                 *frontend
	log               *slog.Logger
	readHeaderTimeout time.Duration
	idleTimeout       time.Duration
	// idleSlack is how far short of idleTimeout an idle deadline may be
	// before it is moved (see waitRequest).
	idleSlack time.Duration
	// bodyTimeout and sendTimeout are the inactivity deadlines of reading
	// a request body and writing a response (Config.ClientBodyTimeout and
	// SendTimeout); each moves only once it is its slack short.
	bodyTimeout, bodySlack time.Duration
	sendTimeout, sendSlack time.Duration

	// limit counts the connections against Config.MaxConns.
	limit *connLimit
	// tlsConfig is set on the HTTPS listener; h2 then receives the
	// connections that negotiated HTTP/2.
	tlsConfig *tls.Config
	h2        *connQueue

	// ctx is the context of every request; Close cancels it.
	ctx    context.Context
	cancel context.CancelFunc

	keepAlivesOff atomic.Bool
	inShutdown    atomic.Bool

	mu    sync.Mutex
	ln    net.Listener
	conns map[*h1conn]struct{}
}

var _ httpServer = (*h1server)(nil)

// newH1Server returns a server for the plain HTTP listener, or for the
// HTTPS one when tlsConfig is set, in which case h2 receives the
// connections that negotiate HTTP/2.
func newH1Server(f *frontend, cfg Config, log *slog.Logger, limit *connLimit, tlsConfig *tls.Config, h2 *connQueue) *h1server {
	ctx, cancel := context.WithCancel(context.Background())
	return &h1server{
		f: f, log: log,
		readHeaderTimeout: cfg.ReadHeaderTimeout,
		idleTimeout:       cfg.ClientIdleTimeout,
		idleSlack:         slack(cfg.ClientIdleTimeout),
		bodyTimeout:       cfg.ClientBodyTimeout,
		bodySlack:         slack(cfg.ClientBodyTimeout),
		sendTimeout:       cfg.SendTimeout,
		sendSlack:         slack(cfg.SendTimeout),
		limit:             limit,
		tlsConfig:         tlsConfig,
		h2:                h2,
		ctx:               ctx,
		cancel:            cancel,
		conns:             map[*h1conn]struct{}{},
	}
}

// slack is how far short of an inactivity timeout its deadline may be
// before it is moved: a tenth, at most a second. Moving a deadline is a
// timer update in the runtime, which a busy connection would otherwise pay
// for on every read or write.
func slack(timeout time.Duration) time.Duration { return min(time.Second, timeout/10) }

// Serve accepts connections on ln until Shutdown or Close, which make it
// return http.ErrServerClosed. It may be called once.
func (s *h1server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.inShutdown.Load() {
		s.mu.Unlock()
		ln.Close()
		return http.ErrServerClosed
	}
	s.ln = ln
	s.mu.Unlock()
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.inShutdown.Load() {
				return http.ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Out of file descriptors and the like: wait and go on, as
			// net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Warn("router accept failed; retrying", "err", err, "delay", delay)
			select {
			case <-time.After(delay):
			case <-s.ctx.Done():
				return http.ErrServerClosed
			}
			continue
		}
		delay = 0
		if !s.limit.acquire() {
			refuse(nc, s.tlsConfig == nil)
			continue
		}
		if s.tlsConfig != nil {
			nc = tls.Server(nc, s.tlsConfig)
		}
		if c := s.track(nc); c != nil {
			go c.serve()
		}
	}
}

// track registers a new connection, or closes it and returns nil when the
// server is shutting down.
func (s *h1server) track(nc net.Conn) *h1conn {
	c := newH1Conn(s, nc)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inShutdown.Load() {
		nc.Close()
		s.limit.release()
		return nil
	}
	s.conns[c] = struct{}{}
	return c
}

func (s *h1server) untrack(c *h1conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// SetKeepAlivesEnabled(false) makes every response close its connection
// and closes the idle connections, as net/http's does.
func (s *h1server) SetKeepAlivesEnabled(on bool) {
	s.keepAlivesOff.Store(!on)
	if !on {
		s.closeIdle()
	}
}

func (s *h1server) keepAlives() bool { return !s.keepAlivesOff.Load() && !s.inShutdown.Load() }

// Shutdown stops accepting, closes idle connections, and waits for the
// others to finish their request and close, until ctx is done.
func (s *h1server) Shutdown(ctx context.Context) error {
	s.inShutdown.Store(true)
	s.closeListener()
	wait := time.Millisecond
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		if s.closeIdle() {
			s.cancel()
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			wait = min(2*wait, 100*time.Millisecond)
			t.Reset(wait)
		}
	}
}

// Close closes the listener and every connection at once, and ends the
// waits of the requests in flight.
func (s *h1server) Close() error {
	s.inShutdown.Store(true)
	s.closeListener()
	s.cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.state.Store(connClosed)
		c.rwc.Close()
	}
	return nil
}

func (s *h1server) closeListener() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		s.ln.Close()
	}
}

// closeIdle closes the connections that wait for a request and reports
// whether none is left.
func (s *h1server) closeIdle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.state.CompareAndSwap(connIdle, connClosed) {
			c.rwc.Close()
		}
	}
	return len(s.conns) == 0
}

// Connection states. A connection is active from the first byte of a
// request to the end of its response, and idle while it waits for the
// next; Shutdown closes only idle ones.
const (
	connActive int32 = iota
	connIdle
	connClosed
)

// Buffer sizes of a client connection. A request head up to maxHeadBytes
// is read; one that does not fit the read buffer is assembled in a
// separate buffer.
const (
	clientReadBuffer  = 8 << 10
	clientWriteBuffer = 4 << 10
	maxHeadBytes      = 64 << 10
	maxHeaderFields   = 256
	// maxDiscard is how much of a request body the router reads and drops
	// after answering without it, to keep the connection.
	maxDiscard = 256 << 10
)

// h1conn is one client connection of an h1server. Its request, response
// writer, body reader and exchange are reused for each request.
type h1conn struct {
	s     *h1server
	rwc   net.Conn
	raw   syscall.RawConn // nil when the connection has no file descriptor
	br    *bufio.Reader
	bw    *bufio.Writer
	state atomic.Int32

	remoteAddr string
	// idleUntil is the idle deadline in place on rwc; zero when the read
	// deadline is another one. bodyUntil is likewise the body deadline.
	idleUntil time.Time
	bodyUntil time.Time
	// sendUntil is the write deadline in place on rwc.
	sendUntil time.Time
	// released is set once the connection is counted out of the limit.
	released atomic.Bool
	// vals holds the header values of the current request; the request's
	// header map points into it.
	vals []string
	req  h1request
	w    h1writer
	body h1body
	x    exchange

	// wmu orders a 100 Continue written by the body reader against the
	// response head (see h1body.Read).
	wmu sync.Mutex
}

func newH1Conn(s *h1server, nc net.Conn) *h1conn {
	c := &h1conn{s: s, rwc: nc, remoteAddr: nc.RemoteAddr().String()}
	sock := nc
	if tc, ok := nc.(*tls.Conn); ok {
		sock = tc.NetConn() // for alive: TLS records waiting count as open
	}
	if sc, ok := sock.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			c.raw = raw
		}
	}
	rw := socketIO(nc)
	c.br = bufio.NewReaderSize(rw, clientReadBuffer)
	c.bw = bufio.NewWriterSize(rw, clientWriteBuffer)
	c.req.r.Header = http.Header{}
	c.w.c = c
	c.w.h = http.Header{}
	c.body.c = c
	return c
}

// serve reads and answers requests until the connection ends. A panic
// while serving ends the connection, not the process, as with net/http.
func (c *h1conn) serve() {
	hijacked, linger, handedOff := false, false, false
	defer func() {
		if v := recover(); v != nil && v != http.ErrAbortHandler {
			c.s.log.Error("router panic serving a request", "remote", c.remoteAddr, "panic", v, "stack", string(debug.Stack()))
		}
		c.s.untrack(c)
		switch {
		case hijacked, handedOff:
			return // closed and counted out by their new owner
		case linger:
			c.lingerClose()
		default:
			c.rwc.Close()
		}
		c.release()
	}()
	if tc, ok := c.rwc.(*tls.Conn); ok {
		var ok bool
		if handedOff, ok = c.handshake(tc); !ok || handedOff {
			return
		}
	}
	for {
		if !c.waitRequest() {
			return
		}
		if status, err := c.readRequest(); err != nil {
			if status != 0 {
				c.writeError(status)
				linger = true
			}
			return
		}
		var keep bool
		keep, hijacked = c.handle()
		if !keep {
			// What the client still sends of its request is read and
			// dropped for a moment, so that closing with it unread does
			// not reset the connection before the client has read the
			// response.
			linger = c.body.active && !c.body.done
			return
		}
	}
}

// release counts the connection out of the limit, once.
func (c *h1conn) release() {
	if c.released.CompareAndSwap(false, true) {
		c.s.limit.release()
	}
}

// handshake does the TLS handshake within the read header timeout. A
// connection that negotiated HTTP/2 goes to net/http's server (handedOff);
// ok is false when the handshake failed.
func (c *h1conn) handshake(tc *tls.Conn) (handedOff, ok bool) {
	tc.SetDeadline(time.Now().Add(c.s.readHeaderTimeout))
	if err := tc.HandshakeContext(c.s.ctx); err != nil {
		return false, false
	}
	tc.SetDeadline(time.Time{})
	if tc.ConnectionState().NegotiatedProtocol != "h2" || c.s.h2 == nil {
		return false, true
	}
	c.s.untrack(c)
	if !c.s.h2.deliver(tc) {
		tc.Close()
		c.release()
	}
	return true, true
}

// lingerTime bounds lingerClose.
const lingerTime = 500 * time.Millisecond

// lingerClose closes the connection after the response: it ends the
// sending side, reads and drops what the client still sends until it
// closes its side or for lingerTime, then closes. A kernel closing a
// socket with unread data resets the connection, and the client could lose
// the response with it (net/http waits likewise, nginx's lingering_close
// reads likewise).
func (c *h1conn) lingerClose() {
	defer c.rwc.Close()
	cw, ok := c.rwc.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	c.rwc.SetReadDeadline(time.Now().Add(lingerTime))
	buf := bufPool.Get().(*[]byte)
	defer bufPool.Put(buf)
	for {
		if _, err := c.rwc.Read(*buf); err != nil {
			return
		}
	}
}

// waitRequest waits, idle, for the first byte of the next request. It
// reports false when the connection is to end: the client closed it or
// was idle too long, or the server is shutting down. The idle deadline is
// moved only once it is more than idleSlack short of the idle timeout,
// which saves a timer update per request on a busy connection.
func (c *h1conn) waitRequest() bool {
	if c.br.Buffered() > 0 {
		return true // a pipelined request
	}
	if !c.state.CompareAndSwap(connActive, connIdle) || c.s.inShutdown.Load() {
		return false
	}
	if want := time.Now().Add(c.s.idleTimeout); c.idleUntil.IsZero() || want.Sub(c.idleUntil) > c.s.idleSlack {
		c.idleUntil, c.bodyUntil = want, time.Time{}
		c.rwc.SetReadDeadline(want)
	}
	if _, err := c.br.Peek(1); err != nil {
		return false
	}
	return c.state.CompareAndSwap(connIdle, connActive)
}

// handle answers the request read into c.req. It reports whether the
// connection can carry another request, and whether the exchange took the
// connection over (an upgrade).
func (c *h1conn) handle() (keep, hijacked bool) {
	req := &c.req
	c.w.reset(req)
	c.x = exchange{w: &c.w, req: &req.r, ctx: c.s.ctx, peer: c}
	c.s.f.serve(&c.x)
	switch {
	case c.w.hijacked:
		c.s.untrack(c)
		return false, true
	case c.x.abort:
		return false, false
	}
	c.w.finish()
	if c.w.closeAfter || c.w.err != nil {
		return false, false
	}
	return c.discardBody(), false
}

// discardBody reads what the exchange left of the request body, up to
// maxDiscard, so that the connection can carry the next request. A client
// still waiting for 100 Continue may never send its body: the connection
// closes instead.
func (c *h1conn) discardBody() bool {
	b := &c.body
	if !b.active || b.done {
		return true
	}
	if b.expect || b.err != nil {
		return false
	}
	buf := bufPool.Get().(*[]byte)
	defer bufPool.Put(buf)
	for total := 0; total <= maxDiscard; {
		n, err := b.Read(*buf)
		total += n
		if b.done {
			return true
		}
		if err != nil {
			return false
		}
	}
	return false
}

// setReadDeadline sets a read deadline other than the idle and body ones.
func (c *h1conn) setReadDeadline(t time.Time) {
	c.idleUntil, c.bodyUntil = time.Time{}, time.Time{}
	c.rwc.SetReadDeadline(t)
}

// bodyDeadline renews the inactivity deadline of reading a request body
// (Config.ClientBodyTimeout); it runs before each read of the body.
func (c *h1conn) bodyDeadline() {
	if want := time.Now().Add(c.s.bodyTimeout); want.Sub(c.bodyUntil) > c.s.bodySlack {
		c.idleUntil, c.bodyUntil = time.Time{}, want
		c.rwc.SetReadDeadline(want)
	}
}

// sendDeadline renews the inactivity deadline of writing to the client
// (Config.SendTimeout); it runs before each write that may reach the
// socket.
func (c *h1conn) sendDeadline() {
	if want := time.Now().Add(c.s.sendTimeout); want.Sub(c.sendUntil) > c.s.sendSlack {
		c.sendUntil = want
		c.rwc.SetWriteDeadline(want)
	}
}

// alive reports whether the client is still there: its socket is neither
// closed nor reset (it may hold a pipelined request). It peeks without
// blocking and without consuming anything.
func (c *h1conn) alive() bool {
	if c.raw == nil {
		return true
	}
	alive := true
	c.raw.Control(func(fd uintptr) { alive = peekOpen(fd) })
	return alive
}

// writeError answers a request that could not be read and closes the
// connection.
func (c *h1conn) writeError(status int) {
	text := http.StatusText(status)
	c.sendDeadline()
	bw := c.bw
	bw.WriteString("HTTP/1.1 ")
	bw.WriteString(statusLine(status))
	bw.WriteString("\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: ")
	bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(len(text)), 10))
	bw.WriteString("\r\n\r\n")
	bw.WriteString(text)
	bw.Flush()
}
