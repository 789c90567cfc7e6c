package types

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
	"unicode/utf8"
)

// The compact wire format of POST /v1/ingest/frames, which the Shipper
// uses instead of NDJSON: no text to escape or parse, and a line is
// encoded and decoded without allocating.
//
// A body is FrameMagic followed by frames. A frame is its length (the
// bytes after the length, as an unsigned varint, 1 to MaxFrame) and then:
//
//	source    1 byte: 1 app, 2 router, 3 gantry
//	app       uvarint length, bytes
//	type      uvarint length, bytes (length 0: none)
//	job       uvarint length, bytes (length 0: none)
//	index     uvarint
//	time      8 bytes, little-endian: seconds since 1970-01-01 UTC (signed)
//	          4 bytes, little-endian: nanoseconds within the second
//	msg       the rest of the frame
//
// The fields follow the rules of Line (see Line.Validate).
const (
	// FrameMagic starts every frames body; its last byte is the format's
	// version, 1.
	FrameMagic = "GLF\x01"
	// FrameContentType is the Content-Type of a frames body.
	FrameContentType = "application/vnd.gantry.log-frames.v1"
	// MaxFrame is the largest frame length: a Line whose fields are all at
	// their longest.
	MaxFrame = 1 + 2 + 30 + 2 + 30 + 2 + 128 + binary.MaxVarintLen64 + 12 + MaxMsg
	// MaxFrameHeader is the most bytes a frame's length takes.
	MaxFrameHeader = 3
)

// Frame sources, the first byte of a frame.
const (
	frameApp    = 1
	frameRouter = 2
	frameGantry = 3
)

var (
	// ErrMalformedFrame is wrapped by the errors of DecodeFrame for bytes
	// that are not a frame; field errors wrap ErrInvalidLine instead.
	ErrMalformedFrame = errors.New("malformed frame")
	// ErrShortFrame is returned by DecodeFrame when the bytes end before
	// the frame does: read more and decode again.
	ErrShortFrame = errors.New("incomplete frame")
)

// Frame is a decoded frame. Its byte slices point into the decoded bytes:
// copy them to keep them (Frame.Line does).
type Frame struct {
	// App, Type, Job and Msg are the fields of a Line.
	App, Type, Job, Msg []byte
	// Source is SourceApp, SourceRouter or SourceGantry.
	Source string
	// Index is the job's index.
	Index int
	// Time is the line's time, in UTC.
	Time time.Time
}

// Line returns f as a Line (its strings are copies).
func (f *Frame) Line() Line {
	return Line{App: string(f.App), Source: f.Source, Type: string(f.Type), Job: string(f.Job), Index: f.Index, Time: f.Time, Msg: string(f.Msg)}
}

// AppendFrame appends l's frame to b. l must be valid (see Line.Validate).
func AppendFrame(b []byte, l Line) []byte {
	return append(appendFrameHead(b, &l, len(l.Msg)), l.Msg...)
}

// AppendFrameMsg appends the frame of l with msg as its text (l.Msg is
// ignored) to b. The line must be valid with msg (see ValidMsg).
func AppendFrameMsg(b []byte, l Line, msg []byte) []byte {
	return append(appendFrameHead(b, &l, len(msg)), msg...)
}

