package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/deploy/testenv"
)

// follower is a running `gantry log -f` whose output lines arrive on lines.
type follower struct {
	lines chan followed
	seen  []followed // lines read so far
}

// followed is one line of `gantry log -f` and when it was read.
type followed struct {
	text string
	at   time.Time
}

// follow starts `gantry log -f` with args; the test's end stops it.
func (p *platform) follow(t *testing.T, args ...string) *follower {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, p.gantry, append([]string{"log", "-f"}, args...)...)
	cmd.Dir = p.home
	cmd.Env = p.cliEnv()
	out, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	stderr := &syncWriter{buf: &bytes.Buffer{}}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start gantry log -f: %v", err)
	}
	f := &follower{lines: make(chan followed, 1024)}
	go func() {
		defer close(f.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			f.lines <- followed{sc.Text(), time.Now()}
		}
	}()
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("gantry log -f stderr: %s", stderr.String())
		}
	})
	return f
}

// waitLine returns the first line printed so far or from now on that
// matches re, failing the test when the follower ends or deadline passes
// first. (Lines come in time order: a router line can come before the
// line the app printed while answering.)
func (f *follower) waitLine(t *testing.T, re *regexp.Regexp, deadline time.Time) followed {
	t.Helper()
	for _, l := range f.seen {
		if re.MatchString(l.text) {
			return l
		}
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for {
		select {
		case l, ok := <-f.lines:
			if !ok {
				t.Fatalf("gantry log -f ended before a line matching %v; it printed:\n%s", re, f.printed())
			}
			f.seen = append(f.seen, l)
			if re.MatchString(l.text) {
				return l
			}
		case <-timer.C:
			t.Fatalf("no line matching %v from gantry log -f in time; it printed:\n%s", re, f.printed())
		}
	}
}

func (f *follower) printed() string {
	var b strings.Builder
	for _, l := range f.seen {
		b.WriteString(l.text + "\n")
	}
	return b.String()
}

// TestLogs checks `gantry log` against a real platform: a line the app
// prints reaches `gantry log -f` at once, the router's lines and the
// platform's events are there, and the history survives a redeploy and a
// restart of gantryd.
func TestLogs(t *testing.T) {
	p := newPlatform(t, "--log-addr", testenv.FreeAddr(t))
	docker := testenv.Docker(t)
	image := testenv.BuildTestImage(t, docker, filepath.Join(repoRoot(), "layer0", "host", "testdata", "httpserver"))
	const app = "logs1"
	p.ok("create", app)
	p.ok("release", "create", "-a", app, "--image", image, "--process", "web=serve", "--health", "web=/healthz")
	p.ok("scale", "-a", app, "web=1")
	eventually(t, 2*time.Minute, "v1 up", func() bool { return p.settled(app, 1, 1) })
	host := app + ".localhost"
	eventually(t, time.Minute, "the router to serve the app", func() bool {
		code, _, err := p.get(host, "/")
		return err == nil && code == 200
	})

	// The follower is attached once it printed the last line of the
	// history, which the app's first lines make non-empty.
	eventually(t, time.Minute, "the app's first lines in the log", func() bool {
		return strings.Contains(p.ok("log", "-a", app, "-n", "1"), "Z ")
	})
	f := p.follow(t, "-a", app, "-n", "1")
	f.waitLine(t, regexp.MustCompile(`.`), time.Now().Add(time.Minute))

	marker := fmt.Sprintf("hello-log-%d", time.Now().UnixNano())
	sent := time.Now()
	if code, _, err := p.get(host, "/say?msg="+url.QueryEscape(marker)); err != nil || code != 200 {
		t.Fatalf("GET /say: %d %v", code, err)
	}
	appLine := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z app\[web\.1\]: ` + marker + `$`)
	got := f.waitLine(t, appLine, time.Now().Add(30*time.Second))
	t.Logf("the app's line reached gantry log -f %s after the request was sent", got.at.Sub(sent).Round(100*time.Microsecond))

	routerLine := regexp.MustCompile(`^\S+ router: at=info method=GET path="/say\?msg=` + marker + `" host=` + regexp.QuoteMeta(host) + `(:\d+)? request_id=\S+ fwd="127\.0\.0\.1" status=200 bytes=0 service=\d+ms protocol=http$`)
	f.waitLine(t, routerLine, time.Now().Add(30*time.Second))

	// Events: a scale shows as a gantry line.
	p.ok("scale", "-a", app, "web=2")
	f.waitLine(t, regexp.MustCompile(`^\S+ gantry: scaled web=2$`), time.Now().Add(30*time.Second))
	eventually(t, 2*time.Minute, "two web jobs up", func() bool { return p.settled(app, 1, 2) })

	// A redeploy: the lines from before it are still there after it.
	p.ok("release", "create", "-a", app, "--image", image, "--process", "web=serve", "--health", "web=/healthz")
	eventually(t, 3*time.Minute, "v2 up", func() bool { return p.settled(app, 2, 2) })
	history := func() string { return p.ok("log", "-a", app, "-n", "10000") }
	if h := history(); !regexp.MustCompile(`(?m)` + strings.TrimSuffix(appLine.String(), "$") + `$`).MatchString(h) {
		t.Fatalf("after the redeploy the log lacks the app's line %q:\n%s", marker, h)
	}
	// -t keeps the lines of one process type: no router lines.
	if h := p.ok("log", "-a", app, "-t", "web", "-n", "10000"); strings.Contains(h, " router: ") || !strings.Contains(h, marker) {
		t.Fatalf("log -t web:\n%s", h)
	}

	// A restart of gantryd keeps the history.
	p.terminate()
	p.start()
	if h := history(); strings.Count(h, "app[web.1]: "+marker+"\n") != 1 || !strings.Contains(h, "gantry: scaled web=2") {
		t.Fatalf("after a restart of gantryd the log lacks earlier lines, or has one twice:\n%s", h)
	}
	// The restarted agent reads the recent output of the containers it
	// adopts again, before their new output: once a new line is in the
	// log, the old ones were shipped again, and the aggregator kept each
	// once.
	marker2 := fmt.Sprintf("after-restart-%d", time.Now().UnixNano())
	eventually(t, time.Minute, "the app to answer after the restart", func() bool {
		code, _, err := p.get(host, "/say?msg="+url.QueryEscape(marker2))
		return err == nil && code == 200
	})
	eventually(t, time.Minute, "the new line in the log", func() bool { return strings.Contains(history(), "]: "+marker2) })
	seen := map[string]int{}
	for _, raw := range strings.Split(strings.TrimSpace(p.ok("log", "-a", app, "-n", "10000", "--json")), "\n") {
		var l struct {
			Source, Job, Msg string
			Time             time.Time
		}
		if err := json.Unmarshal([]byte(raw), &l); err != nil {
			t.Fatalf("log --json line %q: %v", raw, err)
		}
		seen[fmt.Sprintf("%s %s %s %s", l.Source, l.Job, l.Time.Format(time.RFC3339Nano), l.Msg)]++
	}
	for line, n := range seen {
		if n > 1 {
			t.Errorf("the log holds %d times: %s", n, line)
		}
	}
}
