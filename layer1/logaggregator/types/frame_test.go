package types_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/layer1/logaggregator/types"
)

var frameTime = time.Date(2026, 12, 7, 9, 30, 1, 123456789, time.UTC)

func TestFrameRoundTrip(t *testing.T) {
	cases := []struct {
		name string
		line types.Line
	}{
		{"router line", types.Line{App: "demo", Source: types.SourceRouter, Time: frameTime,
			Msg: `at=info method=GET path="/" host=demo.localhost request_id=abc fwd="127.0.0.1" status=200 bytes=12 service=3ms protocol=http`}},
		{"app line of a job", types.Line{App: "go-web", Source: types.SourceApp, Type: "web", Job: "j-1.a_B", Index: 3, Time: frameTime, Msg: "listening on :5000"}},
		{"gantry event", types.Line{App: "demo", Source: types.SourceGantry, Time: frameTime, Msg: "web.1 crashed (exit 1)"}},
		{"empty msg", types.Line{App: "ab", Source: types.SourceApp, Time: frameTime}},
		{"unicode msg", types.Line{App: "demo", Source: types.SourceApp, Time: frameTime, Msg: "héllo \u2028 <&> \"q\" \t\\"}},
		{"longest msg", types.Line{App: "demo", Source: types.SourceApp, Time: frameTime, Msg: strings.Repeat("é", types.MaxMsg/2)}},
		{"longest fields", types.Line{App: "a" + strings.Repeat("b", 29), Source: types.SourceApp, Type: "w" + strings.Repeat("_", 29),
			Job: strings.Repeat("J", 128), Index: 1 << 40, Time: frameTime, Msg: strings.Repeat("x", types.MaxMsg)}},
		{"time before 1970", types.Line{App: "demo", Source: types.SourceApp, Time: time.Date(1969, 7, 20, 20, 17, 40, 5, time.UTC), Msg: "m"}},
		{"time in another zone", types.Line{App: "demo", Source: types.SourceApp, Time: frameTime.In(time.FixedZone("x", 3600)), Msg: "m"}},
		{"time of year 1", types.Line{App: "demo", Source: types.SourceApp, Time: time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC), Msg: "m"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.line.Validate(); err != nil {
				t.Fatal(err)
			}
			b := types.AppendFrame([]byte("prefix"), tc.line)
			b = b[len("prefix"):]
			if msgOnly := types.AppendFrameMsg(nil, types.Line{App: tc.line.App, Source: tc.line.Source, Type: tc.line.Type,
				Job: tc.line.Job, Index: tc.line.Index, Time: tc.line.Time, Msg: "ignored"}, []byte(tc.line.Msg)); !bytes.Equal(msgOnly, b) {
				t.Fatalf("AppendFrameMsg differs from AppendFrame:\n%x\n%x", msgOnly, b)
			}
			var f types.Frame
			n, err := types.DecodeFrame(append(b, "next"...), &f)
			if err != nil || n != len(b) {
				t.Fatalf("DecodeFrame = %d, %v; want %d, nil", n, err, len(b))
			}
			got, want := f.Line(), tc.line
			want.Time = want.Time.UTC()
			if got != want {
				t.Fatalf("decoded\n%+v\nwant\n%+v", got, want)
			}
			// Every cut of the frame is incomplete, not an error.
			for i := range len(b) {
				if _, err := types.DecodeFrame(b[:i], &f); !errors.Is(err, types.ErrShortFrame) {
					t.Fatalf("DecodeFrame of %d of %d bytes: %v, want ErrShortFrame", i, len(b), err)
				}
			}
		})
	}
}

// frame builds a frame from raw parts, bypassing AppendFrame's checks.
func frame(source byte, app, typ, job string, index uint64, sec int64, nsec uint32, msg string) []byte {
	var p []byte
	p = append(p, source)
	for _, s := range []string{app, typ, job} {
		p = binary.AppendUvarint(p, uint64(len(s)))
		p = append(p, s...)
	}
	p = binary.AppendUvarint(p, index)
	p = binary.LittleEndian.AppendUint64(p, uint64(sec))
	p = binary.LittleEndian.AppendUint32(p, nsec)
	p = append(p, msg...)
	return append(binary.AppendUvarint(nil, uint64(len(p))), p...)
}

