package client

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestReadEvents(t *testing.T) {
	tests := []struct {
		name, in string
		want     []Event
	}{
		{"one event", "id: 1\nevent: progress\ndata: {}\n\n", []Event{{ID: "1", Event: "progress", Data: "{}"}}},
		{"comments and blank lines", ": keep-alive\n\n\nevent: end\ndata:x\n\n", []Event{{Event: "end", Data: "x"}}},
		{"several data lines", "data: a\ndata: b\n\n", []Event{{Data: "a\nb"}}},
		{"no data", "event: progress\n\n", nil},
		{"unterminated last event", "data: a\n", nil},
		{"value with a colon", "data: {\"a\":1}\n\n", []Event{{Data: `{"a":1}`}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []Event
			if err := ReadEvents(strings.NewReader(tt.in), func(e Event) error { got = append(got, e); return nil }); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("events = %+v, want %+v", got, tt.want)
			}
		})
	}
	stop := errors.New("stop")
	if err := ReadEvents(strings.NewReader("data: a\n\ndata: b\n\n"), func(Event) error { return stop }); err != stop {
		t.Errorf("ReadEvents = %v, want fn's error", err)
	}
}

func FuzzReadEvents(f *testing.F) {
	f.Add("id: 1\nevent: progress\ndata: {}\n\n")
	f.Add(": c\n\ndata: a\ndata: b\n\n")
	f.Fuzz(func(t *testing.T, in string) {
		n := 0
		err := ReadEvents(strings.NewReader(in), func(e Event) error {
			n++
			if strings.Contains(e.Event, "\n") || strings.Contains(e.ID, "\n") {
				t.Errorf("event %+v holds a newline", e)
			}
			return nil
		})
		if err != nil && len(in) < maxEventLine {
			t.Errorf("ReadEvents(%q) = %v", in, err)
		}
		if n > strings.Count(in, "\n") {
			t.Errorf("%d events from %d lines", n, strings.Count(in, "\n"))
		}
	})
}
