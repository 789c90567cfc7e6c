package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// appName is the name of the app the benchmark creates.
const appName = "goweb"

// benchPush starts gantryd up on free ports in work, pushes the test app
// once into an empty build cache and runs warm pushes of one-line changes,
// each timed until the router serves the new content. It stops gantryd
// and removes its containers before it returns.
func benchPush(ctx context.Context, work, bin, src string, runs int, res *results) error {
	fmt.Println("==> Starting gantryd up on free ports")
	p, err := startPlatform(ctx, bin, work)
	if err != nil {
		return err
	}
	defer p.stop()

	key := filepath.Join(work, "id_ed25519")
	if _, err := sh(ctx, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bench@gantry", "-f", key); err != nil {
		return err
	}
	if _, err := p.gantry(ctx, "", "key", "add", key+".pub"); err != nil {
		return err
	}
	repo := filepath.Join(work, "repo")
	if err := copyApp(src, repo); err != nil {
		return err
	}
	if err := p.git(ctx, repo, "init", "-q", "-b", "main"); err != nil {
		return err
	}
	if err := p.git(ctx, repo, "add", "."); err != nil {
		return err
	}
	if err := p.git(ctx, repo, "commit", "-q", "-m", "go-web"); err != nil {
		return err
	}
	if _, err := p.gantry(ctx, repo, "create", appName); err != nil {
		return err
	}

	fmt.Println("==> git push, cold (first push, empty build cache)")
	d, _, err := p.push(ctx, repo, key, "cold", "hello from goweb ")
	if err != nil {
		return err
	}
	res.pushCold = d
	fmt.Printf("    cold: %s\n", round(d))
	for i := 1; i <= runs; i++ {
		want, err := change(src, repo, i)
		if err != nil {
			return err
		}
		if err := p.git(ctx, repo, "commit", "-q", "-am", fmt.Sprintf("change %d", i)); err != nil {
			return err
		}
		fmt.Printf("==> git push, warm %d (one-line change)\n", i)
		d, timeline, err := p.push(ctx, repo, key, fmt.Sprintf("warm-%d", i), want)
		if err != nil {
			return err
		}
		res.pushWarm = append(res.pushWarm, d)
		res.timelines = append(res.timelines, timeline)
		fmt.Printf("    warm %d: %s\n", i, round(d))
	}
	return nil
}

// push runs `git push gantry main` in repo with the real OpenSSH client and
// key, and returns the time from its start until the router serves a page
// containing want, and the push's timeline: the push output's lines and
// the gantryd log's, both as times since the start. The output, with
// times, is kept in work/push-<name>.log.
func (p *platform) push(ctx context.Context, repo, key, name, want string) (time.Duration, []event, error) {
	ctx, cancel := context.WithTimeout(ctx, liveTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "git", "push", "gantry", "main")
	cmd.Dir = repo
	cmd.Env = append(p.gitEnv(), "GIT_SSH_COMMAND=ssh -F /dev/null -i "+key+
		" -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile="+filepath.Join(p.work, "known_hosts"))
	start := time.Now()
	out := &stampWriter{start: start}
	cmd.Stdout, cmd.Stderr = out, out
	live := make(chan error, 1)
	var liveAt time.Time
	go func() {
		var err error
		liveAt, err = waitContent(ctx, "http://"+p.httpAddr+"/", appName+".localhost", want)
		live <- err
	}()
	err := cmd.Run()
	pushDone := time.Since(start)
	logFile := filepath.Join(p.work, "push-"+name+".log")
	if werr := os.WriteFile(logFile, []byte(out.String()), 0o644); werr != nil {
		return 0, nil, werr
	}
	if err != nil {
		return 0, nil, fmt.Errorf("git push (%s): %w\n%s", name, err, out)
	}
	if err := <-live; err != nil {
		return 0, nil, fmt.Errorf("after git push (%s): %w\n%s", name, err, out)
	}
	d := liveAt.Sub(start)
	var timeline []event
	for _, e := range out.events() {
		if text, ok := strings.CutPrefix(e.text, "remote: "); ok && strings.TrimSpace(text) != "" {
			timeline = append(timeline, event{at: e.at, source: "push", text: strings.TrimSpace(text)})
		}
	}
	logged, err := gantrydEvents(p.logFile, start, liveAt)
	if err != nil {
		return 0, nil, err
	}
	timeline = append(timeline, logged...)
	timeline = append(timeline,
		event{at: pushDone, source: "bench", text: "git push exited"},
		event{at: d, source: "bench", text: "the router serves the new content"})
	slices.SortStableFunc(timeline, func(a, b event) int { return int(a.at - b.at) })
	return d, timeline, nil
}

