package logaggregator_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/gantryhq/gantry/layer1/logaggregator"
	"github.com/gantryhq/gantry/layer1/logaggregator/types"
)

// frames returns a frames body of lines.
func frames(lines ...types.Line) []byte {
	b := []byte(types.FrameMagic)
	for _, l := range lines {
		b = types.AppendFrame(b, l)
	}
	return b
}

// postFrames sends body to /v1/ingest/frames and returns the status and
// body.
func (a *aggregator) postFrames(body io.Reader) (int, string) {
	a.t.Helper()
	req, err := http.NewRequestWithContext(a.t.Context(), http.MethodPost, a.url+"/v1/ingest/frames", body)
	if err != nil {
		a.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set("Content-Type", types.FrameContentType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestIngestFrames(t *testing.T) {
	one := line("demo", "app", "web", 1, at(0), "one")
	two := line("demo", "router", "", 0, at(1), `at=info path="/<a>&b" é`)
	other := line("other", "gantry", "", 0, at(2), "deployed v2")
	cut := frames(one, two)
	cut = cut[:len(cut)-3]
	badSecond := append(frames(one), 3, 9, 0, 0) // a frame of unknown source
	cases := []struct {
		name   string
		body   io.Reader
		status int
		want   string
		kept   map[string]int // lines kept per app after the case, cumulative
	}{
		{"two apps", bytes.NewReader(frames(one, two, other)), 200, `{"accepted":3,"duplicates":0}`, map[string]int{"demo": 2, "other": 1}},
		{"again: duplicates", bytes.NewReader(frames(one, two)), 200, `{"accepted":0,"duplicates":2}`, map[string]int{"demo": 2}},
		{"a byte per read", iotest.OneByteReader(bytes.NewReader(frames(line("demo", "app", "web", 1, at(3), "slow")))), 200, `"accepted":1`, map[string]int{"demo": 3}},
		{"empty body", bytes.NewReader(nil), 200, `{"accepted":0,"duplicates":0}`, nil},
		{"magic only", strings.NewReader(types.FrameMagic), 200, `{"accepted":0,"duplicates":0}`, nil},
		{"another version", strings.NewReader("GLF\x02" + string(frames(one)[4:])), 400, "not frames of this version", nil},
		{"NDJSON", strings.NewReader(ndjson(t, one)), 400, "not frames of this version", nil},
		{"short body", strings.NewReader("GL"), 400, "not frames of this version", nil},
		{"body ends inside a frame", bytes.NewReader(cut), 400, "line 2: the body ends inside it; the 1 lines before it were kept", nil},
		{"bad second frame", bytes.NewReader(badSecond), 400, "line 2: malformed frame: source 9", nil},
		{"invalid line", bytes.NewReader(frames(types.Line{App: "Demo", Source: "app", Time: at(5), Msg: "ok"})), 400, `line 1: invalid log line: app \"Demo\"`, nil},
	}
	a := startAggregator(t, logaggregator.Config{}, "")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, body := a.postFrames(tc.body)
			if code != tc.status || !strings.Contains(body, tc.want) {
				t.Fatalf("got %d %s, want %d with %q", code, body, tc.status, tc.want)
			}
			for app, n := range tc.kept {
				if got := len(a.query(app, nil)); got != n {
					t.Fatalf("%s keeps %d lines, want %d", app, got, n)
				}
			}
		})
	}
	t.Run("body too large", func(t *testing.T) {
		small := startAggregator(t, logaggregator.Config{MaxBodyBytes: 1 << 10}, "")
		var ls []types.Line
		for i := range 40 {
			ls = append(ls, line("demo", "app", "", 0, at(i), strings.Repeat("x", 50)))
		}
		code, body := small.postFrames(bytes.NewReader(frames(ls...)))
		if code != 413 || !strings.Contains(body, "larger than 1024 bytes") {
			t.Fatalf("got %d %s, want 413", code, body)
		}
	})
}

