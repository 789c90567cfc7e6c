package gitreceiver

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/gliderlabs/ssh"
)

// handleSession serves one SSH exec request: git-receive-pack or
// git-upload-pack for an app's repository; anything else is refused.
func (s *Server) handleSession(sess ssh.Session) {
	log := s.log.With("remote", sess.RemoteAddr().String(), "command", truncate(sess.RawCommand(), 100))
	cmd, err := ParseCommand(sess.RawCommand())
	if err != nil {
		fmt.Fprintf(sess.Stderr(), " !     %v\n", err)
		sess.Exit(1)
		return
	}
	ctx, cancel := context.WithTimeout(sess.Context(), s.cfg.PushTimeout)
	defer cancel()
	actx, acancel := context.WithTimeout(ctx, lookupTimeout)
	app, err := s.cfg.Apps.App(actx, cmd.App)
	acancel()
	if errors.Is(err, ErrNoApp) {
		fmt.Fprintf(sess.Stderr(), " !     no such app: %s (create it with `gantry create %s`)\n", cmd.App, cmd.App)
		sess.Exit(1)
		return
	}
	if err != nil {
		log.Error("look up app", "app", cmd.App, "err", err)
		fmt.Fprintf(sess.Stderr(), " !     cannot look up app %s right now: %v\n", cmd.App, err)
		sess.Exit(1)
		return
	}
	repo, err := s.ensureRepo(app, cmd.App)
	if err != nil {
		log.Error("prepare repository", "app", cmd.App, "err", err)
		fmt.Fprintf(sess.Stderr(), " !     cannot prepare the repository of %s\n", cmd.App)
		sess.Exit(1)
		return
	}
	log.Info("git request", "service", cmd.Service, "app", cmd.App)

	// receive.procReceiveRefs hands every ref update to the proc-receive
	// hook, which reports "build failed" (or another reason) per ref.
	git := exec.CommandContext(ctx, s.cfg.Git, "-c", "receive.procReceiveRefs=refs", strings.TrimPrefix(cmd.Service, "git-"), repo)
	git.Stdin, git.Stdout, git.Stderr = sess, sess, sess.Stderr()
	git.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0")
	git.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	git.Cancel = func() error { return syscall.Kill(-git.Process.Pid, syscall.SIGKILL) }
	if cmd.Service == "git-receive-pack" {
		id := newID()
		s.mu.Lock()
		s.pushes[id] = &push{app: cmd.App, repo: repo, ctx: ctx}
		s.mu.Unlock()
		defer func() {
			s.mu.Lock()
			delete(s.pushes, id)
			s.mu.Unlock()
		}()
		git.Env = append(git.Env, envHookSocket+"="+s.hookLn.Addr().String(), envPushID+"="+id)
	}
	code := 0
	if err := git.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() > 0 {
			code = ee.ExitCode()
		} else {
			log.Error("git failed", "err", err)
			code = 1
		}
	}
	sess.Exit(code)
}

func (s *Server) writeHook(repo string) error {
	var b strings.Builder
	b.WriteString("#!/bin/sh\n# Installed by Gantry: builds the push before the ref is accepted.\nexec")
	for _, a := range s.cfg.HookCommand {
		b.WriteString(" '" + strings.ReplaceAll(a, "'", `'\''`) + "'")
	}
	b.WriteString("\n")
	// Repositories made before the hook was a proc-receive one had a
	// pre-receive hook; it would build a second time.
	if err := os.Remove(filepath.Join(repo, "hooks", "pre-receive")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove old hook: %w", err)
	}
	hook := filepath.Join(repo, "hooks", "proc-receive")
	if cur, err := os.ReadFile(hook); err == nil && string(cur) == b.String() && isExecutable(hook) {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(hook), 0o755); err != nil {
		return fmt.Errorf("hooks dir: %w", err)
	}
	tmp := hook + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o755); err != nil {
		return fmt.Errorf("write hook: %w", err)
	}
	return os.Rename(tmp, hook)
}

// serveHooks accepts hook connections until ctx is done or the listener is
// closed.
func (s *Server) serveHooks(ctx context.Context) {
	for {
		conn, err := s.hookLn.Accept()
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				s.log.Error("hook socket", "err", err)
			}
			return
		}
		go s.handleHook(ctx, conn)
	}
}

