package router

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// connQueue is the listener of the HTTP/2 server: it yields the TLS
// connections that the HTTPS listener's h1.Server accepted, shook hands
// with and found to have negotiated HTTP/2.
type connQueue struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

var _ net.Listener = (*connQueue)(nil)

func newConnQueue(addr net.Addr) *connQueue {
	return &connQueue{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

// deliver hands c to the server's Accept, and reports false when the
// queue is closed.
func (q *connQueue) deliver(c *tls.Conn) bool {
	select {
	case q.ch <- c:
		return true
	case <-q.done:
		return false
	}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) Close() error {
	q.once.Do(func() { close(q.done) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return q.addr }

// h2Deadlines gives a request served by net/http's HTTP/2 server the
// router's inactivity deadlines (Config.ClientBodyTimeout and
// SendTimeout), through http.ResponseController's per-stream deadlines:
// its Body renews the read deadline before each read, and its
// ResponseWriter the write deadline before each write and flush. A
// deadline moves only once it is its slack short, since each move is a
// message to the connection's goroutine.
type h2Deadlines struct {
	http.ResponseWriter
	rc   *http.ResponseController
	body io.ReadCloser

	bodyTimeout, bodySlack time.Duration
	sendTimeout, sendSlack time.Duration
	readUntil, writeUntil  time.Time
	// mu guards readUntil: the body is read by the goroutine streaming
	// it upstream while the response is written.
	mu sync.Mutex
}

var (
	_ http.ResponseWriter = (*h2Deadlines)(nil)
	_ http.Flusher        = (*h2Deadlines)(nil)
)

// h2Body is the request body side of h2Deadlines.
type h2Body struct{ d *h2Deadlines }

func (b h2Body) Read(p []byte) (int, error) {
	d := b.d
	d.mu.Lock()
	if want := time.Now().Add(d.bodyTimeout); want.Sub(d.readUntil) > d.bodySlack {
		d.readUntil = want
		d.rc.SetReadDeadline(want)
	}
	d.mu.Unlock()
	return d.body.Read(p)
}

func (b h2Body) Close() error { return b.d.body.Close() }

func (d *h2Deadlines) sendDeadline() {
	if want := time.Now().Add(d.sendTimeout); want.Sub(d.writeUntil) > d.sendSlack {
		d.writeUntil = want
		d.rc.SetWriteDeadline(want)
	}
}

func (d *h2Deadlines) Write(p []byte) (int, error) {
	d.sendDeadline()
	return d.ResponseWriter.Write(p)
}

func (d *h2Deadlines) Flush() {
	d.sendDeadline()
	d.rc.Flush()
}

// Unwrap lets http.ResponseController reach the server's writer.
func (d *h2Deadlines) Unwrap() http.ResponseWriter { return d.ResponseWriter }
