package attach

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	tests := []struct {
		name  string
		frame Frame
		check func(t *testing.T, f Frame)
	}{
		{"stdin", Frame{Type: Stdin, Data: []byte("echo hi\n")}, nil},
		{"end of stdin", Frame{Type: Stdin, Data: []byte{}}, nil},
		{"stdout", Frame{Type: Stdout, Data: []byte("hi\r\n")}, nil},
		{"stderr", Frame{Type: Stderr, Data: []byte{0, 1, 2, 255}}, nil},
		{"resize", ResizeFrame(40, 132), func(t *testing.T, f Frame) {
			if r, c := f.Size(); r != 40 || c != 132 {
				t.Errorf("size %dx%d, want 40x132", r, c)
			}
		}},
		{"signal", SignalFrame("INT"), func(t *testing.T, f Frame) {
			if string(f.Data) != "INT" {
				t.Errorf("signal %q", f.Data)
			}
		}},
		{"exit 3", ExitFrame(3), func(t *testing.T, f Frame) {
			if f.ExitCode() != 3 {
				t.Errorf("exit %d, want 3", f.ExitCode())
			}
		}},
		{"exit -1", ExitFrame(-1), func(t *testing.T, f Frame) {
			if f.ExitCode() != -1 {
				t.Errorf("exit %d, want -1", f.ExitCode())
			}
		}},
		{"error", ErrorFrame("exec: \"nope\": executable file not found"), nil},
		{"largest payload", Frame{Type: Stdout, Data: bytes.Repeat([]byte("x"), MaxPayload)}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := NewWriter(&buf).Write(tc.frame); err != nil {
				t.Fatalf("write: %v", err)
			}
			r := NewReader(&buf)
			got, err := r.Read()
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if got.Type != tc.frame.Type || !bytes.Equal(got.Data, tc.frame.Data) {
				t.Fatalf("read %v %q, want %v %q", got.Type, got.Data, tc.frame.Type, tc.frame.Data)
			}
			if tc.check != nil {
				tc.check(t, got)
			}
			if _, err := r.Read(); err != io.EOF {
				t.Fatalf("after the frame: %v, want io.EOF", err)
			}
		})
	}
}

func TestReaderRefuses(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"truncated header", []byte{1, 0, 0}, io.ErrUnexpectedEOF},
		{"truncated payload", []byte{1, 0, 0, 0, 5, 'a', 'b'}, io.ErrUnexpectedEOF},
		{"unknown type", []byte{9, 0, 0, 0, 0}, ErrMalformed},
		{"payload too large", []byte{1, 0, 1, 0, 0}, ErrMalformed},
		{"resize of 3 bytes", []byte{3, 0, 0, 0, 3, 0, 1, 0}, ErrMalformed},
		{"resize to zero rows", []byte{3, 0, 0, 0, 4, 0, 0, 0, 80}, ErrMalformed},
		{"unknown signal", []byte{4, 0, 0, 0, 4, 'B', 'O', 'O', 'M'}, ErrMalformed},
		{"signal with SIG prefix", []byte{4, 0, 0, 0, 6, 'S', 'I', 'G', 'I', 'N', 'T'}, ErrMalformed},
		{"short exit", []byte{5, 0, 0, 0, 1, 3}, ErrMalformed},
		{"error not UTF-8", []byte{6, 0, 0, 0, 1, 0xff}, ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewReader(bytes.NewReader(tc.in)).Read()
			if !errors.Is(err, tc.want) {
				t.Fatalf("read: %v, want %v", err, tc.want)
			}
		})
	}
}

func TestWriterRefuses(t *testing.T) {
	for _, f := range []Frame{
		{Type: 42},
		{Type: Stdout, Data: make([]byte, MaxPayload+1)},
		SignalFrame("STOP"),
		{Type: Resize, Data: []byte{0, 0, 0, 0}},
	} {
		var buf bytes.Buffer
		if err := NewWriter(&buf).Write(f); !errors.Is(err, ErrMalformed) || buf.Len() > 0 {
			t.Errorf("write %v: %v, %d bytes written; want ErrMalformed and nothing", f.Type, err, buf.Len())
		}
	}
}

func TestErrorFrameCutsLongMessages(t *testing.T) {
	f := ErrorFrame(strings.Repeat("é", MaxPayload))
	if len(f.Data) > MaxPayload || f.validate() != nil {
		t.Fatalf("%d bytes, valid: %v", len(f.Data), f.validate())
	}
}

// TestStream checks that a stream splits large writes into frames and that
// concurrent writers never interleave within a frame.
func TestStream(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	big := bytes.Repeat([]byte("o"), 2*MaxPayload+10)
	var wg sync.WaitGroup
	wg.Go(func() {
		if _, err := w.Stream(Stdout).Write(big); err != nil {
			t.Error(err)
		}
	})
	wg.Go(func() {
		for range 100 {
			if _, err := w.Stream(Stderr).Write([]byte("e")); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Wait()
	r := NewReader(&buf)
	var out, errs []byte
	frames := 0
	for {
		f, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		frames++
		switch f.Type {
		case Stdout:
			out = append(out, f.Data...)
		case Stderr:
			errs = append(errs, f.Data...)
		default:
			t.Fatalf("frame %v", f.Type)
		}
	}
	if !bytes.Equal(out, big) || len(errs) != 100 || frames != 3+100 {
		t.Fatalf("stdout %d bytes, stderr %d bytes, %d frames", len(out), len(errs), frames)
	}
}

// FuzzReader feeds arbitrary bytes to the frame parser: it never panics,
// and every frame it accepts is written back as the same bytes.
func FuzzReader(f *testing.F) {
	var seed bytes.Buffer
	w := NewWriter(&seed)
	for _, fr := range []Frame{{Type: Stdin, Data: []byte("ls\n")}, ResizeFrame(24, 80), SignalFrame("TERM"), ExitFrame(130), ErrorFrame("no")} {
		if err := w.Write(fr); err != nil {
			f.Fatal(err)
		}
	}
	f.Add(seed.Bytes())
	f.Add([]byte{})
	f.Add([]byte{3, 0, 0, 0, 4, 0, 0, 0, 0})
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, in []byte) {
		r := NewReader(bytes.NewReader(in))
		var out bytes.Buffer
		w := NewWriter(&out)
		consumed := 0
		for {
			fr, err := r.Read()
			if err != nil {
				break
			}
			if err := w.Write(fr); err != nil {
				t.Fatalf("an accepted %v frame does not write back: %v", fr.Type, err)
			}
			consumed = out.Len()
		}
		if !bytes.Equal(out.Bytes(), in[:consumed]) {
			t.Fatalf("accepted frames re-encode as %x, read from %x", out.Bytes(), in[:consumed])
		}
	})
}
