package slugbuilder

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"
)

const (
	// stepPrefix starts a step line; such lines are printed as they are.
	stepPrefix = "-----> "
	// indent starts every other line of build output.
	indent = "       "
	// errorPrefix starts an error line.
	errorPrefix = " !     "
	// maxLine bounds a line held while waiting for its newline; a longer one
	// is written out in pieces.
	maxLine = 64 << 10
)

// lineWriter formats build output the Heroku way: it writes complete lines
// to out as they arrive, lines starting with "-----> " unchanged and every
// other line indented by seven spaces. It is safe for concurrent use; Flush
// writes a trailing partial line.
type lineWriter struct {
	mu  sync.Mutex
	out io.Writer
	buf []byte
}

var _ io.Writer = (*lineWriter)(nil)

func newLineWriter(out io.Writer) *lineWriter { return &lineWriter{out: out} }

// Write buffers p and writes out each complete line. Errors of the
// underlying writer are not returned: a reader that went away must not fail
// the build.
func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.emit(w.buf[:i])
		w.buf = w.buf[i+1:]
	}
	for len(w.buf) >= maxLine {
		w.emit(w.buf[:maxLine])
		w.buf = w.buf[maxLine:]
	}
	if len(w.buf) == 0 {
		w.buf = nil
	}
	return len(p), nil
}

// Flush writes a pending partial line, if any.
func (w *lineWriter) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.emit(w.buf)
		w.buf = nil
	}
}

func (w *lineWriter) emit(line []byte) {
	line = bytes.TrimSuffix(line, []byte("\r"))
	var b []byte
	if !bytes.HasPrefix(line, []byte(stepPrefix)) {
		b = append(b, indent...)
	}
	b = append(b, line...)
	b = append(b, '\n')
	_, _ = w.out.Write(b)
}

// step prints a "-----> " line.
func (w *lineWriter) step(format string, args ...any) {
	w.lines(stepPrefix, fmt.Sprintf(format, args...))
}

// info prints msg as indented lines.
func (w *lineWriter) info(format string, args ...any) {
	w.lines(indent, fmt.Sprintf(format, args...))
}

// fail prints msg as " !     " lines.
func (w *lineWriter) fail(msg string) { w.lines(errorPrefix, msg) }

// lines writes each line of msg after prefix, once a pending partial line
// is out.
func (w *lineWriter) lines(prefix, msg string) {
	w.Flush()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, line := range strings.Split(strings.TrimRight(msg, "\n"), "\n") {
		_, _ = w.out.Write([]byte(prefix + line + "\n"))
	}
}

// humanSize formats a byte count the way build output shows it: 812K, 4.2M,
// 1.3G.
func humanSize(n int64) string {
	const (
		kib = 1 << 10
		mib = 1 << 20
		gib = 1 << 30
	)
	switch {
	case n < mib:
		return fmt.Sprintf("%dK", (n+kib-1)/kib)
	case n < gib:
		return fmt.Sprintf("%.1fM", float64(n)/mib)
	default:
		return fmt.Sprintf("%.1fG", float64(n)/gib)
	}
}
