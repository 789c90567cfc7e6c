package router

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gantryhq/gantry/router/internal/h1"
)

// pool holds the settings shared by every backend's connection pool.
type pool struct {
	dialTimeout time.Duration
	idleTimeout int64 // nanoseconds
	maxIdle     int
}

// dialError is a failure to connect to a backend: nothing of the request was
// sent.
type dialError struct {
	addr string
	err  error
}

func (e *dialError) Error() string { return fmt.Sprintf("dial backend %s: %v", e.addr, e.err) }
func (e *dialError) Unwrap() error { return e.err }

// upstreamConn is one HTTP/1.1 connection to a backend. It counts the bytes
// the kernel accepted from it and the bytes read back, which is what the
// retry rule looks at.
type upstreamConn struct {
	b    *backend
	conn *net.TCPConn
	io   io.ReadWriter // reads and writes conn (see socketIO)
	raw  syscall.RawConn
	br   *bufio.Reader
	bw   *bufio.Writer

	// written and read count bytes since the request began (see reset).
	written int64
	read    int64
	// reused is set when the connection came from the idle pool.
	reused bool
	idleAt int64
	// readUntil and writeUntil are the deadlines last set on conn (see
	// readBy).
	readUntil, writeUntil time.Time

	// bodySentAt is when the goroutine streaming a request body finished
	// (router clock); zero while it runs. The response header timeout
	// counts from then.
	bodySentAt atomic.Int64

	// peekFn and peekState serve alive (see alive_linux.go).
	peekFn    func(fd uintptr) bool
	peekState int
	peekBuf   [1]byte
}

func (c *upstreamConn) Write(p []byte) (int, error) {
	n, err := c.io.Write(p)
	c.written += int64(n)
	return n, err
}

func (c *upstreamConn) Read(p []byte) (int, error) {
	n, err := c.io.Read(p)
	c.read += int64(n)
	return n, err
}

func (c *upstreamConn) close() { c.conn.Close() }

// readBy sets conn's read deadline to t, unless the one in place is at
// most slack earlier than t: moving a deadline is a timer update in the
// runtime, and a pooled connection would want one per request. The
// deadline that holds is then up to slack short of t.
func (c *upstreamConn) readBy(t time.Time, slack time.Duration) {
	if t.Before(c.readUntil) || t.Sub(c.readUntil) > slack {
		c.readUntil = t
		c.conn.SetReadDeadline(t)
	}
}

// writeBy is readBy for the write deadline.
func (c *upstreamConn) writeBy(t time.Time, slack time.Duration) {
	if t.Before(c.writeUntil) || t.Sub(c.writeUntil) > slack {
		c.writeUntil = t
		c.conn.SetWriteDeadline(t)
	}
}

// dial opens a new connection to b.
func (b *backend) dial(ctx context.Context) (*upstreamConn, error) {
	d := net.Dialer{Timeout: b.pool.dialTimeout, KeepAlive: 30 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", b.addr)
	if err != nil {
		return nil, &dialError{addr: b.addr, err: err}
	}
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		nc.Close()
		return nil, &dialError{addr: b.addr, err: errors.New("not a TCP connection")}
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		tc.Close()
		return nil, &dialError{addr: b.addr, err: err}
	}
	c := &upstreamConn{b: b, conn: tc, io: h1.SocketIO(tc), raw: raw}
	c.br = bufio.NewReaderSize(c, 8<<10)
	c.bw = bufio.NewWriterSize(c, 4<<10)
	c.initAlive()
	return c, nil
}

// get returns an idle connection to b, or nil. Expired connections met on
// the way are closed, and so are the ones the backend closed or sent
// anything on while they were idle (see alive): bytes nobody asked for
// would be read as the response to the next request, which would hand
// every later user of the connection the response meant for the one
// before. The check is one non-blocking system call per request.
func (b *backend) get(now int64) *upstreamConn {
	for {
		b.mu.Lock()
		n := len(b.idle)
		if n == 0 {
			b.mu.Unlock()
			return nil
		}
		c := b.idle[n-1]
		b.idle[n-1] = nil
		b.idle = b.idle[:n-1]
		b.mu.Unlock()
		if now-c.idleAt < b.pool.idleTimeout && c.alive() {
			c.reused = true
			c.written, c.read = 0, 0
			return c
		}
		c.close()
	}
}

// closeDead closes the idle connections to b that the backend has closed.
// It runs when a pooled connection turned out dead, which usually means
// that the backend restarted or closed its idle connections, so that the
// retry does not meet the next dead one.
func (b *backend) closeDead() {
	b.mu.Lock()
	keep := b.idle[:0]
	var dead []*upstreamConn
	for _, c := range b.idle {
		if c.alive() {
			keep = append(keep, c)
		} else {
			dead = append(dead, c)
		}
	}
	clear(b.idle[len(keep):])
	b.idle = keep
	b.mu.Unlock()
	for _, c := range dead {
		c.close()
	}
}

// put returns c to b's idle pool, or closes it when b is draining, the
// pool is full, or bytes beyond the response are buffered on it (a body on
// a HEAD, 204 or 304 answer, more than the Content-Length): those would be
// read as the next request's response.
func (b *backend) put(c *upstreamConn, now int64) {
	if c.br.Buffered() > 0 {
		c.close()
		return
	}
	c.idleAt = now
	b.mu.Lock()
	if b.draining.Load() || len(b.idle) >= b.pool.maxIdle {
		b.mu.Unlock()
		c.close()
		return
	}
	b.idle = append(b.idle, c)
	b.mu.Unlock()
}

// drain stops pooling for b and closes its idle connections; connections in
// use finish their request and are closed when they come back.
func (b *backend) drain() {
	b.mu.Lock()
	b.draining.Store(true)
	idle := b.idle
	b.idle = nil
	b.mu.Unlock()
	for _, c := range idle {
		c.close()
	}
}

// cancelCheck is how often a request waiting on its backend checks whether
// its client is still there: reads from a backend carry a deadline at most
// this far away, renewed until the response header timeout, instead of a
// per-request cancellation callback.
const cancelCheck = time.Second

// fill waits for more of x's response in c.br. It gives up with x.left's
// error when the client has gone, and with the read error otherwise.
func (c *upstreamConn) fill(x *exchange) error {
	for {
		c.readBy(time.Now().Add(cancelCheck), cancelCheck/10)
		_, err := c.br.Peek(c.br.Buffered() + 1)
		if err == nil {
			return nil
		}
		if left := x.left(); left != nil {
			return left
		}
		if !isTimeout(err) {
			return err
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// closeExpired closes the idle connections that have been idle for the pool's
// idle timeout at now.
func (b *backend) closeExpired(now int64) {
	b.mu.Lock()
	keep := b.idle[:0]
	var expired []*upstreamConn
	for _, c := range b.idle {
		if now-c.idleAt >= b.pool.idleTimeout {
			expired = append(expired, c)
		} else {
			keep = append(keep, c)
		}
	}
	clear(b.idle[len(keep):])
	b.idle = keep
	b.mu.Unlock()
	for _, c := range expired {
		c.close()
	}
}
