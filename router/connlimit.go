package router

import (
	"log/slog"
	"net"
	"sync/atomic"
	"time"
)

// connLimit caps the client connections open at once (Config.MaxConns),
// shared by the HTTP and HTTPS listeners.
type connLimit struct {
	max  int64
	log  *slog.Logger
	open atomic.Int64
	// refused counts the connections refused at the cap since the start.
	refused atomic.Uint64
	// loggedAt is when the last refusal was logged (router clock).
	loggedAt atomic.Int64
	now      func() int64
}

// refuseLogEvery is the least time between two log lines about refused
// connections.
const refuseLogEvery = 10 * time.Second

// acquire counts a new connection in, or reports false (and counts and
// logs the refusal) when the cap is reached.
func (l *connLimit) acquire() bool {
	if l.open.Add(1) <= l.max {
		return true
	}
	l.open.Add(-1)
	n := l.refused.Add(1)
	now, last := l.now(), l.loggedAt.Load()
	if (last == 0 || now-last >= int64(refuseLogEvery)) && l.loggedAt.CompareAndSwap(last, now) {
		l.log.Warn("router at its connection cap: refusing new connections", "max_conns", l.max, "refused_total", n)
	}
	return false
}

// release counts a connection out.
func (l *connLimit) release() { l.open.Add(-1) }

// tooBusyResponse is what an HTTP connection beyond the cap gets before it
// is closed.
const tooBusyResponse = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n" +
	"Connection: close\r\nRetry-After: 1\r\nContent-Length: 20\r\n\r\nrouter at capacity.\n"

// refuse answers a connection beyond the cap and closes it: HTTP gets a
// 503 written without waiting (a new socket's send buffer takes it),
// HTTPS nothing, since a response would need a handshake first.
func refuse(nc net.Conn, plain bool) {
	if plain {
		nc.SetWriteDeadline(time.Now().Add(10 * time.Millisecond))
		nc.Write([]byte(tooBusyResponse))
	}
	nc.Close()
}
