package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// event is one line of a timeline: when it happened, measured from the
// start of what is timed, and where it came from.
type event struct {
	at     time.Duration
	source string
	text   string
}

// stampWriter splits what is written to it into lines (at "\n" and "\r",
// as git prints progress) and stamps each with the time since start.
type stampWriter struct {
	start time.Time
	mu    sync.Mutex
	part  []byte
	lines []event
}

var _ io.Writer = (*stampWriter)(nil)

func (w *stampWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Since(w.start)
	for _, c := range p {
		if c != '\n' && c != '\r' {
			w.part = append(w.part, c)
			continue
		}
		if len(w.part) > 0 {
			w.lines = append(w.lines, event{at: now, text: string(w.part)})
			w.part = w.part[:0]
		}
	}
	return len(p), nil
}

// events returns the lines written so far, the unterminated last one too.
func (w *stampWriter) events() []event {
	w.mu.Lock()
	defer w.mu.Unlock()
	lines := slices.Clone(w.lines)
	if len(w.part) > 0 {
		lines = append(lines, event{at: time.Since(w.start), text: string(w.part)})
	}
	return lines
}

// String returns the lines with their times, for logs and errors.
func (w *stampWriter) String() string {
	var b strings.Builder
	for _, e := range w.events() {
		fmt.Fprintf(&b, "%8.3f %s\n", e.at.Seconds(), e.text)
	}
	return b.String()
}

// noise holds gantryd log messages left out of timelines: repeated lines
// that say nothing about where a push's time goes.
var noise = []string{
	"health check failed",
}

// gantrydEvents returns the lines of the gantryd log (log/slog text
// format) stamped between from and to, as times since from, without the
// time and level fields.
func gantrydEvents(logFile string, from, to time.Time) ([]event, error) {
	f, err := os.Open(logFile)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var events []event
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		stamp, rest, ok := strings.Cut(line, " ")
		if !ok || !strings.HasPrefix(stamp, "time=") {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, strings.TrimPrefix(stamp, "time="))
		if err != nil || t.Before(from) || t.After(to) {
			continue
		}
		if level, after, ok := strings.Cut(rest, " "); ok && strings.HasPrefix(level, "level=") {
			rest = after
		}
		if slices.ContainsFunc(noise, func(n string) bool { return strings.Contains(rest, `msg="`+n) }) {
			continue
		}
		events = append(events, event{at: t.Sub(from), source: "gantryd", text: rest})
	}
	return events, sc.Err()
}

// phase is a step of a push, ending at the first timeline event that
// matches it (after the previous phase's end).
type phase struct {
	name string
	// source is the event source; any of marks in the text ends the phase,
	// and all of also must be in it.
	source string
	marks  []string
	also   []string
}

// pushPhases are the steps of a push, in order, as the push output and
// the gantryd log show them.
var pushPhases = []phase{
	{name: "build job: schedule, fetch source, start container", source: "gantryd", marks: []string{`msg="container started"`}, also: []string{"type=build"}},
	{name: "builder start, unpack source", source: "push", marks: []string{"Using the build cache kept on this host", "No build cache yet"}},
	{name: "detect, toolchain from the cache", source: "push", marks: []string{"Building main packages"}},
	{name: "go build", source: "push", marks: []string{"Built bin/"}},
	{name: "compress the slug", source: "push", marks: []string{"Compiled slug size"}},
	{name: "copy out and upload slug and result", source: "gantryd", marks: []string{`msg="one-off job done"`}},
	{name: "create the release", source: "push", marks: []string{"Creating release"}},
	{name: "deploy: schedule, fetch slug, start container", source: "gantryd", marks: []string{`msg="container started"`}, also: []string{"type=web"}},
	{name: "unpack slug, start app, health check", source: "gantryd", marks: []string{`msg="job up"`}, also: []string{"type=web"}},
	{name: "router picks up the new instance", source: "bench", marks: []string{"the router serves"}},
}

// breakdown returns how long each of pushPhases took in timeline; a phase
// whose end is not found is -1 and the next one is measured from the last
// end found.
func breakdown(timeline []event) []time.Duration {
	out := make([]time.Duration, len(pushPhases))
	var last time.Duration
	i := 0
	for pi, p := range pushPhases {
		out[pi] = -1
		for j := i; j < len(timeline); j++ {
			e := timeline[j]
			if e.source != p.source || !slices.ContainsFunc(p.marks, func(m string) bool { return strings.Contains(e.text, m) }) ||
				slices.ContainsFunc(p.also, func(a string) bool { return !strings.Contains(e.text, a) }) {
				continue
			}
			out[pi] = e.at - last
			last, i = e.at, j+1
			break
		}
	}
	return out
}
