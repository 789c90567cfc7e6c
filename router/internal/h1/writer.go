package h1

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// writer is the http.ResponseWriter of an Conn. It frames the body by
// the Content-Length header when there is one, chunked otherwise (closing
// the connection instead for HTTP/1.0 clients), adds Date when missing and
// Connection when the connection is to close, and sends the trailers set
// under http.TrailerPrefix after a chunked body. The head goes into the
// connection's write buffer, which Flush and the end of the response send.
type writer struct {
	c   *Conn
	h   http.Header
	req *request

	status      int
	wroteHeader bool
	// started is set once the head is written; under c.wmu when the client
	// waits for 100 Continue.
	started bool
	chunked bool
	noBody  bool
	// remain is what is left to write of a Content-Length body; -1 when
	// the response has none.
	remain     int64
	closeAfter bool
	hijacked   bool
	err        error // the first write error
}

var (
	_ http.ResponseWriter = (*writer)(nil)
	_ http.Flusher        = (*writer)(nil)
	_ http.Hijacker       = (*writer)(nil)
)

func (w *writer) reset(q *request) {
	h := w.h
	clear(h)
	*w = writer{c: w.c, h: h, req: q, remain: -1}
}

func (w *writer) Header() http.Header { return w.h }

// WriteHeader writes the response head into the write buffer. Later calls
// do nothing. The router never sends informational (1xx) responses through
// it: 101 goes through Hijack.
func (w *writer) WriteHeader(code int) {
	if w.wroteHeader || w.hijacked {
		return
	}
	w.wroteHeader = true
	w.status = code
	c, q, h := w.c, w.req, w.h
	w.noBody = q.head || code < 200 || code == http.StatusNoContent || code == http.StatusNotModified
	if v := h["Content-Length"]; len(v) > 0 {
		if n, err := strconv.ParseUint(v[0], 10, 63); err == nil {
			w.remain = int64(n)
		} else {
			delete(h, "Content-Length")
		}
	}
	switch {
	case w.noBody:
	case w.remain >= 0:
	case q.proto10:
		w.closeAfter = true // the body ends with the connection
	default:
		w.chunked = true
	}
	if q.close || !c.s.keepAlives() {
		w.closeAfter = true
	}
	if v := h["Connection"]; len(v) > 0 && HasToken(v[0], "close") {
		w.closeAfter = true // the router's own pages ask for it so
	}
	if q.expect {
		c.wmu.Lock()
		w.started = true
		c.wmu.Unlock()
	} else {
		w.started = true
	}
	c.sendDeadline()

	bw := c.bw
	bw.WriteString("HTTP/1.1 ")
	bw.WriteString(statusLine(code))
	bw.WriteString("\r\n")
	hasDate := false
	for k, vv := range h {
		switch {
		case k == "Connection" || k == "Transfer-Encoding" || strings.HasPrefix(k, http.TrailerPrefix):
			continue
		case k == "Date":
			hasDate = len(vv) > 0
		}
		writeFields(bw, k, vv)
	}
	if !hasDate {
		bw.WriteString("Date: ")
		bw.WriteString(httpDate())
		bw.WriteString("\r\n")
	}
	if w.chunked {
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	switch {
	case w.closeAfter:
		bw.WriteString("Connection: close\r\n")
	case q.proto10:
		bw.WriteString("Connection: keep-alive\r\n")
	}
	bw.WriteString("\r\n")
}

// writeFields writes one header line per value. Line breaks in a value
// become spaces, so that no value can start a line of its own.
func writeFields(bw *bufio.Writer, key string, vals []string) {
	for _, v := range vals {
		bw.WriteString(key)
		bw.WriteString(": ")
		if strings.IndexByte(v, '\r') >= 0 || strings.IndexByte(v, '\n') >= 0 {
			v = strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
		}
		bw.WriteString(v)
		bw.WriteString("\r\n")
	}
}

func (w *writer) Write(p []byte) (int, error) {
	if err := w.beginWrite(len(p)); err != nil {
		return 0, err
	}
	n, err := w.c.bw.Write(p)
	return n, w.endWrite(n, err)
}

// WriteString is Write without the copy to a byte slice.
func (w *writer) WriteString(s string) (int, error) {
	if err := w.beginWrite(len(s)); err != nil {
		return 0, err
	}
	n, err := w.c.bw.WriteString(s)
	return n, w.endWrite(n, err)
}

// beginWrite writes the head if needed, checks that n more body bytes are
// allowed, and starts a chunk.
func (w *writer) beginWrite(n int) error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	switch {
	case w.hijacked:
		return http.ErrHijacked
	case w.err != nil:
		return w.err
	case w.noBody:
		return http.ErrBodyNotAllowed
	case !w.chunked && w.remain >= 0 && int64(n) > w.remain:
		return http.ErrContentLength
	}
	w.c.sendDeadline()
	if w.chunked && n > 0 {
		bw := w.c.bw
		bw.Write(strconv.AppendUint(bw.AvailableBuffer(), uint64(n), 16))
		bw.WriteString("\r\n")
	}
	return nil
}

