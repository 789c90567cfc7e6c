package host_test

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gantryhq/gantry/deploy/testenv"
	"github.com/gantryhq/gantry/layer0/host"
	"github.com/gantryhq/gantry/layer0/keyspace"
)

// shipped is a line a recordingSink received.
type shipped struct {
	event         bool
	app, typ, job string
	index         int
	at            time.Time
	text          string
}

// recordingSink is a host.LogSink that keeps what it gets.
type recordingSink struct {
	mu    sync.Mutex
	lines []shipped
}

var _ host.LogSink = (*recordingSink)(nil)

func (s *recordingSink) JobLine(app, typ, job string, index int, at time.Time, text string) {
	s.add(shipped{false, app, typ, job, index, at, text})
}

func (s *recordingSink) JobEvent(app, typ, job string, index int, at time.Time, msg string) {
	s.add(shipped{true, app, typ, job, index, at, msg})
}

func (s *recordingSink) add(l shipped) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lines = append(s.lines, l)
}

func (s *recordingSink) snapshot() []shipped {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.lines)
}

// TestLogShipping runs an agent with a log sink: a job's output arrives as
// lines of its app, type, job and index, and its crash as one event after
// them.
func TestLogShipping(t *testing.T) {
	docker := testenv.Docker(t)
	f := &fixture{
		docker: docker,
		etcd:   testenv.Etcd(t),
		image:  testenv.BuildTestImage(t, docker, filepath.Join("testdata", "httpserver")),
	}
	e := f.env(t)
	sink := &recordingSink{}
	cfg := e.config("h1")
	cfg.Logs = sink
	e.start(cfg)
	spec := e.webSpec("shipped", map[string]string{"EXIT_AFTER": "300ms", "EXIT_CODE": "3"})
	e.assign("h1", "job-ship", spec)
	e.waitState("job-ship", keyspace.StateCrashed)

	crashed := "web.1 crashed (exit 3)"
	var lines []shipped
	waitFor(t, "the crash event", func() (bool, string) {
		lines = sink.snapshot()
		return slices.ContainsFunc(lines, func(l shipped) bool { return l.event && l.text == crashed }), fmt.Sprintf("%d lines", len(lines))
	})
	var msgs []string
	for _, l := range lines {
		source := "app"
		if l.event {
			source = "gantry"
		}
		msgs = append(msgs, source+": "+l.text)
		if l.app != "shipped" || l.typ != "web" || l.job != "job-ship" || l.index != 1 || l.at.IsZero() {
			t.Errorf("line %+v: want app shipped, type web, job job-ship, index 1 and a time", l)
		}
	}
	want := []string{"app: starting", "app: stderr says hi", "app: last words 1", "app: last words 30", "gantry: " + crashed}
	pos := -1
	for _, w := range want {
		i := slices.Index(msgs, w)
		if i <= pos && !(w == "app: stderr says hi" && i >= 0) {
			t.Fatalf("log %q: want %q in this order", msgs, want)
		}
		if w != "app: stderr says hi" {
			pos = i
		}
	}
	if n := strings.Count(strings.Join(msgs, "\n"), "gantry: "+crashed); n != 1 {
		t.Errorf("the crash is in the log %d times", n)
	}
}
