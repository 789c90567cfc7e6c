package router

import (
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
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
// both directions end.
func (f *frontend) splice(x *exchange, c *upstreamConn, hd *respHead) {
	h := x.w.Header()
	if !upgradeMatches(x.req, hd.upgrade) {
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
	crw.WriteString(hd.upgrade)
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
	done := make(chan result, 2)
	go func() { // client -> backend, starting with what the server buffered
		n, err := io.Copy(c.conn, crw.Reader)
		closeWrite(c.conn)
		done <- result{n: n, err: err}
	}()
	go func() { // backend -> client, starting with what c.br buffered
		n, err := io.Copy(cc, c.br)
		closeWrite(cc)
		done <- result{toClient: true, n: n, err: err}
	}()
	first := <-done
	if first.err != nil {
		u.close()
	} else if first.toClient {
		cc.SetReadDeadline(time.Now().Add(halfCloseTimeout))
	} else {
		c.conn.SetReadDeadline(time.Now().Add(halfCloseTimeout))
	}
	second := <-done
	for _, res := range []result{first, second} {
		if res.toClient {
			x.bytes = res.n
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