// TestFramesStoredAsNDJSON checks that lines shipped as frames are kept,
// answered and written to the app's file exactly as the same lines shipped
// as NDJSON, and that the file holds what json.Marshal makes of them.
func TestFramesStoredAsNDJSON(t *testing.T) {
	lines := []types.Line{
		line("demo", "router", "", 0, at(0), `at=info method=GET path="/a?b=<c>&d=1" host=demo.localhost fwd="127.0.0.1" status=200`),
		line("demo", "app", "web", 2, at(1), "tab\there \\ \"quoted\" é \u2028 \u2029 😀 \x7f"),
		line("demo", "gantry", "", 0, at(2).Add(123456789), "web.1 crashed (exit 1)"),
		line("demo", "app", "worker", 1, at(3), ""),
	}
	dirJSON, dirFrames := t.TempDir(), t.TempDir()
	viaJSON := startAggregator(t, logaggregator.Config{DataDir: dirJSON}, "")
	viaFrames := startAggregator(t, logaggregator.Config{DataDir: dirFrames}, "")
	viaJSON.ingest(lines...)
	if code, body := viaFrames.postFrames(bytes.NewReader(frames(lines...))); code != 200 {
		t.Fatalf("frames: %d %s", code, body)
	}
	if a, b := viaJSON.query("demo", nil), viaFrames.query("demo", nil); len(a) != len(lines) || len(b) != len(lines) {
		t.Fatalf("kept %d lines through NDJSON and %d through frames, want %d", len(a), len(b), len(lines))
	} else {
		for i := range a {
			if a[i] != b[i] {
				t.Fatalf("line %d: NDJSON %+v, frames %+v", i, a[i], b[i])
			}
		}
	}
	viaJSON.stop()
	viaFrames.stop()
	fileJSON, err := os.ReadFile(filepath.Join(dirJSON, "demo.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	fileFrames, err := os.ReadFile(filepath.Join(dirFrames, "demo.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	if want := ndjson(t, lines...); string(fileJSON) != want || string(fileFrames) != want {
		t.Fatalf("files differ from json.Marshal's lines:\nNDJSON:\n%s\nframes:\n%s\nwant:\n%s", fileJSON, fileFrames, want)
	}
}

// BenchmarkIngest measures the aggregator keeping router lines sent over
// loopback HTTP in bodies of 5,000 lines, as NDJSON and as frames: parsing,
// keeping in memory, and writing to the app's file. Making the bodies is
// not timed; the HTTP client's sending is.
func BenchmarkIngest(b *testing.B) {
	msg := `at=info method=GET path="/" host=bench.test request_id=0123456789abcdef0123456789abcdef fwd="127.0.0.1" status=200 bytes=34 service=1ms protocol=http`
	for _, format := range []string{"ndjson", "frames"} {
		b.Run(format, func(b *testing.B) {
			srv, err := logaggregator.New(logaggregator.Config{DataDir: b.TempDir(), Token: testToken})
			if err != nil {
				b.Fatal(err)
			}
			defer srv.Close()
			hs := httptest.NewServer(srv.Handler())
			defer hs.Close()
			path, contentType := "/v1/ingest", "application/x-ndjson"
			if format == "frames" {
				path, contentType = "/v1/ingest/frames", types.FrameContentType
			}
			start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			b.ReportAllocs()
			b.ResetTimer()
			for done := 0; done < b.N; {
				b.StopTimer() // the body is the client's work
				n := min(5000, b.N-done)
				var body []byte
				if format == "frames" {
					body = []byte(types.FrameMagic)
				}
				for i := range n {
					l := types.Line{App: "bench", Source: types.SourceRouter, Time: start.Add(time.Duration(done+i) * time.Microsecond), Msg: msg}
					if format == "frames" {
						body = types.AppendFrame(body, l)
					} else {
						body, _ = types.AppendJSON(body, l)
						body = append(body, '\n')
					}
				}
				b.StartTimer()
				req, _ := http.NewRequest(http.MethodPost, hs.URL+path, bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+testToken)
				req.Header.Set("Content-Type", contentType)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatalf("status %d", resp.StatusCode)
				}
				done += n
			}
		})
	}
}

// TestCompactionKeepsHistory ships sequences of lines, in order and not,
// through a history of 3 lines, whose file is compacted (by copying its
// tail while the lines came in order, by writing the kept lines again
// otherwise) every few lines, and checks the history after a restart
// against a model of the history's rules, and the file's bound.
func TestCompactionKeepsHistory(t *testing.T) {
	seq := func(from, to int) []int {
		var out []int
		for i := from; i < to; i++ {
			out = append(out, i*10)
		}
		return out
	}
	cases := []struct {
		name  string
		at    []int // tenths of a second after t0
		bound int
		pad   int // bytes added to each text
	}{
		{"in order", seq(0, 20), 3, 0},
		{"late line in the middle", append(append(seq(0, 10), 75), seq(10, 20)...), 3, 0},
		{"late line, then in order again for long", append(append(seq(0, 10), 85), seq(10, 40)...), 3, 0},
		{"duplicates", append(seq(0, 10), seq(5, 13)...), 3, 0},
		{"older than all kept", append(append(seq(0, 10), -10), seq(10, 14)...), 3, 0},
		{"long lines: a file of several reads", seq(0, 50), 10, 15000},
		// Lines of concurrent requests reach the Shipper a little out of
		// order: neighbours swapped.
		{"neighbours swapped", swapped(seq(0, 60)), 3, 0},
		{"neighbours swapped, larger bound", swapped(seq(0, 200)), 16, 0},
		{"one line very late", append(append(seq(0, 30), 5), seq(30, 60)...), 8, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			bound := tc.bound
			a := startAggregator(t, logaggregator.Config{DataDir: dir, Lines: bound}, "")
			var lines []types.Line
			for _, tenths := range tc.at {
				lines = append(lines, line("demo", "app", "web", 1, t0.Add(time.Duration(tenths)*100*time.Millisecond), fmt.Sprintf("at %d", tenths)+strings.Repeat(".", tc.pad)))
			}
			for i := 0; i < len(lines); i += 4 {
				if code, body := a.postFrames(bytes.NewReader(frames(lines[i:min(i+4, len(lines))]...))); code != 200 {
					t.Fatalf("ingest: %d %s", code, body)
				}
			}
			want := modelHistory(lines, bound)
			if got := msgs(a.query("demo", nil)); !slices.Equal(got, want) {
				t.Fatalf("history %q, want %q", got, want)
			}
			a.stop()
			data, err := os.ReadFile(filepath.Join(dir, "demo.ndjson"))
			if err != nil {
				t.Fatal(err)
			}
			if n := bytes.Count(data, []byte("\n")); n >= 2*bound {
				t.Fatalf("the file holds %d lines, want under %d", n, 2*bound)
			}
			b := startAggregator(t, logaggregator.Config{DataDir: dir, Lines: bound}, "")
			if got := msgs(b.query("demo", nil)); !slices.Equal(got, want) {
				t.Fatalf("after a restart: history %q, want %q", got, want)
			}
		})
	}
}

// swapped returns at with each pair of neighbours swapped.
func swapped(at []int) []int {
	out := slices.Clone(at)
	for i := 0; i+1 < len(out); i += 2 {
		out[i], out[i+1] = out[i+1], out[i]
	}
	return out
}

// modelHistory returns the texts of the lines a history of bound lines
// keeps of lines, by its rules: in time order, a line equal to a kept one
// not kept again, one older than every kept line of a full history
// dropped, the oldest going past the bound.
func modelHistory(lines []types.Line, bound int) []string {
	var kept []types.Line
	for _, l := range lines {
		if slices.ContainsFunc(kept, func(k types.Line) bool { return k.Time.Equal(l.Time) && k.Msg == l.Msg }) {
			continue
		}
		p := len(kept)
		for p > 0 && kept[p-1].Time.After(l.Time) {
			p--
		}
		if len(kept) >= bound && p == 0 {
			continue
		}
		kept = slices.Insert(kept, p, l)
		if len(kept) > bound {
			kept = kept[1:]
		}
	}
	return msgs(kept)
}