func (w *writer) endWrite(n int, err error) error {
	if w.chunked && n > 0 {
		w.c.bw.WriteString("\r\n")
	}
	if !w.chunked && w.remain >= 0 {
		w.remain -= int64(n)
	}
	if err != nil && w.err == nil {
		w.err = err
	}
	return err
}

// Flush sends what is buffered, the head included.
func (w *writer) Flush() {
	if w.hijacked {
		return
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	w.c.sendDeadline()
	if err := w.c.bw.Flush(); err != nil && w.err == nil {
		w.err = err
	}
}

// Hijack hands the connection over for an upgrade. The returned
// ReadWriter holds what the client sent after the request head.
func (w *writer) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.wroteHeader {
		return nil, nil, errors.New("router: hijack after the response head")
	}
	w.hijacked = true
	return &hijackedConn{Conn: w.c.rwc, c: w.c}, bufio.NewReadWriter(w.c.br, w.c.bw), nil
}

// hijackedConn is a client connection taken over for an upgrade: closing
// it counts it out of the connection limit.
type hijackedConn struct {
	net.Conn
	c *Conn
}

func (h *hijackedConn) Close() error {
	err := h.Conn.Close()
	h.c.release()
	return err
}

// CloseWrite half-closes the connection (TCP, TLS).
func (h *hijackedConn) CloseWrite() error {
	if cw, ok := h.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return h.Conn.Close()
}

// finish ends the response: the last chunk and the trailers, and a flush.
// A Content-Length body cut short leaves the connection unusable.
func (w *writer) finish() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	bw := w.c.bw
	switch {
	case w.chunked:
		bw.WriteString("0\r\n")
		for k, vv := range w.h {
			if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
				writeFields(bw, name, vv)
			}
		}
		bw.WriteString("\r\n")
	case !w.noBody && w.remain > 0:
		w.closeAfter = true
	}
	w.c.sendDeadline()
	if err := bw.Flush(); err != nil && w.err == nil {
		w.err = err
	}
}

// statusLines holds "200 OK" and the like for the codes that have a text.
var statusLines = func() (t [600]string) {
	for code := range t {
		if text := http.StatusText(code); text != "" {
			t[code] = strconv.Itoa(code) + " " + text
		}
	}
	return t
}()

// statusLine returns the status code and reason phrase of a status line,
// as net/http writes them.
func statusLine(code int) string {
	if code >= 0 && code < len(statusLines) && statusLines[code] != "" {
		return statusLines[code]
	}
	return strconv.Itoa(code) + " status code " + strconv.Itoa(code)
}

// cachedDate is the Date header value of one second.
type cachedDate struct {
	unix  int64
	value string
}

var lastDate atomic.Pointer[cachedDate]

// httpDate returns the current time as a Date header value, formatted once
// a second.
func httpDate() string {
	now := time.Now()
	if d := lastDate.Load(); d != nil && d.unix == now.Unix() {
		return d.value
	}
	d := &cachedDate{unix: now.Unix(), value: now.UTC().Format(http.TimeFormat)}
	lastDate.Store(d)
	return d.value
}
