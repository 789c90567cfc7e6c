package router

import (
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gantryhq/gantry/router/internal/h1"
)

// halfCloseTimeout bounds how long an upgraded connection stays open in one
// direction after the other direction ended cleanly.
const halfCloseTimeout = 30 * time.Second

// upgraded is a spliced client and backend connection pair, tracked so that
// shutdown can wait for it and close it at the end of the grace period.
type upgraded struct {
	client, backend net.Conn
}

func (u *upgraded) close() {
	u.client.Close()
	u.backend.Close()
}

// splice completes an upgrade the backend accepted (101): it takes over the
// client's connection, relays the 101 head and copies bytes both ways until
// both directions end, or until no byte went either way for the tunnel
// idle timeout.
func (f *frontend) splice(x *exchange, c *upstreamConn, hd *h1.ResponseHead) {
	h := x.w.Header()
	if !upgradeMatches(x.req, hd.Upgrade) {
		c.close()
		clear(h)
		x.err = errors.New("backend upgraded to a protocol the client did not ask for")
		x.page(http.StatusBadGateway, badGatewayPage(x.app))
		return
	}
	hj, ok := x.w.(http.Hijacker)
	if !ok {
		c.close()
		clear(h)
		x.err = errors.New("client connection cannot be taken over")
		x.page(http.StatusBadGateway, badGatewayPage(x.app))
		return
	}
	r := f.r
	r.upWG.Add(1) // before Hijack: Shutdown still waits for this connection
	defer r.upWG.Done()
	cc, crw, err := hj.Hijack()
	if err != nil {
		c.close()
		x.clientGone(err)
		return
	}
	u := &upgraded{client: cc, backend: c.conn}
	r.upMu.Lock()
	if r.upClosed {
		r.upMu.Unlock()
		u.close()
		x.clientGone(errors.New("router shutting down"))
		return
	}
	r.upgrades[u] = struct{}{}
	r.upMu.Unlock()
	defer func() {
		r.upMu.Lock()
		delete(r.upgrades, u)
		r.upMu.Unlock()
		u.close()
	}()

	cc.SetDeadline(time.Time{})
	c.conn.SetDeadline(time.Time{})
	h["X-Request-Id"] = x.idHeader()
	crw.WriteString("HTTP/1.1 101 Switching Protocols\r\n")
	h.Write(crw)
	crw.WriteString("Connection: Upgrade\r\nUpgrade: ")
	crw.WriteString(hd.Upgrade)
	crw.WriteString("\r\n\r\n")
	x.status = http.StatusSwitchingProtocols
	if err := crw.Flush(); err != nil {
		x.clientGone(err)
		return
	}

	type result struct {
		toClient bool
		n        int64
		err      error
	}
	t := &tunnel{idle: r.cfg.TunnelIdleTimeout, now: r.now}
	t.last.Store(r.now())
	done := make(chan result, 2)
	go func() { // client -> backend, starting with what the server buffered
		n, err := t.pump(c.conn, cc, crw.Reader, &t.toBackendHalf)
		closeWrite(c.conn)
		done <- result{n: n, err: err}
	}()
	go func() { // backend -> client, starting with what c.br buffered
		n, err := t.pump(cc, c.conn, c.br, &t.toClientHalf)
		closeWrite(cc)
		done <- result{toClient: true, n: n, err: err}
	}()
	first := <-done
	switch {
	case first.err != nil:
		u.close()
	case first.toClient:
		t.toBackendHalf.Store(true)
		cc.SetReadDeadline(time.Now().Add(halfCloseTimeout))
	default:
		t.toClientHalf.Store(true)
		c.conn.SetReadDeadline(time.Now().Add(halfCloseTimeout))
	}
	second := <-done
	for _, res := range []result{first, second} {
		if res.toClient {
			x.bytes = res.n
		}
	}
}

// tunnel is the state shared by the two directions of an upgraded
// connection.
type tunnel struct {
	// idle is Config.TunnelIdleTimeout: the tunnel ends when no byte went
	// either way for that long.
	idle time.Duration
	now  func() int64
	// last is when a byte last went either way (router clock).
	last atomic.Int64
	// toBackendHalf and toClientHalf are set when the other direction
	// ended cleanly: that direction then has halfCloseTimeout left
	// instead of the idle timeout.
	toBackendHalf, toClientHalf atomic.Bool
}

// pump copies r (which reads src) to dst until r ends, and returns the
// bytes copied. Each read waits up to the idle timeout; when it runs out
// while the other direction moved meanwhile, the read is tried again.
// Each write waits up to the idle timeout too.
func (t *tunnel) pump(dst, src net.Conn, r io.Reader, half *atomic.Bool) (int64, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var total int64
	for {
		if !half.Load() {
			src.SetReadDeadline(time.Now().Add(t.idle))
			if half.Load() { // set meanwhile: its deadline holds
				src.SetReadDeadline(time.Now().Add(halfCloseTimeout))
			}
		}
		n, rerr := r.Read(buf)
		if n > 0 {
			t.last.Store(t.now())
			dst.SetWriteDeadline(time.Now().Add(t.idle))
			m, werr := dst.Write(buf[:n])
			total += int64(m)
			if werr != nil {
				return total, werr
			}
		}
		switch {
		case rerr == nil:
		case rerr == io.EOF:
			return total, nil
		case isTimeout(rerr) && !half.Load() && t.now()-t.last.Load() < int64(t.idle):
			// The other direction is busy: the tunnel is not idle.
		default:
			return total, rerr
		}
	}
}

// upgradeMatches reports whether the protocol a backend switched to is one
// the client offered.
func upgradeMatches(req *http.Request, got string) bool {
	if got == "" {
		return false
	}
	for _, v := range req.Header["Upgrade"] {
		for v != "" {
			var p string
			p, v, _ = strings.Cut(v, ",")
			if strings.EqualFold(strings.TrimSpace(p), got) {
				return true
			}
		}
	}
	return false
}

// closeWrite half-closes conn when it can (TCP, TLS), so the peer reads
// EOF while the other direction goes on.
func closeWrite(conn net.Conn) {
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	conn.Close()
}