// platform is a gantryd up started by the benchmark.
type platform struct {
	cmd      *exec.Cmd
	done     chan error
	stopOnce sync.Once
	work     string
	bin      string
	data     string
	logFile  string
	httpAddr string
	env      []string
}

// startPlatform starts `gantryd up` on free loopback ports with its data
// in work/data, logging at debug level (the builder's phase timings) to
// work/gantryd.log, and waits until its API answers.
func startPlatform(ctx context.Context, bin, work string) (*platform, error) {
	p := &platform{
		work: work, bin: bin, data: filepath.Join(work, "data"),
		logFile: filepath.Join(work, "gantryd.log"), httpAddr: freeAddr(), done: make(chan error, 1),
	}
	api := freeAddr()
	args := []string{"--log-level", "debug", "up", "--in-process", "--data", p.data, "--api-addr", api, "--http-addr", p.httpAddr,
		"--https-addr", freeAddr(), "--ssh-addr", freeAddr(), "--host-api-addr", freeAddr(),
		"--etcd-client-addr", freeAddr(), "--etcd-peer-addr", freeAddr()}
	log, err := os.Create(p.logFile)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	p.cmd = exec.Command(filepath.Join(bin, "gantryd"), args...)
	p.cmd.Stdout, p.cmd.Stderr = log, log
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start gantryd: %w", err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if _, err := waitContent(wctx, "http://"+api+"/healthz", "", ""); err != nil {
		p.stop()
		b, _ := os.ReadFile(p.logFile)
		return nil, fmt.Errorf("gantryd did not come up: %w\n%s", err, b)
	}
	env, err := readEnvFile(filepath.Join(p.data, "admin.env"))
	if err != nil {
		p.stop()
		return nil, err
	}
	p.env = append(env, "GANTRY_CONFIG="+filepath.Join(work, "cli.json"))
	return p, nil
}

// gantry runs the CLI in dir ("" for the current directory).
func (p *platform) gantry(ctx context.Context, dir string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(p.bin, "gantry"), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), p.env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("gantry %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// gitEnv is the environment of git: a home of its own under work, so the
// user's git configuration does not apply, and a fixed identity.
func (p *platform) gitEnv() []string {
	return append(os.Environ(), "HOME="+filepath.Join(p.work, "home"), "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=bench", "GIT_AUTHOR_EMAIL=bench@gantry.invalid",
		"GIT_COMMITTER_NAME=bench", "GIT_COMMITTER_EMAIL=bench@gantry.invalid")
}

func (p *platform) git(ctx context.Context, dir string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = p.gitEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// stop stops gantryd (SIGTERM, SIGKILL after a minute) and removes the
// containers of its cluster, which gantryd leaves running on purpose.
// It is idempotent.
func (p *platform) stop() {
	p.stopOnce.Do(p.stopNow)
}

func (p *platform) stopNow() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	cluster, err := os.ReadFile(filepath.Join(p.data, "cluster-id"))
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			fmt.Fprintf(os.Stderr, "bench-deploy: %v\n", err)
		}
		return
	}
	label := "gantry.cluster=" + strings.TrimSpace(string(cluster))
	removeContainers(context.Background(), label)
	removeVolumes(context.Background(), label)
}

// removeVolumes removes every volume carrying label (key=value): the apps'
// build caches.
func removeVolumes(ctx context.Context, label string) {
	out, err := sh(ctx, "docker", "volume", "ls", "-q", "--filter", "label="+label)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench-deploy: list volumes: %v\n", err)
		return
	}
	if names := strings.Fields(out); len(names) > 0 {
		if _, err := sh(ctx, "docker", append([]string{"volume", "rm", "-f"}, names...)...); err != nil {
			fmt.Fprintf(os.Stderr, "bench-deploy: remove volumes: %v\n", err)
		}
	}
}

// removeContainers removes every container carrying label (key=value).
func removeContainers(ctx context.Context, label string) {
	out, err := sh(ctx, "docker", "ps", "-aq", "--filter", "label="+label)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench-deploy: list containers: %v\n", err)
		return
	}
	if ids := strings.Fields(out); len(ids) > 0 {
		if _, err := sh(ctx, "docker", append([]string{"rm", "-f"}, ids...)...); err != nil {
			fmt.Fprintf(os.Stderr, "bench-deploy: remove containers: %v\n", err)
		}
	}
}
