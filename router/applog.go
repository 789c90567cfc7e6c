package router

import (
	"net"
	"strconv"
	"time"
)

// AppLogSink receives the line each request routed to an app adds to the
// app's log, in Heroku's style:
//
//	at=info method=GET path="/" host=demo.localhost request_id=6f1c... fwd="127.0.0.1" status=200 bytes=12 service=3ms protocol=http
//
// (at=error, with desc="...", for a request that failed or got a 5xx).
type AppLogSink interface {
	// RouterLine is called on the request's goroutine when it is done. It
	// must not block, and must copy line if it keeps it: its memory is
	// reused.
	RouterLine(app string, at time.Time, line []byte)
}

// shipAppLine hands x's line to the app log sink. Requests that matched no
// app are not any app's.
func (l *accessLog) shipAppLine(x *exchange, end time.Time) {
	if l.sink == nil || x.app == "" {
		return
	}
	bp := linePool.Get().(*[]byte)
	b := appendAppLine((*bp)[:0], x, end)
	l.sink.RouterLine(x.app, end, b)
	*bp = b
	linePool.Put(bp)
}

// appendAppLine appends x's line for the app's log (see AppLogSink).
func appendAppLine(b []byte, x *exchange, end time.Time) []byte {
	failed := x.err != nil || x.status >= 500
	if failed {
		b = append(b, "at=error"...)
	} else {
		b = append(b, "at=info"...)
	}
	b = append(b, " method="...)
	b = appendValue(b, x.req.Method)
	b = append(b, " path="...)
	b = appendQuoted(b, x.req.RequestURI)
	b = append(b, " host="...)
	b = appendValue(b, x.req.Host)
	b = append(b, " request_id="...)
	b = appendValue(b, x.id)
	b = append(b, " fwd="...)
	ip := x.req.RemoteAddr
	if h, _, err := net.SplitHostPort(ip); err == nil {
		ip = h
	}
	b = appendQuoted(b, ip)
	b = append(b, " status="...)
	b = strconv.AppendInt(b, int64(x.status), 10)
	b = append(b, " bytes="...)
	b = strconv.AppendInt(b, x.bytes, 10)
	b = append(b, " service="...)
	b = strconv.AppendInt(b, end.Sub(x.start).Milliseconds(), 10)
	b = append(b, "ms protocol="...)
	if x.req.TLS != nil {
		b = append(b, "https"...)
	} else {
		b = append(b, "http"...)
	}
	if x.err != nil {
		b = append(b, " desc="...)
		b = strconv.AppendQuote(b, x.err.Error())
	}
	return b
}

// appendQuoted appends s in double quotes, escaped as strconv.Quote does
// when it holds a quote, a backslash or a byte outside printable ASCII.
func appendQuoted(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c >= 0x7f || c == '"' || c == '\\' {
			return strconv.AppendQuote(b, s)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
