package h1

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

// Config configures a Server. Every timeout is required (non-zero).
type Config struct {
	// ReadHeaderTimeout bounds reading a request head and the TLS
	// handshake.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes a keep-alive connection idle that long, give or
	// take a tenth, at most a second.
	IdleTimeout time.Duration
	// BodyTimeout and SendTimeout are the inactivity deadlines of reading
	// a request body and of writing a response, renewed on progress
	// (give or take a tenth, at most a second).
	BodyTimeout, SendTimeout time.Duration
	// Limit counts the connections in and out; nil means no limit.
	Limit Limiter
	// TLS, when set, makes the server do a TLS handshake on each
	// connection; the connections that negotiate HTTP/2 are then handed
	// to H2, which reports whether it took them.
	TLS *tls.Config
	H2  func(*tls.Conn) bool
	// Logger receives the server's logs; required.
	Logger *slog.Logger
}

// Limiter caps the connections open at once.
type Limiter interface {
	// Acquire counts a new connection in, or reports false when there is
	// no room for it.
	Acquire() bool
	// Release counts a connection out.
	Release()
}

// Handler serves the requests of one connection, made by the Server's
// newHandler for each connection so that it can reuse its state from one
// request to the next.
type Handler interface {
	// ServeH1 answers the request of c (c.Request, c.ResponseWriter). It
	// reports abort when the connection must be closed at once, the
	// response unfinished (a backend cut it short).
	ServeH1(c *Conn) (abort bool)
}

// Server is an HTTP/1.1 server built for a proxy's hot path, used by the
// router on both listeners. It does what net/http's server does for the
// router, with less work per request: one goroutine per connection and no
// other per request (net/http starts a reader goroutine for each request
// to notice a client leaving; this server looks at the socket instead,
// only when asked, see Conn.Alive), request and response state reused
// across the requests of a connection, and response heads written without
// copying the header map.
//
// With Config.TLS it does the TLS handshake and serves the connections
// that chose HTTP/1.1, so that HTTP/1 follows one set of rules whatever
// the listener; those that chose HTTP/2 go to Config.H2.
//
// Its methods mirror http.Server's: Serve, Shutdown, Close,
// SetKeepAlivesEnabled.
type Server struct {
	newHandler        func(*Conn) Handler
	log               *slog.Logger
	readHeaderTimeout time.Duration
	idleTimeout       time.Duration
	// idleSlack is how far short of idleTimeout an idle deadline may be
	// before it is moved (see waitRequest).
	idleSlack time.Duration
	// bodyTimeout and sendTimeout are the inactivity deadlines of reading
	// a request body and writing a response; each moves only once it is
	// its slack short.
	bodyTimeout, bodySlack time.Duration
	sendTimeout, sendSlack time.Duration

	limit     Limiter
	tlsConfig *tls.Config
	h2        func(*tls.Conn) bool

	// ctx is the context of every request; Close cancels it.
	ctx    context.Context
	cancel context.CancelFunc

	keepAlivesOff atomic.Bool
	inShutdown    atomic.Bool
	// closed is set by Close: from then on an accepted connection is
	// closed at once.
	closed atomic.Bool

	mu    sync.Mutex
	ln    net.Listener
	conns map[*Conn]struct{}
	// accepting counts Serve's accept loop, which Shutdown waits for so
	// that every connection it accepted is tracked (and served) first.
	accepting sync.WaitGroup
}

// NewServer returns a server whose connections are each served by a
// Handler from newHandler.
func NewServer(cfg Config, newHandler func(*Conn) Handler) *Server {
	ctx, cancel := context.WithCancel(context.Background())
	limit := cfg.Limit
	if limit == nil {
		limit = noLimit{}
	}
	return &Server{
		newHandler:        newHandler,
		log:               cfg.Logger,
		readHeaderTimeout: cfg.ReadHeaderTimeout,
		idleTimeout:       cfg.IdleTimeout,
		idleSlack:         Slack(cfg.IdleTimeout),
		bodyTimeout:       cfg.BodyTimeout,
		bodySlack:         Slack(cfg.BodyTimeout),
		sendTimeout:       cfg.SendTimeout,
		sendSlack:         Slack(cfg.SendTimeout),
		limit:             limit,
		tlsConfig:         cfg.TLS,
		h2:                cfg.H2,
		ctx:               ctx,
		cancel:            cancel,
		conns:             map[*Conn]struct{}{},
	}
}

