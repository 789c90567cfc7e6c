package router

import (
	"testing"
	"time"
)

func TestAccessLogTime(t *testing.T) {
	var l accessLog
	for _, tc := range []struct {
		t    time.Time
		want string
	}{
		{time.Date(2025, 5, 20, 10, 0, 0, 123456789, time.UTC), "2025-05-20T10:00:00.123Z"},
		{time.Date(2025, 5, 20, 10, 0, 0, 7000000, time.UTC), "2025-05-20T10:00:00.007Z"},
		{time.Date(2025, 5, 20, 12, 0, 1, 0, time.FixedZone("x", 2*3600)), "2025-05-20T10:00:01.000Z"},
		{time.Date(2025, 5, 20, 10, 0, 1, 999999999, time.UTC), "2025-05-20T10:00:01.999Z"},
	} {
		got := string(l.appendTime(nil, tc.t))
		if want := tc.t.UTC().Format("2006-01-02T15:04:05.000Z07:00"); got != tc.want || got != want {
			t.Errorf("appendTime(%v) = %q, want %q (time.Format: %q)", tc.t, got, tc.want, want)
		}
	}
}
