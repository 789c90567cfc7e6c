package host

import (
	"bytes"
	"context"
	"sync"
	"time"

	"github.com/gantryhq/gantry/layer0/host/client"
)

// maxLineLen bounds one kept line; longer output is split.
const maxLineLen = 16 << 10

// ring keeps the last lines of one job's output and wakes followers when a
// line arrives. Sequence numbers start at 1 and never repeat, so a follower
// that fell behind by more than the capacity just skips the lost lines.
type ring struct {
	mu      sync.Mutex
	lines   []client.LogLine // circular, len == cap once full
	start   int              // index of the oldest line once full
	next    uint64           // sequence number of the next line
	changed chan struct{}    // closed and replaced on every append and on close
	closed  bool
	// ship also gets every line added (see logShipper); nil for none.
	ship func(client.LogLine)
}

func newRing(capacity int) *ring {
	return &ring{lines: make([]client.LogLine, 0, capacity), next: 1, changed: make(chan struct{})}
}

func (r *ring) add(l client.LogLine) {
	if r.ship != nil {
		r.ship(l)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	if len(r.lines) < cap(r.lines) {
		r.lines = append(r.lines, l)
	} else {
		r.lines[r.start] = l
		r.start = (r.start + 1) % len(r.lines)
	}
	r.next++
	close(r.changed)
	r.changed = make(chan struct{})
}

// close marks the end of the output: followers drain and stop.
func (r *ring) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.closed {
		r.closed = true
		close(r.changed)
	}
}

// tail returns the sequence number of the first of the last n lines (n <= 0:
// of every kept line).
func (r *ring) tail(n int) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n <= 0 || n > len(r.lines) {
		n = len(r.lines)
	}
	return r.next - uint64(n)
}

// since returns the kept lines from sequence number seq on, the sequence
// number after them, a channel closed when more arrive, and whether the
// output has ended.
func (r *ring) since(seq uint64) ([]client.LogLine, uint64, <-chan struct{}, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	oldest := r.next - uint64(len(r.lines))
	if seq < oldest {
		seq = oldest
	}
	var out []client.LogLine
	for s := seq; s < r.next; s++ {
		out = append(out, r.lines[(r.start+int(s-oldest))%len(r.lines)])
	}
	return out, r.next, r.changed, r.closed
}

// last returns the text of the last n lines.
func (r *ring) last(n int) []string {
	lines, _, _, _ := r.since(r.tail(n))
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = l.Text
	}
	return out
}

// logSession is what the two streams of one ContainerLogs call share.
type logSession struct {
	mu sync.Mutex
	// skipUntil drops lines not newer than it: they were kept before a
	// reconnect (Docker's "since" is inclusive).
	skipUntil time.Time
	// last is the timestamp of the newest line kept.
	last time.Time
}

// lineWriter splits one stream of Docker's timestamped output
// ("<RFC3339Nano> <text>\n") into lines for a ring.
type lineWriter struct {
	ring   *ring
	stream string
	sess   *logSession
	buf    []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.buf = append(w.buf, p...)
			if len(w.buf) > maxLineLen {
				w.emit(w.buf)
				w.buf = w.buf[:0]
			}
			break
		}
		w.buf = append(w.buf, p[:i]...)
		w.emit(w.buf)
		w.buf = w.buf[:0]
		p = p[i+1:]
	}
	return n, nil
}

// flush emits a final line without a newline.
func (w *lineWriter) flush() {
	if len(w.buf) > 0 {
		w.emit(w.buf)
		w.buf = w.buf[:0]
	}
}

func (w *lineWriter) emit(b []byte) {
	ts, text := parseTimestamped(b)
	if ts.IsZero() {
		ts = time.Now().UTC()
	} else {
		w.sess.mu.Lock()
		if !ts.After(w.sess.skipUntil) {
			w.sess.mu.Unlock()
			return
		}
		if ts.After(w.sess.last) {
			w.sess.last = ts
		}
		w.sess.mu.Unlock()
	}
	w.ring.add(client.LogLine{Time: ts, Stream: w.stream, Text: text})
}

// parseTimestamped splits Docker's "<RFC3339Nano> " prefix from a line. A
// line without a valid prefix gets a zero time and is kept whole.
func parseTimestamped(b []byte) (time.Time, string) {
	if i := bytes.IndexByte(b, ' '); i > 0 && i <= len(time.RFC3339Nano)+6 {
		if ts, err := time.Parse(time.RFC3339Nano, string(b[:i])); err == nil {
			return ts.UTC(), string(bytes.TrimSuffix(b[i+1:], []byte("\r")))
		}
	}
	return time.Time{}, string(b)
}

// ended returns a channel closed at the next change, and whether the output
// has ended.
func (r *ring) ended() (<-chan struct{}, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changed, r.closed
}

// waitClosed waits until r is closed, d passes or ctx ends.
func (r *ring) waitClosed(ctx context.Context, d time.Duration) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		ch, closed := r.ended()
		if closed {
			return
		}
		select {
		case <-ch:
		case <-timer.C:
			return
		case <-ctx.Done():
			return
		}
	}
}