// appendFrameHead appends the frame of l up to its text, which is msgLen
// bytes long.
func appendFrameHead(b []byte, l *Line, msgLen int) []byte {
	n := 1 + uvarintLen(uint64(len(l.App))) + len(l.App) + uvarintLen(uint64(len(l.Type))) + len(l.Type) +
		uvarintLen(uint64(len(l.Job))) + len(l.Job) + uvarintLen(uint64(l.Index)) + 12 + msgLen
	b = binary.AppendUvarint(b, uint64(n))
	switch l.Source {
	case SourceApp:
		b = append(b, frameApp)
	case SourceRouter:
		b = append(b, frameRouter)
	default:
		b = append(b, frameGantry)
	}
	b = binary.AppendUvarint(b, uint64(len(l.App)))
	b = append(b, l.App...)
	b = binary.AppendUvarint(b, uint64(len(l.Type)))
	b = append(b, l.Type...)
	b = binary.AppendUvarint(b, uint64(len(l.Job)))
	b = append(b, l.Job...)
	b = binary.AppendUvarint(b, uint64(l.Index))
	b = binary.LittleEndian.AppendUint64(b, uint64(l.Time.Unix()))
	return binary.LittleEndian.AppendUint32(b, uint32(l.Time.Nanosecond()))
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// DecodeFrame decodes the frame at the start of b into f and returns its
// length in b, length prefix included. It returns ErrShortFrame when b
// ends inside the frame, an error wrapping ErrMalformedFrame for bytes
// that are not a frame, and one wrapping ErrInvalidLine for a frame whose
// fields break the rules of Line. f's slices point into b. It allocates
// nothing.
func DecodeFrame(b []byte, f *Frame) (int, error) {
	size, k := binary.Uvarint(b)
	switch {
	case k == 0 && len(b) < MaxFrameHeader:
		return 0, ErrShortFrame
	case k <= 0 || k > MaxFrameHeader:
		return 0, fmt.Errorf("%w: bad length", ErrMalformedFrame)
	case size == 0 || size > MaxFrame:
		return 0, fmt.Errorf("%w: length %d: want 1 to %d", ErrMalformedFrame, size, MaxFrame)
	case uint64(len(b)-k) < size:
		return 0, ErrShortFrame
	}
	total := k + int(size)
	p := b[k:total]
	switch p[0] {
	case frameApp:
		f.Source = SourceApp
	case frameRouter:
		f.Source = SourceRouter
	case frameGantry:
		f.Source = SourceGantry
	default:
		return 0, fmt.Errorf("%w: source %d: want 1, 2 or 3", ErrMalformedFrame, p[0])
	}
	p = p[1:]
	var ok bool
	if f.App, p, ok = field(p); !ok {
		return 0, fmt.Errorf("%w: app cut short", ErrMalformedFrame)
	}
	if f.Type, p, ok = field(p); !ok {
		return 0, fmt.Errorf("%w: type cut short", ErrMalformedFrame)
	}
	if f.Job, p, ok = field(p); !ok {
		return 0, fmt.Errorf("%w: job cut short", ErrMalformedFrame)
	}
	index, k := binary.Uvarint(p)
	if k <= 0 || len(p)-k < 12 {
		return 0, fmt.Errorf("%w: index or time cut short", ErrMalformedFrame)
	}
	p = p[k:]
	sec, nsec := int64(binary.LittleEndian.Uint64(p)), binary.LittleEndian.Uint32(p[8:])
	if nsec >= 1e9 {
		return 0, fmt.Errorf("%w: nanoseconds %d: want under 1e9", ErrMalformedFrame, nsec)
	}
	f.Time = time.Unix(sec, int64(nsec)).UTC()
	f.Msg = p[12:]
	switch {
	case !validApp(f.App):
		return 0, invalidf("app %q: want 2 to 30 lower-case letters, digits and dashes, starting with a letter", f.App)
	case len(f.Type) > 0 && !validType(f.Type):
		return 0, invalidf("type %q: want 1 to 30 lower-case letters, digits, dashes and underscores, starting with a letter", f.Type)
	case len(f.Job) > 0 && !validJob(f.Job):
		return 0, invalidf("job %q: want 1 to 128 letters, digits, dots, dashes and underscores", f.Job)
	case index > math.MaxInt:
		return 0, invalidf("index %d: too large", index)
	case f.Time.IsZero():
		return 0, invalidf("time is missing")
	}
	if err := ValidMsg(f.Msg); err != nil {
		return 0, err
	}
	f.Index = int(index)
	return total, nil
}

// field splits a length-prefixed field off p.
func field(p []byte) ([]byte, []byte, bool) {
	n, k := binary.Uvarint(p)
	if k <= 0 || uint64(len(p)-k) < n {
		return nil, nil, false
	}
	end := k + int(n)
	return p[k:end], p[end:], true
}

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidLine, fmt.Sprintf(format, args...))
}

// ValidMsg returns an error wrapping ErrInvalidLine when msg cannot be a
// Line's Msg: longer than MaxMsg, holding a line break, or not UTF-8.
func ValidMsg(msg []byte) error {
	switch {
	case len(msg) > MaxMsg:
		return invalidf("msg is %d bytes, longer than %d", len(msg), MaxMsg)
	case bytes.IndexByte(msg, '\n') >= 0 || bytes.IndexByte(msg, '\r') >= 0:
		return invalidf("msg holds a line break; send one line per line")
	case !utf8.Valid(msg):
		return invalidf("msg is not valid UTF-8")
	}
	return nil
}

// Frames calls fn with each frame of a frames body after FrameMagic, in
// order, and stops at the first error (fn's, or one of DecodeFrame's; a
// body that ends inside a frame is ErrShortFrame).
func Frames(b []byte, fn func(*Frame) error) error {
	var f Frame
	for len(b) > 0 {
		n, err := DecodeFrame(b, &f)
		if err != nil {
			return err
		}
		if err := fn(&f); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// SkipFrames returns b without its first n frames (all of them when it
// holds fewer). b must hold whole frames, as made by AppendFrame.
func SkipFrames(b []byte, n int) []byte {
	for ; n > 0 && len(b) > 0; n-- {
		size, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < size {
			return nil
		}
		b = b[k+int(size):]
	}
	return b
}