// handleHook runs the build for one proc-receive hook invocation and streams
// its output back; the exit frame accepts (0) or rejects the push.
func (s *Server) handleHook(ctx context.Context, conn net.Conn) {
	defer conn.Close()
	out := &frameWriter{w: conn}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var req hookRequest
	if err := json.NewDecoder(bufio.NewReader(io.LimitReader(conn, 1<<20))).Decode(&req); err != nil {
		s.log.Error("bad hook request", "err", err)
		return
	}
	conn.SetReadDeadline(time.Time{})
	s.mu.Lock()
	p := s.pushes[req.PushID]
	s.mu.Unlock()
	if p == nil {
		fmt.Fprintln(out, " !     unknown push")
		out.finish(1, "unknown push")
		return
	}
	// The build ends when the client disconnects (the push's context), when
	// the hook goes away (the connection closes), or when the server stops.
	bctx, cancel := context.WithCancel(p.ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	go func() {
		var b [1]byte
		conn.Read(b[:]) // returns when the hook closes its end
		cancel()
	}()
	code, reason := 0, ""
	if err := s.build(bctx, p, req, out); err != nil {
		code, reason = 1, "build failed"
		var rej *Rejection
		switch {
		case bctx.Err() != nil && ctx.Err() == nil:
			err, reason = errClientGone, "build cancelled"
		case errors.As(err, &rej):
			reason = rej.Reason
		}
		s.log.Info("push rejected", "app", p.app, "err", err)
		if rej == nil || !rej.Shown {
			fmt.Fprintf(out, " !     %v\n", err)
		}
	}
	out.finish(code, reason)
}

// build checks the ref updates and, holding the repository's push lock,
// checks that the branch is still where the pusher saw it, hands the commit
// to the Builder (which builds, releases and deploys it), and moves the
// branch to it. So a push either deploys its commit and moves the branch,
// or does neither and says so, also when pushes to one app race.
func (s *Server) build(ctx context.Context, p *push, req hookRequest, out io.Writer) error {
	u, err := deployRef(req.Updates)
	if err != nil {
		return err
	}
	unlock, err := lockRepo(ctx, p.repo, func() {
		fmt.Fprintf(out, "-----> Waiting for another push to %s to finish...\n", p.app)
	})
	if err != nil {
		if ctx.Err() != nil {
			return errClientGone
		}
		return fmt.Errorf("lock the repository of %s: %w", p.app, err)
	}
	defer unlock()

	repoEnv := append(os.Environ(), "GIT_DIR="+p.repo)
	cur, err := s.refValue(ctx, repoEnv, u.Name)
	if err != nil {
		return err
	}
	if cur != u.Old && !(isZeroID(cur) && isZeroID(u.Old)) {
		return &Rejection{Reason: reasonRefMoved, Err: fmt.Errorf("%w: %s is at %s now, not at %s as when this push began; nothing was deployed (fetch, then push again)",
			ErrRefMoved, u.Name, short(cur), short(u.Old))}
	}

	env := os.Environ()
	for k, v := range req.GitEnv {
		env = append(env, k+"="+v)
	}
	env = append(env, "GIT_DIR="+p.repo)
	if subs, err := s.gitOutput(ctx, env, "ls-tree", "-r", "--format=%(objectmode) %(path)", u.New); err == nil {
		for _, line := range strings.Split(subs, "\n") {
			if mode, path, ok := strings.Cut(line, " "); ok && mode == "160000" {
				fmt.Fprintf(out, "-----> Submodule %s is left out of the build (submodules are not fetched)\n", path)
			}
		}
	}
	if err := s.cfg.Builder.Build(ctx, BuildRequest{
		App:    p.app,
		Ref:    u.Name,
		Commit: u.New,
		Source: func(ctx context.Context) (io.ReadCloser, error) {
			return s.archive(ctx, env, u.New)
		},
	}, out); err != nil {
		return err
	}
	// The ref moves after the deploy and under the same lock, checked
	// against the value seen above. A failure here is a broken disk or
	// repository, not a race; it is reported as what happened.
	if _, err := s.gitOutput(context.WithoutCancel(ctx), repoEnv, "update-ref", "-m", "push", u.Name, u.New, u.Old); err != nil {
		return &Rejection{Reason: "deployed, ref update failed", Err: fmt.Errorf("%s was deployed, but %s could not be moved to it: %w", short(u.New), u.Name, err)}
	}
	return nil
}

// refValue returns the object ID ref points at, or zeroID when it does not
// exist.
func (s *Server) refValue(ctx context.Context, env []string, ref string) (string, error) {
	out, err := s.gitOutput(ctx, env, "for-each-ref", "--format=%(objectname)", ref)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", ref, err)
	}
	if v := strings.TrimSpace(out); v != "" {
		return v, nil
	}
	return zeroID, nil
}

// short abbreviates an object ID for messages.
func short(id string) string {
	if isZeroID(id) {
		return "no commit (the branch did not exist)"
	}
	if len(id) > 7 {
		return id[:7]
	}
	return id
}

func (s *Server) gitOutput(ctx context.Context, env []string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.cfg.Git, args...)
	cmd.Env = env
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && len(ee.Stderr) > 0 {
			return "", fmt.Errorf("git %s: %w: %s", args[0], err, strings.TrimSpace(string(ee.Stderr)))
		}
		return "", fmt.Errorf("git %s: %w", args[0], err)
	}
	return string(out), nil
}

// archive streams `git archive` of commit as a tar.
func (s *Server) archive(ctx context.Context, env []string, commit string) (io.ReadCloser, error) {
	cmd := exec.CommandContext(ctx, s.cfg.Git, "archive", "--format=tar", commit)
	cmd.Env = env
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("git archive: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("git archive: %w", err)
	}
	return &cmdReader{ReadCloser: stdout, cmd: cmd, stderr: &stderr}, nil
}

// cmdReader reads a command's stdout and reports its failure on EOF.
type cmdReader struct {
	io.ReadCloser
	cmd    *exec.Cmd
	stderr *strings.Builder
	done   bool
}

func (r *cmdReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	if err == io.EOF && !r.done {
		r.done = true
		if werr := r.cmd.Wait(); werr != nil {
			return n, fmt.Errorf("git archive: %w: %s", werr, strings.TrimSpace(r.stderr.String()))
		}
	}
	return n, err
}

func (r *cmdReader) Close() error {
	r.ReadCloser.Close()
	if !r.done {
		r.done = true
		r.cmd.Process.Kill()
		r.cmd.Wait()
	}
	return nil
}

// Rejection is an error that rejects a push with a reason other than
// "build failed". A Builder returns one (wrapped or not) to say, for
// example, that the build succeeded but its deploy did not.
type Rejection struct {
	// Reason is short: git shows it as "! [remote rejected] main -> main
	// (Reason)".
	Reason string
	Err    error
	// Shown is set when the build's output already ends with the error's
	// message, so that it is not written twice.
	Shown bool
}

func (e *Rejection) Error() string { return e.Err.Error() }
func (e *Rejection) Unwrap() error { return e.Err }
