// Package attach is the framed stream protocol of an attached job (`gantry
// run`): the client's stdin, the job's stdout and stderr, terminal resizes,
// signals and the exit status travel as frames over one hijacked HTTP/1.1
// connection (Upgrade: gantry-attach/1), from the CLI to the controller and
// from the controller to the host agent that runs the job.
//
// A frame is a 5-byte header, the type (1 byte) and the payload length (4
// bytes, big-endian, at most MaxPayload), followed by the payload:
//
//	type  name    direction      payload
//	0     stdin   client -> job  bytes for the job's stdin; empty: end of stdin
//	1     stdout  job -> client  bytes the job wrote on stdout (or its terminal)
//	2     stderr  job -> client  bytes the job wrote on stderr (no terminal)
//	3     resize  client -> job  rows, cols: two big-endian uint16, both > 0
//	4     signal  client -> job  a signal name without "SIG" (see Signals)
//	5     exit    job -> client  the exit status, a big-endian int32; last frame
//	6     error   job -> client  why the job failed to run (UTF-8 text)
//
// The job side sends exit last and closes the connection; an error frame,
// when there is one, comes before it. A client that goes away before the
// exit frame makes the host agent kill the job.
package attach

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"unicode/utf8"
)

// Type is the type of a frame.
type Type byte

// The frame types.
const (
	Stdin  Type = 0
	Stdout Type = 1
	Stderr Type = 2
	Resize Type = 3
	Signal Type = 4
	Exit   Type = 5
	Error  Type = 6
)

func (t Type) String() string {
	switch t {
	case Stdin:
		return "stdin"
	case Stdout:
		return "stdout"
	case Stderr:
		return "stderr"
	case Resize:
		return "resize"
	case Signal:
		return "signal"
	case Exit:
		return "exit"
	case Error:
		return "error"
	}
	return fmt.Sprintf("type %d", byte(t))
}

const (
	// MaxPayload bounds the payload of one frame, in bytes.
	MaxPayload = 32 << 10
	// headerLen is the size of a frame header: type and length.
	headerLen = 5
)

// Signals are the signals a client may send to a job, by name.
var Signals = []string{"HUP", "INT", "QUIT", "KILL", "USR1", "USR2", "TERM", "WINCH"}

// ErrMalformed is wrapped by the errors of a frame that breaks the
// protocol.
var ErrMalformed = errors.New("malformed attach frame")

// Frame is one frame of the protocol.
type Frame struct {
	Type Type
	Data []byte
}

// ResizeFrame is a terminal resize to rows x cols.
func ResizeFrame(rows, cols uint16) Frame {
	return Frame{Type: Resize, Data: binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, rows), cols)}
}

// SignalFrame asks for signal name (one of Signals) to be sent to the job.
func SignalFrame(name string) Frame { return Frame{Type: Signal, Data: []byte(name)} }

// ExitFrame carries the job's exit status.
func ExitFrame(code int) Frame {
	return Frame{Type: Exit, Data: binary.BigEndian.AppendUint32(nil, uint32(int32(code)))}
}

// ErrorFrame says why the job failed to run; a message longer than
// MaxPayload is cut.
func ErrorFrame(msg string) Frame {
	if len(msg) > MaxPayload {
		msg = msg[:MaxPayload]
		for !utf8.ValidString(msg) {
			msg = msg[:len(msg)-1]
		}
	}
	return Frame{Type: Error, Data: []byte(msg)}
}

// Size returns the rows and columns of a resize frame.
func (f Frame) Size() (rows, cols uint16) {
	if f.Type != Resize || len(f.Data) != 4 {
		return 0, 0
	}
	return binary.BigEndian.Uint16(f.Data), binary.BigEndian.Uint16(f.Data[2:])
}

// ExitCode returns the status of an exit frame.
func (f Frame) ExitCode() int {
	if f.Type != Exit || len(f.Data) != 4 {
		return 0
	}
	return int(int32(binary.BigEndian.Uint32(f.Data)))
}

// validate checks the payload of f against its type.
func (f Frame) validate() error {
	if len(f.Data) > MaxPayload {
		return fmt.Errorf("%w: %s payload of %d bytes (at most %d)", ErrMalformed, f.Type, len(f.Data), MaxPayload)
	}
	switch f.Type {
	case Stdin, Stdout, Stderr:
	case Resize:
		if rows, cols := f.Size(); len(f.Data) != 4 || rows == 0 || cols == 0 {
			return fmt.Errorf("%w: resize payload must be two non-zero uint16 (rows, cols)", ErrMalformed)
		}
	case Signal:
		if !slices.Contains(Signals, string(f.Data)) {
			return fmt.Errorf("%w: signal %q is not one of %v", ErrMalformed, f.Data, Signals)
		}
	case Exit:
		if len(f.Data) != 4 {
			return fmt.Errorf("%w: exit payload must be a 4-byte status", ErrMalformed)
		}
	case Error:
		if !utf8.Valid(f.Data) {
			return fmt.Errorf("%w: error message is not UTF-8", ErrMalformed)
		}
	default:
		return fmt.Errorf("%w: unknown frame type %d", ErrMalformed, byte(f.Type))
	}
	return nil
}

// Reader reads frames from a stream.
type Reader struct {
	r   io.Reader
	hdr [headerLen]byte
}

// NewReader returns a Reader of r.
func NewReader(r io.Reader) *Reader { return &Reader{r: r} }

// Read returns the next frame. It returns io.EOF at the end of the stream
// between frames, io.ErrUnexpectedEOF within one, and an error wrapping
// ErrMalformed for a frame that breaks the protocol. The frame's Data is
// its own.
func (r *Reader) Read() (Frame, error) {
	if _, err := io.ReadFull(r.r, r.hdr[:]); err != nil {
		return Frame{}, err
	}
	f := Frame{Type: Type(r.hdr[0])}
	n := binary.BigEndian.Uint32(r.hdr[1:])
	if n > MaxPayload {
		return Frame{}, fmt.Errorf("%w: %s payload of %d bytes (at most %d)", ErrMalformed, f.Type, n, MaxPayload)
	}
	f.Data = make([]byte, n)
	if _, err := io.ReadFull(r.r, f.Data); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, err
	}
	if err := f.validate(); err != nil {
		return Frame{}, err
	}
	return f, nil
}

// Writer writes frames to a stream. It is safe for concurrent use: each
// frame is written whole.
type Writer struct {
	mu  sync.Mutex
	w   io.Writer
	buf []byte
}

// NewWriter returns a Writer to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Write writes f, or returns an error wrapping ErrMalformed without
// writing anything when f breaks the protocol.
func (w *Writer) Write(f Frame) error {
	if err := f.validate(); err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf[:0], byte(f.Type))
	w.buf = binary.BigEndian.AppendUint32(w.buf, uint32(len(f.Data)))
	w.buf = append(w.buf, f.Data...)
	_, err := w.w.Write(w.buf)
	return err
}

// Stream returns an io.Writer that sends what is written to it as frames
// of type t (Stdin, Stdout or Stderr), at most MaxPayload bytes each. An
// empty write sends nothing.
func (w *Writer) Stream(t Type) io.Writer { return &stream{w: w, t: t} }

type stream struct {
	w *Writer
	t Type
}

func (s *stream) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), MaxPayload)]
		if err := s.w.Write(Frame{Type: s.t, Data: chunk}); err != nil {
			return n, err
		}
		n += len(chunk)
		p = p[len(chunk):]
	}
	return n, nil
}
