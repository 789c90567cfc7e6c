package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestToolchainVersion(t *testing.T) {
	tests := []struct {
		name, gomod, want string
		wantErr           bool
	}{
		{name: "toolchain line", gomod: "module x\n\ngo 1.26\n\ntoolchain go1.26.8\n", want: "1.26.8"},
		{name: "exact go line", gomod: "module x\ngo 1.25.3\n", want: "1.25.3"},
		{name: "go line without a patch release", gomod: "module x\ngo 1.26\n", wantErr: true},
		{name: "no go line", gomod: "module x\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "go.mod")
			if err := os.WriteFile(file, []byte(tt.gomod), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := toolchainVersion(file)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("toolchainVersion = %q, %v; want %q (error %v)", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestTestAppVersionAndChange(t *testing.T) {
	src := filepath.Join("..", "..", "..", appDir)
	if _, err := toolchainVersion(filepath.Join(src, "go.mod")); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	want, err := change(src, dir, 2)
	if err != nil {
		t.Fatal(err)
	}
	orig, err := os.ReadFile(filepath.Join(src, "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	changed, err := os.ReadFile(filepath.Join(dir, "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	a, b := strings.Split(string(orig), "\n"), strings.Split(string(changed), "\n")
	if len(a) != len(b) {
		t.Fatalf("the change added or removed lines: %d -> %d", len(a), len(b))
	}
	diff := 0
	for i := range a {
		if a[i] != b[i] {
			diff++
			if !strings.Contains(b[i], want) {
				t.Errorf("changed line %q does not serve %q", b[i], want)
			}
		}
	}
	if diff != 1 {
		t.Errorf("%d lines changed, want 1", diff)
	}
}

func TestStampWriter(t *testing.T) {
	w := &stampWriter{start: time.Now()}
	for _, chunk := range []string{"remote: -----> one\nremote: tw", "o\r\rCounting 50%\rCounting 100%\n", "last"} {
		if _, err := w.Write([]byte(chunk)); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for _, e := range w.events() {
		got = append(got, e.text)
	}
	want := []string{"remote: -----> one", "remote: two", "Counting 50%", "Counting 100%", "last"}
	if !slices.Equal(got, want) {
		t.Errorf("lines = %q, want %q", got, want)
	}
}

func TestBreakdown(t *testing.T) {
	s := time.Second
	tests := []struct {
		name     string
		timeline []event
		want     []time.Duration
	}{
		{
			name: "every phase",
			timeline: []event{
				{at: 1 * s, source: "gantryd", text: `msg="container started" type=build`},
				{at: 3 * s, source: "push", text: "-----> Using the build cache kept on this host"},
				{at: 4 * s, source: "push", text: "-----> Building main packages: go build"},
				{at: 6 * s, source: "push", text: "Built bin/goweb"},
				{at: 7 * s, source: "push", text: "-----> Compiled slug size is 6.2M"},
				{at: 11 * s, source: "gantryd", text: `msg="one-off job done" outputs=2`},
				{at: 12 * s, source: "push", text: "-----> Creating release v2"},
				{at: 13 * s, source: "gantryd", text: `msg="container started" type=web`},
				{at: 15 * s, source: "gantryd", text: `msg="job up" type=web`},
				{at: 16 * s, source: "bench", text: "the router serves the new content"},
			},
			want: []time.Duration{1 * s, 2 * s, 1 * s, 2 * s, 1 * s, 4 * s, 1 * s, 1 * s, 2 * s, 1 * s},
		},
		{
			name: "a cold cache, web container before the build's",
			timeline: []event{
				{at: 1 * s, source: "gantryd", text: `msg="container started" type=web`},
				{at: 2 * s, source: "gantryd", text: `msg="container started" type=build`},
				{at: 3 * s, source: "push", text: "-----> No build cache yet"},
				{at: 4 * s, source: "push", text: "-----> Building main packages: go build"},
				{at: 5 * s, source: "push", text: "Built bin/goweb"},
				{at: 6 * s, source: "push", text: "-----> Compiled slug size is 6.2M"},
				{at: 8 * s, source: "gantryd", text: `msg="one-off job done" outputs=2`},
				{at: 9 * s, source: "push", text: "-----> Creating release v2"},
				{at: 10 * s, source: "gantryd", text: `msg="container started" type=web`},
				{at: 11 * s, source: "gantryd", text: `msg="job up" type=web`},
				{at: 12 * s, source: "bench", text: "the router serves the new content"},
			},
			want: []time.Duration{2 * s, 1 * s, 1 * s, 1 * s, 1 * s, 2 * s, 1 * s, 1 * s, 1 * s, 1 * s},
		},
		{
			name: "a missing phase is measured into the next",
			timeline: []event{
				{at: 1 * s, source: "gantryd", text: `msg="container started" type=build`},
				{at: 5 * s, source: "push", text: "-----> Building main packages: go build"},
			},
			want: []time.Duration{1 * s, -1, 4 * s, -1, -1, -1, -1, -1, -1, -1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := breakdown(tt.timeline); !slices.Equal(got, tt.want) {
				t.Errorf("breakdown = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestGantrydEvents(t *testing.T) {
	from := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	log := strings.Join([]string{
		`time=2026-01-02T03:04:04.900Z level=INFO msg="before the push"`,
		`time=2026-01-02T03:04:05.250Z level=INFO msg="container started" type=build`,
		`time=2026-01-02T03:04:05.300Z level=DEBUG msg="health check failed" failures=1`,
		`not a log line`,
		`time=2026-01-02T03:04:06.000Z level=INFO msg="job up" type=web`,
		`time=2026-01-02T03:04:07.000Z level=INFO msg="after the push"`,
	}, "\n")
	file := filepath.Join(t.TempDir(), "gantryd.log")
	if err := os.WriteFile(file, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := gantrydEvents(file, from, from.Add(1500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	want := []event{
		{at: 250 * time.Millisecond, source: "gantryd", text: `msg="container started" type=build`},
		{at: time.Second, source: "gantryd", text: `msg="job up" type=web`},
	}
	if !slices.Equal(got, want) {
		t.Errorf("events = %v, want %v", got, want)
	}
}
