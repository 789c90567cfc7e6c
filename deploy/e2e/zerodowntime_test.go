package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// minRequests is how many requests each operation of TestZeroDowntime must
// see at least, from its start to its end.
const minRequests = 20000

// load sends GET / through the router with one Host header from several
// workers until stopped, and counts every answer. Most workers reuse
// keep-alive connections; one opens a new connection for every request, at
// a bounded pace so that a long test does not run out of loopback ports.
type load struct {
	ok, failed     atomic.Int64
	keepAlive, new atomic.Int64

	mu       sync.Mutex
	failures map[string]int // failure description -> count

	stop chan struct{}
	wg   sync.WaitGroup
}

// loadWorkers is the number of keep-alive workers; newConnEvery paces the
// worker that opens a new connection per request.
const (
	loadWorkers  = 6
	newConnEvery = 2 * time.Millisecond
)

func startLoad(url, host string) *load {
	l := &load{failures: map[string]int{}, stop: make(chan struct{})}
	keep := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: loadWorkers}}
	fresh := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for i := range loadWorkers + 1 {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			client, counter, pace := keep, &l.keepAlive, time.Duration(0)
			if i == loadWorkers {
				client, counter, pace = fresh, &l.new, newConnEvery
			}
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				start := time.Now()
				l.once(client, url, host)
				counter.Add(1)
				if wait := pace - time.Since(start); wait > 0 {
					time.Sleep(wait)
				}
			}
		}()
	}
	return l
}

// once sends one request and counts its outcome: a 2xx with its whole body
// read is a success, anything else a failure.
func (l *load) once(client *http.Client, url, host string) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		l.fail(err.Error())
		return
	}
	req.Host = host
	resp, err := client.Do(req)
	if err != nil {
		l.fail(err.Error())
		return
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	switch {
	case err != nil:
		l.fail("read body: " + err.Error())
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		l.fail(resp.Status)
	default:
		l.ok.Add(1)
	}
}

func (l *load) fail(what string) {
	l.failed.Add(1)
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.failures) < 20 {
		l.failures[what]++
	}
}

func (l *load) total() int64 { return l.ok.Load() + l.failed.Load() }

// end waits until at least min requests were answered, stops the workers
// and reports the counts.
func (l *load) end(t *testing.T, what string, min int64) {
	t.Helper()
	for l.total() < min {
		select {
		case <-t.Context().Done():
			close(l.stop)
			l.wg.Wait()
			t.Fatalf("%s: only %d requests before the test's deadline", what, l.total())
		case <-time.After(50 * time.Millisecond):
		}
	}
	close(l.stop)
	l.wg.Wait()
	t.Logf("%s: %d requests (%d on keep-alive connections, %d on new connections), %d failed",
		what, l.total(), l.keepAlive.Load(), l.new.Load(), l.failed.Load())
	if n := l.failed.Load(); n > 0 {
		t.Errorf("%s: %d of %d requests failed: %v", what, n, l.total(), l.failures)
	}
}

// psJob is the part of `gantry ps --json` that says which release a job runs.
type psJob struct {
	ID      string `json:"id"`
	Type    string `json:"type"`
	State   string `json:"state"`
	Release int    `json:"release"`
}

// settled reports whether app runs exactly n web jobs, all up and all of
// release version, and version is current.
func (p *platform) settled(app string, version, n int) bool {
	p.t.Helper()
	var info struct {
		Release int `json:"release"`
	}
	if err := json.Unmarshal([]byte(p.ok("info", "-a", app, "--json")), &info); err != nil {
		p.t.Fatalf("info --json: %v", err)
	}
	if info.Release != version {
		return false
	}
	var jobs []psJob
	if err := json.Unmarshal([]byte(p.ok("ps", "-a", app, "--json")), &jobs); err != nil {
		p.t.Fatalf("ps --json: %v", err)
	}
	web := 0
	for _, j := range jobs {
		if j.Type != "web" {
			continue
		}
		if j.State != "up" || j.Release != version {
			return false
		}
		web++
	}
	return web == n
}