type noLimit struct{}

func (noLimit) Acquire() bool { return true }
func (noLimit) Release()      {}

// Slack is how far short of an inactivity timeout its deadline may be
// before it is moved: a tenth, at most a second. Moving a deadline is a
// timer update in the runtime, which a busy connection would otherwise pay
// for on every read or write.
func Slack(timeout time.Duration) time.Duration { return min(time.Second, timeout/10) }

// Serve accepts connections on ln until Shutdown or Close, which make it
// return http.ErrServerClosed. It may be called once.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.inShutdown.Load() {
		s.mu.Unlock()
		ln.Close()
		return http.ErrServerClosed
	}
	s.ln = ln
	s.accepting.Add(1)
	s.mu.Unlock()
	defer s.accepting.Done()
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
		if !s.limit.Acquire() {
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
// server is closed. A connection accepted while the server shuts down is
// served: its client connected before the listener closed, and closing it
// unanswered would fail a request that did nothing wrong.
func (s *Server) track(nc net.Conn) *Conn {
	c := newConn(s, nc)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		nc.Close()
		s.limit.Release()
		return nil
	}
	s.conns[c] = struct{}{}
	return c
}

func (s *Server) untrack(c *Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// SetKeepAlivesEnabled(false) makes every response close its connection
// and closes the idle connections, as net/http's does.
func (s *Server) SetKeepAlivesEnabled(on bool) {
	s.keepAlivesOff.Store(!on)
	if !on {
		s.closeIdle()
	}
}

func (s *Server) keepAlives() bool { return !s.keepAlivesOff.Load() && !s.inShutdown.Load() }

// Shutdown stops accepting, closes idle connections, and waits for the
// others to finish their request and close, until ctx is done. A
// connection that has not sent its first request yet is not idle: it gets
// the read header timeout to send it, and its answer.
func (s *Server) Shutdown(ctx context.Context) error {
	s.inShutdown.Store(true)
	s.closeListener()
	accepted := make(chan struct{})
	go func() { s.accepting.Wait(); close(accepted) }()
	select {
	case <-accepted:
	case <-ctx.Done():
		return ctx.Err()
	}
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
func (s *Server) Close() error {
	s.closed.Store(true)
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

func (s *Server) closeListener() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		s.ln.Close()
	}
}

// closeIdle closes the connections that wait for a request and reports
// whether none is left.
func (s *Server) closeIdle() bool {
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

// Buffer sizes of a client connection. A request head up to MaxHeadBytes
// is read; one that does not fit the read buffer is assembled in a
// separate buffer.
const (
	ReadBufferSize    = 8 << 10
	clientWriteBuffer = 4 << 10
	MaxHeadBytes      = 64 << 10
	MaxHeaderFields   = 256
	// maxDiscard is how much of a request body the server reads and drops
	// after answering without it, to keep the connection.
	maxDiscard = 256 << 10
)

// Conn is one client connection of a Server. Its request, response
// writer, body reader and Handler are reused for each request.
type Conn struct {
	s     *Server
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
	// asked is set once the connection has read a request (see
	// waitRequest).
	asked bool
	// vals holds the header values of the current request; the request's
	// header map points into it.
	vals []string
	req  request
	w    writer
	body body
	h    Handler

	// wmu orders a 100 Continue written by the body reader against the
	// response head (see body.Read).
	wmu sync.Mutex
}

func newConn(s *Server, nc net.Conn) *Conn {
	c := &Conn{s: s, rwc: nc, remoteAddr: nc.RemoteAddr().String()}
	sock := nc
	if tc, ok := nc.(*tls.Conn); ok {
		sock = tc.NetConn() // for alive: TLS records waiting count as open
	}
	if sc, ok := sock.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			c.raw = raw
		}
	}
	rw := SocketIO(nc)
	c.br = bufio.NewReaderSize(rw, ReadBufferSize)
	c.bw = bufio.NewWriterSize(rw, clientWriteBuffer)
	c.req.r.Header = http.Header{}
	c.w.c = c
	c.w.h = http.Header{}
	c.body.c = c
	return c
}

