package logaggregator_test

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gantryhq/gantry/layer1/logaggregator"
)

func TestParseLine(t *testing.T) {
	cases := []struct {
		name, in string
		want     string // error substring; "" for a valid line
	}{
		{"valid", `{"app":"demo","source":"app","type":"web","job":"j1","index":1,"time":"2026-11-24T22:41:03.123Z","msg":"hi"}`, ""},
		{"valid with break", `{"app":"demo","source":"router","time":"2026-11-24T22:41:03Z","msg":"at=info"}` + "\r\n", ""},
		{"empty", "  \n", "empty line"},
		{"array", `[1]`, "malformed JSON"},
		{"bad source", `{"app":"demo","source":"db","time":"2026-11-24T22:41:03Z","msg":""}`, "source"},
		{"bad index", `{"app":"demo","source":"app","index":-1,"time":"2026-11-24T22:41:03Z","msg":""}`, "index"},
		{"bad job", `{"app":"demo","source":"app","job":"a/b","time":"2026-11-24T22:41:03Z","msg":""}`, "job"},
		{"bad time", `{"app":"demo","source":"app","time":"yesterday","msg":""}`, "malformed JSON"},
		{"trailing garbage", `{"app":"demo","source":"app","time":"2026-11-24T22:41:03Z","msg":""}x`, "more than one"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := logaggregator.ParseLine([]byte(tc.in))
			if (err == nil) != (tc.want == "") || err != nil && !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseLine(%q) = %v, want %q", tc.in, err, tc.want)
			}
		})
	}
}

// FuzzParseLine checks that any input either fails or gives a valid line
// that survives a round trip.
func FuzzParseLine(f *testing.F) {
	f.Add([]byte(`{"app":"demo","source":"app","type":"web","job":"j1","index":1,"time":"2026-11-24T22:41:03.123Z","msg":"hi"}`))
	f.Add([]byte(`{"app":"demo","source":"gantry","time":"2026-11-24T22:41:03Z","msg":"deployed v2"}` + "\n"))
	f.Add([]byte(`{"app":"x","source":"app"}`))
	f.Add([]byte(`{"app":"demo","source":"router","time":"2026-11-24T22:41:03+02:00","msg":"\u0000\ud800"}`))
	f.Add([]byte("\xff\xfe"))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := logaggregator.ParseLine(b)
		if err != nil {
			return
		}
		if verr := l.Validate(); verr != nil {
			t.Fatalf("ParseLine accepted an invalid line: %v", verr)
		}
		if !utf8.ValidString(l.Msg) || strings.ContainsAny(l.Msg, "\r\n") {
			t.Fatalf("msg %q", l.Msg)
		}
		again, err := json.Marshal(l)
		if err != nil {
			t.Fatal(err)
		}
		l2, err := logaggregator.ParseLine(again)
		if err != nil {
			t.Fatalf("round trip of %s: %v", again, err)
		}
		if !l2.Time.Equal(l.Time) || l2.Msg != l.Msg || l2.App != l.App || l2.Job != l.Job {
			t.Fatalf("round trip changed %+v into %+v", l, l2)
		}
	})
}
