package gitreceiver

import (
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/gliderlabs/ssh"
	gossh "golang.org/x/crypto/ssh"
)

// gate admits SSH connections within the caps on unauthenticated
// connections (in total and per source address) and ends those that do not
// authenticate in time. A connection counts as unauthenticated from its
// accept until it opens its first session, which SSH allows only after
// authentication; then it has the idle timeout alone.
type gate struct {
	handshake    time.Duration
	idle         time.Duration
	max          int
	maxPerSource int
	log          *slog.Logger

	mu       sync.Mutex
	total    int
	bySource map[string]int
}

func newGate(cfg Config, log *slog.Logger) *gate {
	return &gate{
		handshake:    cfg.HandshakeTimeout,
		idle:         cfg.IdleTimeout,
		max:          cfg.MaxUnauthenticated,
		maxPerSource: cfg.MaxUnauthenticatedPerSource,
		log:          log,
		bySource:     map[string]int{},
	}
}

// admit counts c as unauthenticated and returns it wrapped, or closes it
// and returns nil when a cap is reached.
func (g *gate) admit(c net.Conn) net.Conn {
	source := sourceOf(c.RemoteAddr())
	g.mu.Lock()
	if g.total >= g.max || g.bySource[source] >= g.maxPerSource {
		total, here := g.total, g.bySource[source]
		g.mu.Unlock()
		g.log.Debug("refused ssh connection: too many unauthenticated connections",
			"remote", c.RemoteAddr().String(), "unauthenticated", total, "from_source", here)
		c.Close()
		return nil
	}
	g.total++
	g.bySource[source]++
	g.mu.Unlock()
	gc := &gatedConn{Conn: c, gate: g, source: source, deadline: time.Now().Add(g.handshake)}
	c.SetDeadline(gc.deadline)
	return gc
}

// release stops counting a connection from source as unauthenticated.
func (g *gate) release(source string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.total--
	if g.bySource[source]--; g.bySource[source] <= 0 {
		delete(g.bySource, source)
	}
}

// sourceOf returns the IP address of addr, the unit of the per-source cap.
func sourceOf(addr net.Addr) string {
	if a, ok := addr.(*net.TCPAddr); ok {
		return a.IP.String()
	}
	host, _, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	return host
}

// gatedConn is an admitted connection. Until it is authenticated, no
// deadline set on it (the SSH server sets its idle deadline on every read
// and write) reaches past the handshake deadline.
type gatedConn struct {
	net.Conn
	gate   *gate
	source string

	mu       sync.Mutex
	deadline time.Time // the handshake deadline; zero once authenticated
	released bool      // no longer counted as unauthenticated
}

func (c *gatedConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.deadline.IsZero() && (t.IsZero() || t.After(c.deadline)) {
		t = c.deadline
	}
	return c.Conn.SetDeadline(t)
}

// authenticated lifts the handshake deadline and stops counting c against
// the caps.
func (c *gatedConn) authenticated() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.deadline.IsZero() {
		return
	}
	c.deadline = time.Time{}
	var next time.Time
	if c.gate.idle > 0 {
		next = time.Now().Add(c.gate.idle)
	}
	c.Conn.SetDeadline(next) // also for the read in progress
	c.releaseLocked()
}

func (c *gatedConn) releaseLocked() {
	if !c.released {
		c.released = true
		c.gate.release(c.source)
	}
}

func (c *gatedConn) Close() error {
	c.mu.Lock()
	c.releaseLocked()
	c.mu.Unlock()
	return c.Conn.Close()
}

// gatedListener admits the connections it accepts through its gate.
type gatedListener struct {
	net.Listener
	gate *gate
}

func (l *gatedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if gc := l.gate.admit(c); gc != nil {
			return gc, nil
		}
	}
}

// gateConnKey is the ssh.Context key of a connection's *gatedConn.
type gateConnKey struct{}

// rememberConn is the SSH server's ConnCallback: it keeps the connection
// in the context, for the session handler to mark it authenticated.
func rememberConn(ctx ssh.Context, c net.Conn) net.Conn {
	if gc, ok := c.(*gatedConn); ok {
		ctx.SetValue(gateConnKey{}, gc)
	}
	return c
}

// sessionHandler opens a session channel, which SSH allows only on an
// authenticated connection, and marks the connection authenticated.
func sessionHandler(srv *ssh.Server, conn *gossh.ServerConn, ch gossh.NewChannel, ctx ssh.Context) {
	if gc, ok := ctx.Value(gateConnKey{}).(*gatedConn); ok {
		gc.authenticated()
	}
	ssh.DefaultSessionHandler(srv, conn, ch, ctx)
}