// serve reads and answers requests until the connection ends. A panic
// while serving ends the connection, not the process, as with net/http.
func (c *Conn) serve() {
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
func (c *Conn) release() {
	if c.released.CompareAndSwap(false, true) {
		c.s.limit.Release()
	}
}

// handshake does the TLS handshake within the read header timeout. A
// connection that negotiated HTTP/2 goes to net/http's server (handedOff);
// ok is false when the handshake failed.
func (c *Conn) handshake(tc *tls.Conn) (handedOff, ok bool) {
	tc.SetDeadline(time.Now().Add(c.s.readHeaderTimeout))
	if err := tc.HandshakeContext(c.s.ctx); err != nil {
		return false, false
	}
	tc.SetDeadline(time.Time{})
	if tc.ConnectionState().NegotiatedProtocol != "h2" || c.s.h2 == nil {
		return false, true
	}
	c.s.untrack(c)
	if !c.s.h2(tc) {
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
func (c *Conn) lingerClose() {
	defer c.rwc.Close()
	cw, ok := c.rwc.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	c.rwc.SetReadDeadline(time.Now().Add(lingerTime))
	buf := discardPool.Get().(*[]byte)
	defer discardPool.Put(buf)
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
func (c *Conn) waitRequest() bool {
	if c.br.Buffered() > 0 {
		return true // a pipelined request
	}
	if !c.asked {
		// The first request: the connection stays active, so that a
		// shutdown waits for it rather than closing a connection its
		// client has just opened, and it must come within the read
		// header timeout, as with nginx's client_header_timeout.
		c.asked = true
		c.rwc.SetReadDeadline(time.Now().Add(c.s.readHeaderTimeout))
		_, err := c.br.Peek(1)
		return err == nil
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
func (c *Conn) handle() (keep, hijacked bool) {
	req := &c.req
	c.w.reset(req)
	if c.h == nil {
		c.h = c.s.newHandler(c)
	}
	abort := c.h.ServeH1(c)
	switch {
	case c.w.hijacked:
		c.s.untrack(c)
		return false, true
	case abort:
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
func (c *Conn) discardBody() bool {
	b := &c.body
	if !b.active || b.done {
		return true
	}
	if b.expect || b.err != nil {
		return false
	}
	buf := discardPool.Get().(*[]byte)
	defer discardPool.Put(buf)
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
func (c *Conn) setReadDeadline(t time.Time) {
	c.idleUntil, c.bodyUntil = time.Time{}, time.Time{}
	c.rwc.SetReadDeadline(t)
}

// bodyDeadline renews the inactivity deadline of reading a request body
// (Config.ClientBodyTimeout); it runs before each read of the body.
func (c *Conn) bodyDeadline() {
	if want := time.Now().Add(c.s.bodyTimeout); want.Sub(c.bodyUntil) > c.s.bodySlack {
		c.idleUntil, c.bodyUntil = time.Time{}, want
		c.rwc.SetReadDeadline(want)
	}
}

// sendDeadline renews the inactivity deadline of writing to the client
// (Config.SendTimeout); it runs before each write that may reach the
// socket.
func (c *Conn) sendDeadline() {
	if want := time.Now().Add(c.s.sendTimeout); want.Sub(c.sendUntil) > c.s.sendSlack {
		c.sendUntil = want
		c.rwc.SetWriteDeadline(want)
	}
}

// Request returns the request being served. It and its header map are
// reused for the next request of the connection.
func (c *Conn) Request() *http.Request { return &c.req.r }

// ResponseWriter returns the writer of the response being served (an
// http.Flusher and http.Hijacker too).
func (c *Conn) ResponseWriter() http.ResponseWriter { return &c.w }

// Context returns the context of the server's requests, done when the
// server closes its connections. A client leaving does not end it: see
// Alive.
func (c *Conn) Context() context.Context { return c.s.ctx }

// Alive reports whether the client is still there: its socket is neither
// closed nor reset (it may hold a pipelined request). It peeks without
// blocking and without consuming anything.
func (c *Conn) Alive() bool {
	if c.raw == nil {
		return true
	}
	alive := true
	c.raw.Control(func(fd uintptr) { alive = peekOpen(fd) })
	return alive
}

// writeError answers a request that could not be read and closes the
// connection.
func (c *Conn) writeError(status int) {
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
