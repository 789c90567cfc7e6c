package router

import (
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/gantryhq/gantry/router/internal/h1"
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

var _ h1.Limiter = (*connLimit)(nil)

// Acquire counts a new connection in, or reports false (and counts and
// logs the refusal) when the cap is reached.
func (l *connLimit) Acquire() bool {
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

// Release counts a connection out.
func (l *connLimit) Release() { l.open.Add(-1) }
