package router

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/gantryhq/gantry/router/internal/h1"
)

// copyError says which side of the proxy failed while a body was copied.
type copyError struct {
	client bool // writing to the client failed; otherwise reading the backend
	err    error
}

func (e *copyError) Error() string {
	if e.client {
		return "write to client: " + e.err.Error()
	}
	return "read from backend: " + e.err.Error()
}

func (e *copyError) Unwrap() error { return e.err }

// copyResponse copies the body announced by hd from c to w and returns the
// bytes written. It writes straight from c's read buffer. Whenever the
// backend has nothing more buffered it flushes w before waiting, so a
// streamed response (server-sent events, long polls) reaches the client as
// the backend writes it, while a body that is already complete goes out in
// as few writes as possible.
func copyResponse(x *exchange, c *upstreamConn, hd *h1.ResponseHead) (int64, error) {
	if hd.NoBody {
		return 0, nil
	}
	w := x.w
	bc := bodyCopier{x: x, w: w, c: c}
	bc.fl, _ = w.(http.Flusher)
	if hd.Chunked {
		err := bc.chunked()
		if err == nil {
			if terr := h1.ReadTrailers(c.br, w.Header()); terr != nil {
				hd.KeepAlive = false
			}
		}
		return bc.n, err
	}
	if hd.Length < 0 {
		err := bc.copy(-1)
		if err != nil && errors.Is(err, io.EOF) {
			err = nil // the body ends with the connection
		}
		return bc.n, err
	}
	return bc.n, bc.copy(hd.Length)
}

// bodyCopier copies a response body from a backend's read buffer to the
// client.
type bodyCopier struct {
	x  *exchange
	w  io.Writer
	fl http.Flusher
	c  *upstreamConn
	n  int64 // bytes written to w
}

// more waits for more bytes from the backend, flushing what the client has
// been sent so far first. Errors are copyErrors.
func (bc *bodyCopier) more() error {
	if bc.fl != nil && bc.n > 0 {
		bc.fl.Flush()
	}
	if err := bc.c.fill(bc.x); err != nil {
		if bc.x.left() != nil {
			return &copyError{client: true, err: err}
		}
		return &copyError{err: err}
	}
	return nil
}

// copy copies n bytes, or until the backend closes when n < 0 (the error
// then wraps io.EOF).
func (bc *bodyCopier) copy(n int64) error {
	br := bc.c.br
	for n != 0 {
		if br.Buffered() == 0 {
			if err := bc.more(); err != nil {
				if n > 0 && errors.Is(err, io.EOF) {
					return &copyError{err: io.ErrUnexpectedEOF}
				}
				return err
			}
		}
		k := br.Buffered()
		if n >= 0 && int64(k) > n {
			k = int(n)
		}
		b, _ := br.Peek(k)
		m, err := bc.w.Write(b)
		br.Discard(k)
		bc.n += int64(m)
		if n > 0 {
			n -= int64(k)
		}
		if err != nil {
			return &copyError{client: true, err: err}
		}
	}
	return nil
}

// maxChunkLine bounds a chunk size line, extensions included.
const maxChunkLine = 4096

// chunked copies a chunked body's data (not its framing) up to the last
// chunk; the trailer section is left in the buffer. It is written against
// the read buffer so that waiting for a slow backend can be resumed after
// each cancelCheck deadline, which a plain chunked io.Reader cannot.
func (bc *bodyCopier) chunked() error {
	br := bc.c.br
	for {
		line, err := bc.line()
		if err != nil {
			return err
		}
		size, err := h1.ParseChunkSize(line)
		if err != nil {
			return &copyError{err: err}
		}
		if size == 0 {
			return nil
		}
		if err := bc.copy(size); err != nil {
			return err
		}
		for br.Buffered() < 2 {
			if err := bc.more(); err != nil {
				if errors.Is(err, io.EOF) && br.Buffered() == 1 {
					break
				}
				return err
			}
		}
		crlf, _ := br.Peek(min(2, br.Buffered()))
		switch {
		case len(crlf) == 2 && crlf[0] == '\r' && crlf[1] == '\n':
			br.Discard(2)
		case len(crlf) >= 1 && crlf[0] == '\n':
			br.Discard(1)
		default:
			return &copyError{err: fmt.Errorf("%w: no line end after a chunk", h1.ErrBadResponse)}
		}
	}
}

// line returns the next line in the read buffer, without its line end, and
// consumes it.
func (bc *bodyCopier) line() (string, error) {
	br := bc.c.br
	from := 0
	for {
		buf, _ := br.Peek(br.Buffered())
		if i := bytes.IndexByte(buf[from:], '\n'); i >= 0 {
			end := from + i
			line := string(bytes.TrimSuffix(buf[:end], []byte("\r")))
			br.Discard(end + 1)
			return line, nil
		}
		if len(buf) >= maxChunkLine || len(buf) == br.Size() {
			return "", &copyError{err: fmt.Errorf("%w: chunk size line too long", h1.ErrBadResponse)}
		}
		from = len(buf)
		if err := bc.more(); err != nil {
			if errors.Is(err, io.EOF) {
				return "", &copyError{err: io.ErrUnexpectedEOF}
			}
			return "", err
		}
	}
}

// bufPool holds the 32 KiB buffers request bodies are copied through.
var bufPool = sync.Pool{New: func() any {
	b := make([]byte, 32<<10)
	return &b
}}