// current returns the app's current release version.
func (p *platform) current(app string) int {
	p.t.Helper()
	var info struct {
		Release int `json:"release"`
	}
	if err := json.Unmarshal([]byte(p.ok("info", "-a", app, "--json")), &info); err != nil {
		p.t.Fatalf("info --json: %v", err)
	}
	return info.Release
}

// TestZeroDowntime changes a running app in every way a user does, each
// under steady load through the router, and counts the failed requests,
// which must be zero: git push, env set, rollback, scale down, restart,
// and two pushes whose deploys fail. Last, gantryd is killed during a
// deployment, and after it restarts the app runs on one release only.
func TestZeroDowntime(t *testing.T) {
	p := newPlatform(t, "--deploy-timeout", "45s")
	requireStackImages(t)
	keyFile := filepath.Join(p.home, ".ssh", "id_ed25519")
	if err := os.MkdirAll(filepath.Dir(keyFile), 0o700); err != nil {
		t.Fatal(err)
	}
	sshKeygen(t, keyFile)
	p.ok("key", "add")

	const app = "steady"
	host := app + ".localhost"
	repo := t.TempDir()
	copyDir(t, filepath.Join(repoRoot(), "slugbuilder", "testdata", "apps", "static"), repo)
	index := filepath.Join(repo, "public", "index.html")
	setPage := func(text string) {
		t.Helper()
		if err := os.WriteFile(index, []byte("<!doctype html><h1>"+text+"</h1>\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	setPage("version one")
	gitRun(t, repo, "init", "-q", "-b", "main")
	gitRun(t, repo, "add", ".")
	gitRun(t, repo, "commit", "-q", "-m", "version one")
	if r := p.run(repo, nil, "create", app); r.code != 0 {
		t.Fatalf("create: %d %s %s", r.code, r.stdout, r.stderr)
	}
	if out, err := p.push(repo, keyFile); err != nil {
		t.Fatalf("first git push: %v\n%s", err, out)
	}
	p.ok("scale", "-a", app, "web=2")
	eventually(t, 2*time.Minute, "v1 web=2 to be up", func() bool { return p.settled(app, 1, 2) })
	url := p.httpURL + "/"
	serves := func(text string) func() bool {
		return func() bool {
			code, body, err := p.get(host, "/")
			return err == nil && code == 200 && strings.Contains(body, text)
		}
	}

	// step runs op under load; op returns once the change is complete.
	step := func(name string, op func()) {
		t.Helper()
		l := startLoad(url, host)
		op()
		l.end(t, name, minRequests)
	}

	step("git push (v2)", func() {
		setPage("version two")
		gitRun(t, repo, "commit", "-q", "-am", "version two")
		if out, err := p.push(repo, keyFile); err != nil {
			t.Fatalf("git push of v2: %v\n%s", err, out)
		}
		eventually(t, 2*time.Minute, "v2 web=2 to be up", func() bool { return p.settled(app, 2, 2) })
		eventually(t, time.Minute, "v2's page", serves("version two"))
	})
	step("env set (v3)", func() {
		p.ok("env", "set", "-a", app, "GREETING=hello")
		eventually(t, 2*time.Minute, "v3 web=2 to be up", func() bool { return p.settled(app, 3, 2) })
	})
	step("rollback to v1 (v4)", func() {
		p.ok("rollback", "-a", app, "v1")
		eventually(t, 2*time.Minute, "v4 web=2 to be up", func() bool { return p.settled(app, 4, 2) })
		eventually(t, time.Minute, "v1's page again", serves("version one"))
	})
	p.ok("scale", "-a", app, "web=3")
	eventually(t, 2*time.Minute, "web=3 to be up", func() bool { return p.settled(app, 4, 3) })
	step("scale web=3 to web=1", func() {
		p.ok("scale", "-a", app, "web=1")
		eventually(t, 2*time.Minute, "web=1", func() bool { return p.settled(app, 4, 1) })
	})
	p.ok("scale", "-a", app, "web=2")
	eventually(t, 2*time.Minute, "web=2 to be up", func() bool { return p.settled(app, 4, 2) })
	step("restart web", func() {
		before := map[string]bool{}
		for _, j := range p.jobs(app) {
			before[j.ID] = true
		}
		p.ok("restart", "-a", app, "web")
		eventually(t, 2*time.Minute, "two new web jobs up", func() bool {
			jobs := p.jobs(app)
			for _, j := range jobs {
				if before[j.ID] {
					return false
				}
			}
			return len(jobs) == 2 && upCount(jobs) == 2
		})
	})

	// Two releases that never serve: their pushes are refused, and v4 keeps
	// serving with no failed request.
	for _, bad := range []struct{ name, procfile string }{
		{"push of a web process that crashes at start", "web: sh -c 'echo crashing on purpose >&2; exit 1'\n"},
		{"push of a web process that never becomes healthy", "web: sleep 100000\n"},
	} {
		step(bad.name, func() {
			if err := os.WriteFile(filepath.Join(repo, "Procfile"), []byte(bad.procfile), 0o644); err != nil {
				t.Fatal(err)
			}
			gitRun(t, repo, "add", "Procfile")
			gitRun(t, repo, "commit", "-q", "-m", bad.name)
			out, err := p.push(repo, keyFile)
			if err == nil || !strings.Contains(out, "(deploy failed)") {
				t.Errorf("%s: %v, want a refused push:\n%s", bad.name, err, out)
			}
			if n := strings.Count(out, "keeps running"); n != 1 {
				t.Errorf("%s: the outcome is told %d times, want once:\n%s", bad.name, n, out)
			}
			if v := p.current(app); v != 4 {
				t.Errorf("after the %s: current release v%d, want v4", bad.name, v)
			}
			eventually(t, 2*time.Minute, "only v4's jobs", func() bool { return p.settled(app, 4, 2) })
		})
	}
	if out := p.ok("releases", "-a", app); !strings.Contains(out, "v4") {
		t.Errorf("gantry releases lacks v4:\n%s", out)
	}

	// gantryd dies during a deployment; after a restart the app runs on
	// one release, at full strength.
	gitRun(t, repo, "rm", "-q", "Procfile")
	gitRun(t, repo, "commit", "-q", "-m", "no Procfile")
	p.ok("scale", "-a", app, "web=3")
	eventually(t, 2*time.Minute, "web=3 to be up", func() bool { return p.settled(app, 4, 3) })
	p.runAsync(t, "env", "set", "-a", app, "INTERRUPTED=yes")
	eventually(t, time.Minute, "a job of the new release", func() bool {
		for _, j := range p.psJobs(app) {
			if j.Release > 4 {
				return true
			}
		}
		return false
	})
	p.kill()
	p.start()
	var final int
	eventually(t, 3*time.Minute, "the app on one release at full strength", func() bool {
		final = p.current(app)
		return p.settled(app, final, 3)
	})
	t.Logf("after the restart the app runs v%d", final)
	eventually(t, time.Minute, "the router to serve the app", serves("version one"))
}

// psJobs returns the app's jobs with their release versions.
func (p *platform) psJobs(app string) []psJob {
	p.t.Helper()
	var jobs []psJob
	if err := json.Unmarshal([]byte(p.ok("ps", "-a", app, "--json")), &jobs); err != nil {
		p.t.Fatalf("ps --json: %v", err)
	}
	return jobs
}

// runAsync starts the CLI without waiting for it (its outcome does not
// matter); the test's end stops it.
func (p *platform) runAsync(t *testing.T, args ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, p.gantry, args...)
	cmd.Dir = p.home
	cmd.Env = p.cliEnv()
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start gantry %v: %v", args, err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})
}

// kill ends gantryd with SIGKILL, as a crash or a power cut would.
func (p *platform) kill() {
	p.t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		p.t.Fatalf("kill gantryd: %v", err)
	}
	<-p.done
	p.cmd = nil
}
