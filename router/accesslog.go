package router

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// accessLog writes one line per request:
//
//	time=2025-05-20T10:00:00.123Z app=web method=GET path=/a status=200 bytes=12 upstream_ms=0.412 total_ms=0.530 backend=10.0.0.2:31000 request_id=...
//
// upstream_ms is from the request's first byte going upstream to the
// response head coming back; total_ms is from the request's arrival to its
// last byte going out. Lines are formatted into pooled buffers without
// fmt or slog (the date and time up to the second once a second) and
// written under a mutex into a buffered writer that is flushed every second
// and when full. The lines of requests routed to an app also go to the app
// log sink, if any (see AppLogSink). A nil *accessLog logs nothing.
type accessLog struct {
	mu     sync.Mutex
	bw     *bufio.Writer // nil when only the sink gets lines
	sink   AppLogSink
	err    error // the first write error, reported once
	logger *slog.Logger
	second atomic.Pointer[logSecond]
}

// logSecond is one second of the time field, formatted.
type logSecond struct {
	unix int64
	text string // "2006-01-02T15:04:05"
}

func newAccessLog(w io.Writer, sink AppLogSink, log *slog.Logger) *accessLog {
	if w == nil && sink == nil {
		return nil
	}
	l := &accessLog{sink: sink, logger: log}
	if w != nil {
		l.bw = bufio.NewWriterSize(w, 64<<10)
	}
	return l
}

var linePool = sync.Pool{New: func() any {
	b := make([]byte, 0, 512)
	return &b
}}

func (l *accessLog) log(x *exchange) {
	if l == nil {
		return
	}
	end := time.Now()
	l.shipAppLine(x, end)
	if l.bw == nil {
		return
	}
	bp := linePool.Get().(*[]byte)
	b := l.appendLine((*bp)[:0], x, end)
	l.mu.Lock()
	_, err := l.bw.Write(b)
	l.noteErr(err)
	l.mu.Unlock()
	*bp = b
	linePool.Put(bp)
}

func (l *accessLog) appendLine(b []byte, x *exchange, end time.Time) []byte {
	b = append(b, "time="...)
	b = l.appendTime(b, end)
	b = append(b, " app="...)
	b = appendValue(b, x.app)
	b = append(b, " method="...)
	b = appendValue(b, x.req.Method)
	b = append(b, " path="...)
	path := x.req.RequestURI
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	b = appendValue(b, path)
	b = append(b, " status="...)
	b = strconv.AppendInt(b, int64(x.status), 10)
	b = append(b, " bytes="...)
	b = strconv.AppendInt(b, x.bytes, 10)
	b = append(b, " upstream_ms="...)
	b = appendMillis(b, x.upstream)
	b = append(b, " total_ms="...)
	b = appendMillis(b, end.Sub(x.start))
	b = append(b, " backend="...)
	b = appendValue(b, x.backend)
	b = append(b, " request_id="...)
	b = appendValue(b, x.id)
	if x.err != nil {
		b = append(b, " error="...)
		b = strconv.AppendQuote(b, x.err.Error())
	}
	return append(b, '\n')
}

// appendTime appends t in UTC as 2006-01-02T15:04:05.000Z.
func (l *accessLog) appendTime(b []byte, t time.Time) []byte {
	t = t.UTC()
	s := l.second.Load()
	if s == nil || s.unix != t.Unix() {
		s = &logSecond{unix: t.Unix(), text: t.Format("2006-01-02T15:04:05")}
		l.second.Store(s)
	}
	b = append(b, s.text...)
	ms := t.Nanosecond() / int(time.Millisecond)
	return append(b, '.', byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10), 'Z')
}

// appendValue appends s bare when it needs no quoting, "-" when empty, and
// quoted otherwise.
func appendValue(b []byte, s string) []byte {
	if s == "" {
		return append(b, '-')
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == '"' || c == '=' || c >= 0x7f {
			return strconv.AppendQuote(b, s)
		}
	}
	return append(b, s...)
}

// appendMillis appends d in milliseconds with three decimals.
func appendMillis(b []byte, d time.Duration) []byte {
	us := d.Microseconds()
	b = strconv.AppendInt(b, us/1000, 10)
	frac := us % 1000
	b = append(b, '.', byte('0'+frac/100), byte('0'+frac/10%10), byte('0'+frac%10))
	return b
}

// flushEvery flushes the log every interval until ctx is done.
func (l *accessLog) flushEvery(ctx context.Context, interval time.Duration) {
	if l == nil || l.bw == nil {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			l.flush()
		}
	}
}

func (l *accessLog) flush() {
	if l == nil || l.bw == nil {
		return
	}
	l.mu.Lock()
	l.noteErr(l.bw.Flush())
	l.mu.Unlock()
}

// noteErr reports the first write error; later lines are dropped quietly
// by the failed writer. l.mu is held.
func (l *accessLog) noteErr(err error) {
	if err != nil && l.err == nil {
		l.err = err
		l.logger.Error("access log write failed; dropping further lines", "err", err)
	}
}