func TestDecodeFrameErrors(t *testing.T) {
	sec := frameTime.Unix()
	zero := time.Time{}.Unix()
	cases := []struct {
		name string
		in   []byte
		want error
		msg  string
	}{
		{"zero length", []byte{0}, types.ErrMalformedFrame, "length 0"},
		{"too long", binary.AppendUvarint(nil, types.MaxFrame+1), types.ErrMalformedFrame, "length"},
		{"length of four bytes", []byte{0x80, 0x80, 0x80, 0x01}, types.ErrMalformedFrame, "bad length"},
		{"unknown source", frame(9, "demo", "", "", 0, sec, 0, "m"), types.ErrMalformedFrame, "source 9"},
		{"app cut short", []byte{3, 1, 10, 'a'}, types.ErrMalformedFrame, "app cut short"},
		{"time cut short", frame(1, "demo", "", "", 0, sec, 0, "")[:10], types.ErrShortFrame, ""},
		{"no time", []byte{8, 1, 4, 'd', 'e', 'm', 'o', 0, 0}, types.ErrMalformedFrame, "index or time"},
		{"nanoseconds too big", frame(1, "demo", "", "", 0, sec, 1e9, "m"), types.ErrMalformedFrame, "nanoseconds"},
		{"bad app", frame(1, "Demo", "", "", 0, sec, 0, "m"), types.ErrInvalidLine, "app"},
		{"short app", frame(1, "d", "", "", 0, sec, 0, "m"), types.ErrInvalidLine, "app"},
		{"bad type", frame(1, "demo", "Web", "", 0, sec, 0, "m"), types.ErrInvalidLine, "type"},
		{"bad job", frame(1, "demo", "web", "a b", 0, sec, 0, "m"), types.ErrInvalidLine, "job"},
		{"zero time", frame(1, "demo", "", "", 0, zero, 0, "m"), types.ErrInvalidLine, "time"},
		{"line break", frame(1, "demo", "", "", 0, sec, 0, "a\nb"), types.ErrInvalidLine, "line break"},
		{"carriage return", frame(1, "demo", "", "", 0, sec, 0, "a\rb"), types.ErrInvalidLine, "line break"},
		{"not UTF-8", frame(1, "demo", "", "", 0, sec, 0, "a\xffb"), types.ErrInvalidLine, "UTF-8"},
		{"msg too long", frame(1, "demo", "", "", 0, sec, 0, strings.Repeat("x", types.MaxMsg+1)), types.ErrInvalidLine, "longer"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var f types.Frame
			_, err := types.DecodeFrame(tc.in, &f)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("DecodeFrame: %v, want %v containing %q", err, tc.want, tc.msg)
			}
		})
	}
}

func TestFramesAndSkip(t *testing.T) {
	var b []byte
	for i := range 5 {
		b = types.AppendFrame(b, types.Line{App: "demo", Source: types.SourceApp, Time: frameTime, Msg: strings.Repeat("x", i*100)})
	}
	count := func(b []byte) int {
		n := 0
		if err := types.Frames(b, func(*types.Frame) error { n++; return nil }); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for _, tc := range []struct{ skip, left int }{{0, 5}, {2, 3}, {5, 0}, {7, 0}} {
		if got := count(types.SkipFrames(b, tc.skip)); got != tc.left {
			t.Errorf("SkipFrames(%d) leaves %d frames, want %d", tc.skip, got, tc.left)
		}
	}
	if err := types.Frames(b[:len(b)-1], func(*types.Frame) error { return nil }); !errors.Is(err, types.ErrShortFrame) {
		t.Errorf("Frames of a cut body: %v, want ErrShortFrame", err)
	}
}

func TestDecodeFrameAllocs(t *testing.T) {
	b := types.AppendFrame(nil, types.Line{App: "demo", Source: types.SourceRouter, Time: frameTime, Msg: "at=info method=GET"})
	var f types.Frame
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := types.DecodeFrame(b, &f); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("DecodeFrame allocates %v times per frame, want 0", allocs)
	}
}

