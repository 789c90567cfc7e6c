package types_test

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/layer1/logaggregator/types"
)

func TestParseQuery(t *testing.T) {
	since := time.Date(2026, 11, 24, 22, 41, 3, 0, time.UTC)
	cases := []struct {
		name string
		in   string
		want types.Query
		err  string
	}{
		{"defaults", "", types.Query{Lines: types.DefaultLines}, ""},
		{"all", "lines=5&follow=1&type=web&job=web.1&since=2026-11-24T22:41:03Z", types.Query{Lines: 5, Follow: true, Type: "web", Job: "web.1", Since: since}, ""},
		{"capped", "lines=999999", types.Query{Lines: 1000}, ""},
		{"follow false", "follow=false", types.Query{Lines: types.DefaultLines}, ""},
		{"bad lines", "lines=ten", types.Query{}, "lines="},
		{"bad follow", "follow=2", types.Query{}, "follow="},
		{"bad type", "type=WEB", types.Query{}, "type="},
		{"bad job", "job=a%20b", types.Query{}, "job="},
		{"bad since", "since=10m", types.Query{}, "since="},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v, _ := url.ParseQuery(tc.in)
			q, err := types.ParseQuery(v, 1000)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || q.Lines != tc.want.Lines || q.Follow != tc.want.Follow || q.Type != tc.want.Type || q.Job != tc.want.Job || !q.Since.Equal(tc.want.Since) {
				t.Fatalf("got %+v, %v; want %+v", q, err, tc.want)
			}
			back, err := types.ParseQuery(q.Values(), 1000)
			if err != nil || back.Lines != q.Lines || back.Follow != q.Follow || !back.Since.Equal(q.Since) {
				t.Fatalf("Values round trip: %+v, %v", back, err)
			}
		})
	}
}

func FuzzParseQuery(f *testing.F) {
	f.Add("lines=5&follow=1&type=web&job=web.1&since=2026-11-24T22:41:03Z")
	f.Add("lines=-1")
	f.Add("since=2026-11-24T22:41:03.999999999%2B02:00")
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		q, err := types.ParseQuery(v, 500)
		if err != nil {
			return
		}
		if q.Lines < 0 || q.Lines > 500 {
			t.Fatalf("lines %d out of range", q.Lines)
		}
		back, err := types.ParseQuery(q.Values(), 500)
		if err != nil || back.Lines != q.Lines || back.Follow != q.Follow || back.Type != q.Type || back.Job != q.Job || !back.Since.Equal(q.Since) {
			t.Fatalf("round trip of %+v: %+v, %v", q, back, err)
		}
	})
}

func TestMatchAndProcess(t *testing.T) {
	l := types.Line{App: "demo", Source: "app", Type: "web", Job: "abc", Index: 2, Time: time.Unix(100, 0)}
	cases := []struct {
		q    types.Query
		want bool
	}{
		{types.Query{}, true},
		{types.Query{Type: "web"}, true},
		{types.Query{Type: "worker"}, false},
		{types.Query{Job: "abc"}, true},
		{types.Query{Job: "web.2"}, true},
		{types.Query{Job: "web.1"}, false},
		{types.Query{Since: time.Unix(100, 0)}, true},
		{types.Query{Since: time.Unix(101, 0)}, false},
	}
	for _, tc := range cases {
		if got := tc.q.Match(l); got != tc.want {
			t.Errorf("%+v.Match = %v, want %v", tc.q, got, tc.want)
		}
	}
	if l.Process() != "web.2" || (types.Line{Type: "web"}).Process() != "web" || (types.Line{}).Process() != "" {
		t.Error("Process")
	}
}

func TestCleanMsg(t *testing.T) {
	long := strings.Repeat("é", types.MaxMsg) // two bytes each
	cases := []struct{ in, want string }{
		{"plain", "plain"},
		{"a\r\nb\nc\rd", "a b c d"},
		{"bad \xff byte", "bad \uFFFD byte"},
		{long, long[:types.MaxMsg]},
		{"x" + long, "x" + long[:types.MaxMsg-2]},
	}
	for _, tc := range cases {
		got := types.CleanMsg(tc.in)
		if got != tc.want {
			t.Errorf("CleanMsg(%.20q) = %.20q (len %d), want %.20q (len %d)", tc.in, got, len(got), tc.want, len(tc.want))
		}
		l := types.Line{App: "demo", Source: "app", Time: time.Now(), Msg: got}
		if err := l.Validate(); err != nil {
			t.Errorf("CleanMsg(%.20q) is not a valid msg: %v", tc.in, err)
		}
	}
}
