package router

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Failure back-off: a backend whose connections fail is left out of the
// choice for minBackoff, doubling with each further failure up to maxBackoff,
// and is back at the first success.
const (
	minBackoff = time.Second
	maxBackoff = 30 * time.Second
)

// backend is one instance address. It is shared by every routing table that
// lists it, so its load, failure state and connection pool survive table
// changes; it is drained when no table lists it any more.
type backend struct {
	addr string
	pool *pool

	// inflight counts requests (and upgraded connections) being served.
	inflight atomic.Int64
	// fails counts consecutive connection failures; skipUntil is when the
	// back-off ends, in nanoseconds on the router's clock (see Router.now).
	fails     atomic.Int32
	skipUntil atomic.Int64

	// draining is set, under mu, once no routing table lists b any more
	// (see Router.apply and forward).
	draining atomic.Bool

	mu   sync.Mutex
	idle []*upstreamConn // LIFO: the warmest connection is reused first
}

// usable reports whether b is outside its failure back-off at now.
func (b *backend) usable(now int64) bool {
	return b.fails.Load() == 0 || now >= b.skipUntil.Load()
}

// failed records a connection failure at now and starts or extends the
// back-off.
func (b *backend) failed(now int64) {
	n := b.fails.Add(1)
	d := maxBackoff
	if n <= 6 { // 1 s << 5 = 32 s is past the cap
		d = min(minBackoff<<(n-1), maxBackoff)
	}
	b.skipUntil.Store(now + int64(d))
}

// succeeded ends the back-off. It only writes when there was one, so the
// hot path does not bounce the cache line between cores.
func (b *backend) succeeded() {
	if b.fails.Load() != 0 {
		b.fails.Store(0)
		b.skipUntil.Store(0)
	}
}

// pick chooses a backend for a request by the power of two random choices:
// of two distinct random backends that have not been tried for this request
// and are outside their back-off, the one with fewer requests in flight. When
// the random pair has no such backend it scans all of them; when every
// untried backend is backing off, it takes the one whose back-off ends first,
// so a request is never refused while an instance might still answer. It
// returns nil when every backend has been tried.
func pick(bs []*backend, tried []*backend, now int64) *backend {
	n := len(bs)
	switch n {
	case 0:
		return nil
	case 1:
		if b := bs[0]; !contains(tried, b) {
			return b
		}
		return nil
	}
	i := rand.IntN(n)
	j := rand.IntN(n - 1)
	if j >= i {
		j++
	}
	a, b := bs[i], bs[j]
	aok := !contains(tried, a) && a.usable(now)
	bok := !contains(tried, b) && b.usable(now)
	switch {
	case aok && bok:
		if b.inflight.Load() < a.inflight.Load() {
			return b
		}
		return a
	case aok:
		return a
	case bok:
		return b
	}
	return scan(bs, tried, now)
}

// scan is pick's fallback: the least loaded usable untried backend, else the
// untried backend whose back-off ends first.
func scan(bs []*backend, tried []*backend, now int64) *backend {
	var best, soonest *backend
	for _, b := range bs {
		if contains(tried, b) {
			continue
		}
		if b.usable(now) {
			if best == nil || b.inflight.Load() < best.inflight.Load() {
				best = b
			}
		} else if soonest == nil || b.skipUntil.Load() < soonest.skipUntil.Load() {
			soonest = b
		}
	}
	if best != nil {
		return best
	}
	return soonest
}

func contains(bs []*backend, b *backend) bool {
	for _, x := range bs {
		if x == b {
			return true
		}
	}
	return false
}
