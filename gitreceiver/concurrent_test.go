package gitreceiver

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer that a command writes while a test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestConcurrentForcePushes force-pushes three different commits from
// three clones to one app at once, through the real git and ssh clients.
// Each push either deploys its commit and moves the branch to it, or does
// neither and says so; the branch ends at the commit deployed last.
func TestConcurrentForcePushes(t *testing.T) {
	e := newEnv(t)
	base := e.newRepo(map[string]string{"index.html": "v0"})
	if out, code := e.git(base, e.key, "push", e.url("demo"), "main"); code != 0 {
		t.Fatalf("first push: %d\n%s", code, out)
	}

	// Three clones, each with a commit of its own on the same parent; the
	// first one's build waits until the others wait for it.
	var clones []string
	var commits []string
	for i := range 3 {
		dir := filepath.Join(t.TempDir(), "clone")
		if out, code := e.git("", e.key, "clone", "-q", e.url("demo"), dir); code != 0 {
			t.Fatalf("clone: %d\n%s", code, out)
		}
		files := map[string]string{"index.html": fmt.Sprintf("clone %d", i)}
		if i == 0 {
			files["HOLD"] = "x"
		}
		e.commit(dir, files)
		clones = append(clones, dir)
		commits = append(commits, strings.TrimSpace(run(t, dir, nil, "git", "rev-parse", "HEAD")))
	}
	e.rec.mu.Lock()
	e.rec.builds = nil
	e.rec.mu.Unlock()

	type result struct {
		out  *syncBuffer
		code int
	}
	results := make([]result, 3)
	var wg sync.WaitGroup
	start := func(i int) {
		results[i].out = &syncBuffer{}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		cmd := exec.CommandContext(ctx, "git", "push", "--force", e.url("demo"), "main")
		cmd.Dir = clones[i]
		cmd.Env = append(append(os.Environ(), gitIdentity...), "GIT_SSH_COMMAND="+e.sshCommand(e.key))
		cmd.Stdout, cmd.Stderr = results[i].out, results[i].out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer cancel()
			cmd.Wait()
			results[i].code = cmd.ProcessState.ExitCode()
		}()
	}
	start(0)
	eventually(t, "the first push's build starts", func() bool {
		return strings.Contains(results[0].out.String(), "Building demo")
	})
	start(1)
	start(2)
	eventually(t, "the other pushes wait for the first", func() bool {
		return strings.Contains(results[1].out.String(), "Waiting for another") &&
			strings.Contains(results[2].out.String(), "Waiting for another")
	})
	close(e.rec.hold)
	wg.Wait()

	e.rec.mu.Lock()
	built := map[string]bool{}
	var last string
	for _, b := range e.rec.builds {
		built[b.Commit] = true
		last = b.Commit
	}
	e.rec.mu.Unlock()
	for i, r := range results {
		out := r.out.String()
		switch {
		case r.code == 0 && !built[commits[i]]:
			t.Errorf("push %d was accepted but its commit was not deployed:\n%s", i, out)
		case r.code != 0 && built[commits[i]]:
			t.Errorf("push %d was rejected but its commit was deployed:\n%s", i, out)
		case r.code != 0 && !strings.Contains(out, "nothing was deployed"):
			t.Errorf("push %d was rejected without saying that nothing was deployed:\n%s", i, out)
		}
	}
	if results[0].code != 0 {
		t.Errorf("the first push failed:\n%s", results[0].out)
	}
	for _, i := range []int{1, 2} {
		if !strings.Contains(results[i].out.String(), "! [remote rejected] main -> main (changed by another push)") {
			t.Errorf("push %d: want a rejection because another push moved main:\n%s", i, results[i].out)
		}
	}
	ref := strings.TrimSpace(run(t, e.repoDir+"/demo.git", nil, "git", "rev-parse", "refs/heads/main"))
	if ref != last {
		t.Errorf("main is at %s, but the commit deployed last is %s", ref, last)
	}
}
