package host_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/deploy/testenv"
	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer1/logaggregator"
	logtypes "github.com/gantryhq/gantry/layer1/logaggregator/types"
)

// TestLogShipping runs an agent that ships to a real log aggregator: a
// job's output arrives as app lines of its app, type, job and index, and
// its crash as a gantry line after them.
func TestLogShipping(t *testing.T) {
	docker := testenv.Docker(t)
	f := &fixture{
		docker: docker,
		etcd:   testenv.Etcd(t),
		image:  testenv.BuildTestImage(t, docker, filepath.Join("testdata", "httpserver")),
	}
	e := f.env(t)

	agg, err := logaggregator.New(logaggregator.Config{DataDir: t.TempDir(), Token: token})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		agg.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- agg.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("aggregator: %v", err)
		}
		agg.Close()
	})
	logURL := "http://" + ln.Addr().String()

	cfg := e.config("h1")
	cfg.LogURL = logURL
	e.start(cfg)
	spec := e.webSpec("shipped", map[string]string{"EXIT_AFTER": "300ms", "EXIT_CODE": "3"})
	e.assign("h1", "job-ship", spec)
	e.waitState("job-ship", keyspace.StateCrashed)

	read := func() []logtypes.Line {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, logURL+"/v1/apps/shipped/log?lines=1000", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var lines []logtypes.Line
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			var l logtypes.Line
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				t.Fatal(err)
			}
			lines = append(lines, l)
		}
		return lines
	}
	crashed := "web.1 crashed (exit 3)"
	var lines []logtypes.Line
	waitFor(t, "the crash event in the app's log", func() (bool, string) {
		lines = read()
		return slices.ContainsFunc(lines, func(l logtypes.Line) bool { return l.Msg == crashed }), fmt.Sprintf("%d lines", len(lines))
	})
	var msgs []string
	for _, l := range lines {
		msgs = append(msgs, l.Source+": "+l.Msg)
		if l.Type != "web" || l.Job != "job-ship" || l.Index != 1 {
			t.Errorf("line %+v: want type web, job job-ship, index 1", l)
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
