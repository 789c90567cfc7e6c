package host

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/layer0/host/client"
)

func texts(lines []client.LogLine) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = l.Text
	}
	return out
}

func TestRing(t *testing.T) {
	tests := []struct {
		name     string
		capacity int
		add      int
		tail     int
		want     []string
	}{
		{"empty", 3, 0, 0, []string{}},
		{"partly filled", 3, 2, 0, []string{"l1", "l2"}},
		{"wrapped keeps the newest", 3, 7, 0, []string{"l5", "l6", "l7"}},
		{"tail of a wrapped ring", 3, 7, 2, []string{"l6", "l7"}},
		{"tail larger than kept", 3, 2, 10, []string{"l1", "l2"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRing(tc.capacity)
			for i := 1; i <= tc.add; i++ {
				r.add(client.LogLine{Text: fmt.Sprintf("l%d", i)})
			}
			got, next, _, closed := r.since(r.tail(tc.tail))
			if !slices.Equal(texts(got), tc.want) || closed || next != uint64(tc.add)+1 {
				t.Errorf("since(tail(%d)) = %q, next %d, closed %v; want %q, next %d", tc.tail, texts(got), next, closed, tc.want, tc.add+1)
			}
		})
	}
}

func TestRingFollow(t *testing.T) {
	r := newRing(2)
	r.add(client.LogLine{Text: "a"})
	_, next, changed, _ := r.since(r.tail(0))
	select {
	case <-changed:
		t.Fatal("changed before a new line")
	default:
	}
	r.add(client.LogLine{Text: "b"})
	r.add(client.LogLine{Text: "c"})
	r.add(client.LogLine{Text: "d"}) // the follower lags: "b" is lost
	<-changed
	got, _, _, _ := r.since(next)
	if want := []string{"c", "d"}; !slices.Equal(texts(got), want) {
		t.Errorf("lagging follower got %q, want %q", texts(got), want)
	}
	_, _, changed, _ = r.since(r.tail(0))
	r.close()
	<-changed
	r.add(client.LogLine{Text: "late"})
	got, _, _, closed := r.since(0)
	if !closed || !slices.Equal(texts(got), []string{"c", "d"}) {
		t.Errorf("after close: %q closed %v", texts(got), closed)
	}
	if last := r.last(1); !slices.Equal(last, []string{"d"}) {
		t.Errorf("last(1) = %q", last)
	}
}

func TestLineWriter(t *testing.T) {
	ts := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		name   string
		skip   string
		writes []string
		want   []client.LogLine
	}{
		{
			name:   "timestamped lines across writes",
			writes: []string{"2026-01-02T03:04:05.000000001Z hel", "lo\n2026-01-02T03:04:05.000000002Z world\r\n"},
			want: []client.LogLine{
				{Time: ts("2026-01-02T03:04:05.000000001Z"), Stream: "stdout", Text: "hello"},
				{Time: ts("2026-01-02T03:04:05.000000002Z"), Stream: "stdout", Text: "world"},
			},
		},
		{
			name:   "lines a reconnect repeats are dropped",
			skip:   "2026-01-02T03:04:05.000000002Z",
			writes: []string{"2026-01-02T03:04:05.000000002Z old\n2026-01-02T03:04:05.000000003Z new\n"},
			want:   []client.LogLine{{Time: ts("2026-01-02T03:04:05.000000003Z"), Stream: "stdout", Text: "new"}},
		},
		{
			name:   "an empty line",
			writes: []string{"2026-01-02T03:04:05Z \n"},
			want:   []client.LogLine{{Time: ts("2026-01-02T03:04:05Z"), Stream: "stdout", Text: ""}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRing(10)
			sess := &logSession{}
			if tc.skip != "" {
				sess.skipUntil = ts(tc.skip)
			}
			w := &lineWriter{ring: r, stream: "stdout", sess: sess}
			for _, s := range tc.writes {
				if n, err := w.Write([]byte(s)); n != len(s) || err != nil {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			w.flush()
			got, _, _, _ := r.since(0)
			if !slices.EqualFunc(got, tc.want, func(a, b client.LogLine) bool {
				return a.Time.Equal(b.Time) && a.Stream == b.Stream && a.Text == b.Text
			}) {
				t.Errorf("lines = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestLineWriterUntimestamped(t *testing.T) {
	r := newRing(10)
	w := &lineWriter{ring: r, stream: "stderr", sess: &logSession{}}
	w.Write([]byte("no timestamp here\npartial"))
	w.flush()
	got, _, _, _ := r.since(0)
	if want := []string{"no timestamp here", "partial"}; !slices.Equal(texts(got), want) {
		t.Fatalf("lines = %q, want %q", texts(got), want)
	}
	for _, l := range got {
		if l.Time.IsZero() || l.Stream != "stderr" {
			t.Errorf("line %+v: want a receive time and stream stderr", l)
		}
	}
}

func FuzzLineWriter(f *testing.F) {
	f.Add([]byte("2026-01-02T03:04:05.000000001Z hello\n2026-01-02T03:04:05Z x\n"), 5)
	f.Add([]byte("no newline at all"), 3)
	f.Add([]byte("\n\n\r\n 2026 \n"), 1)
	f.Add(bytes.Repeat([]byte("a"), maxLineLen+10), 7)
	f.Fuzz(func(t *testing.T, data []byte, split int) {
		r := newRing(1 << 12)
		w := &lineWriter{ring: r, stream: "stdout", sess: &logSession{}}
		if split < 1 {
			split = 1
		}
		for p := data; len(p) > 0; {
			n := min(split, len(p))
			if k, err := w.Write(p[:n]); k != n || err != nil {
				t.Fatalf("Write = %d, %v", k, err)
			}
			p = p[n:]
		}
		w.flush()
		got, _, _, _ := r.since(0)
		var total int
		for _, l := range got {
			if strings.Contains(l.Text, "\n") {
				t.Fatalf("line %q contains a newline", l.Text)
			}
			if len(l.Text) > maxLineLen+split {
				t.Fatalf("line of %d bytes exceeds the bound", len(l.Text))
			}
			total += len(l.Text)
		}
		if total > len(data) {
			t.Fatalf("%d bytes of lines from %d bytes of input", total, len(data))
		}
	})
}
