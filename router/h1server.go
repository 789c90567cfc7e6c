package router

import (
	"bufio"
	"context"
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
// HTTPS (HTTP/2 and HTTP/1.1) stays with net/http.
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

func newH1Server(f *frontend, cfg Config, log *slog.Logger) *h1server {
	ctx, cancel := context.WithCancel(context.Background())
	return &h1server{
		f: f, log: log,
		readHeaderTimeout: cfg.ReadHeaderTimeout,
		idleTimeout:       cfg.ClientIdleTimeout,
		idleSlack:         min(time.Second, cfg.ClientIdleTimeout/10),
		ctx:               ctx,
		cancel:            cancel,
		conns:             map[*h1conn]struct{}{},
	}
}

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
	// deadline is another one.
	idleUntil time.Time
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
	if sc, ok := nc.(syscall.Conn); ok {
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
	hijacked, linger := false, false
	defer func() {
		if v := recover(); v != nil && v != http.ErrAbortHandler {
			c.s.log.Error("router panic serving a request", "remote", c.remoteAddr, "panic", v, "stack", string(debug.Stack()))
		}
		c.s.untrack(c)
		switch {
		case hijacked:
		case linger:
			c.lingerClose()
		default:
			c.rwc.Close()
		}
	}()
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
		c.idleUntil = want
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
	c.setReadDeadline(time.Now().Add(c.s.readHeaderTimeout))
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

// setReadDeadline sets a read deadline other than the idle one.
func (c *h1conn) setReadDeadline(t time.Time) {
	c.idleUntil = time.Time{}
	c.rwc.SetReadDeadline(t)
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
	c.rwc.SetWriteDeadline(time.Now().Add(time.Second))
	bw := c.bw
	bw.WriteString("HTTP/1.1 ")
	bw.WriteString(statusLine(status))
	bw.WriteString("\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: ")
	bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(len(text)), 10))
	bw.WriteString("\r\n\r\n")
	bw.WriteString(text)
	bw.Flush()
}