// FuzzDecodeFrame checks that DecodeFrame never panics, that what it
// accepts is a valid line, and that encoding that line again gives the same
// bytes back (up to a non-minimal length or field varint).
func FuzzDecodeFrame(f *testing.F) {
	f.Add(types.AppendFrame(nil, types.Line{App: "demo", Source: types.SourceRouter, Time: frameTime, Msg: "at=info status=200"}))
	f.Add(types.AppendFrame(nil, types.Line{App: "go-web", Source: types.SourceApp, Type: "web", Job: "j1", Index: 2, Time: frameTime, Msg: "é"}))
	f.Add(frame(1, "demo", "", "", 0, 0, 0, "a\nb"))
	f.Add([]byte{0x80, 0x80, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		var fr types.Frame
		n, err := types.DecodeFrame(b, &fr)
		if err != nil {
			if n != 0 {
				t.Fatalf("error %v with length %d", err, n)
			}
			return
		}
		if n <= 0 || n > len(b) {
			t.Fatalf("length %d of %d bytes", n, len(b))
		}
		l := fr.Line()
		if err := l.Validate(); err != nil {
			t.Fatalf("decoded an invalid line: %v", err)
		}
		again := types.AppendFrame(nil, l)
		var fr2 types.Frame
		if n2, err := types.DecodeFrame(again, &fr2); err != nil || n2 != len(again) || fr2.Line() != l {
			t.Fatalf("re-encoded line decodes to %+v, %v", fr2.Line(), err)
		}
	})
}

func TestAppendJSON(t *testing.T) {
	cases := []types.Line{
		{App: "demo", Source: types.SourceRouter, Time: frameTime, Msg: `at=info path="/a?b=<c>&d" fwd="127.0.0.1"`},
		{App: "demo", Source: types.SourceApp, Type: "web", Job: "j1", Index: 1, Time: frameTime, Msg: "tab\there \x00\x01\x1f\x7f \b\f \\ \" é \u2028\u2029 😀"},
		{App: "demo", Source: types.SourceGantry, Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Msg: ""},
		{App: "demo", Source: types.SourceApp, Time: frameTime.In(time.FixedZone("x", -7200)), Msg: "zone"},
		{App: "demo", Source: types.SourceApp, Time: frameTime, Msg: "bad \xff utf-8 \xe2\x82"},
		{App: "demo", Source: types.SourceApp, Time: time.Date(2026, 1, 1, 0, 0, 0, 120000000, time.UTC), Msg: "tenths"},
		{App: "demo", Source: types.SourceApp, Time: time.Date(2026, 1, 1, 0, 0, 0, 1, time.UTC), Msg: "a nanosecond"},
		{App: "demo", Source: types.SourceApp, Time: time.Date(987, 1, 1, 0, 0, 0, 0, time.UTC), Msg: "year 987"},
	}
	for _, l := range cases {
		t.Run(l.Msg, func(t *testing.T) {
			checkJSON(t, l)
		})
	}
	if _, err := types.AppendJSON(nil, types.Line{App: "demo", Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}); err == nil {
		t.Error("AppendJSON of the year 10000: no error")
	}
}

func checkJSON(t *testing.T, l types.Line) {
	t.Helper()
	want, werr := json.Marshal(l)
	got, gerr := types.AppendJSON(nil, l)
	if (werr == nil) != (gerr == nil) || werr == nil && !bytes.Equal(got, want) {
		t.Fatalf("AppendJSON:\n%s (%v)\njson.Marshal:\n%s (%v)", got, gerr, want, werr)
	}
}

// FuzzAppendJSON checks AppendJSON against json.Marshal.
func FuzzAppendJSON(f *testing.F) {
	f.Add("demo", "web", "j1", 1, int64(1765099801), "at=info <&> \u2028 \xff")
	f.Fuzz(func(t *testing.T, app, typ, job string, index int, nanos int64, msg string) {
		checkJSON(t, types.Line{App: app, Source: types.SourceApp, Type: typ, Job: job, Index: index, Time: time.Unix(0, nanos).UTC(), Msg: msg})
	})
}
