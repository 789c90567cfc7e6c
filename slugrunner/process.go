package slugrunner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/term"
)

// forwardedSignals are passed on to the command's process group.
var forwardedSignals = []os.Signal{
	syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP,
	syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2,
}

// outputGrace is how long output copying may go on after the command
// exited, for background processes that still hold its output open.
const outputGrace = 2 * time.Second

type waitResult struct {
	code int
	err  error
}

// runCommand starts argv in its own process group and waits for it,
// forwarding signals and, as PID 1, reaping orphans.
func runCommand(ctx context.Context, cfg Config, argv, env []string) (int, error) {
	log := cfg.Logger
	// Subscribe before the child exists so that no signal is lost.
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, forwardedSignals...)
	defer signal.Stop(sigs)

	stdin := cfg.Stdin
	if stdin == nil {
		devNull, err := os.Open(os.DevNull)
		if err != nil {
			return -1, fmt.Errorf("open %s: %w", os.DevNull, err)
		}
		defer devNull.Close()
		stdin = devNull
	}
	stdout, err := newOutput(cfg.Stdout)
	if err != nil {
		return -1, err
	}
	defer stdout.finish(0)
	stderr := stdout
	if !sameWriter(cfg.Stdout, cfg.Stderr) {
		if stderr, err = newOutput(cfg.Stderr); err != nil {
			return -1, err
		}
		defer stderr.finish(0)
	}

	sys := &syscall.SysProcAttr{Setpgid: true}
	if term.IsTerminal(int(stdin.Fd())) {
		sys.Foreground = true
		sys.Ctty = int(stdin.Fd())
	}
	proc, err := os.StartProcess(argv[0], argv, &os.ProcAttr{
		Dir:   cfg.AppDir,
		Env:   env,
		Files: []*os.File{stdin, stdout.child, stderr.child},
		Sys:   sys,
	})
	stdout.started()
	stderr.started()
	if err != nil {
		return -1, fmt.Errorf("start command: %w", err)
	}
	pid := proc.Pid
	defer proc.Release()
	reap := os.Getpid() == 1
	log.Debug("command started", "pid", pid, "reaping", reap)

	waited := make(chan waitResult, 1)
	go func() { waited <- waitChild(pid, reap, log) }()

	done := ctx.Done()
	var kill <-chan time.Time
	terminated := false
	for {
		select {
		case sig := <-sigs:
			s := sig.(syscall.Signal)
			if s == syscall.SIGTERM || s == syscall.SIGINT {
				terminated = true
			}
			log.Debug("forwarding signal", "signal", s.String(), "pgid", pid)
			signalGroup(pid, s, log)
		case <-done:
			done = nil
			if !terminated {
				log.Info("stopping command", "pgid", pid, "signal", "SIGTERM")
				signalGroup(pid, syscall.SIGTERM, log)
				terminated = true
			}
			timer := time.NewTimer(cfg.StopTimeout)
			defer timer.Stop()
			kill = timer.C
		case <-kill:
			kill = nil
			log.Warn("command did not stop in time", "pgid", pid, "signal", "SIGKILL")
			signalGroup(pid, syscall.SIGKILL, log)
		case res := <-waited:
			stdout.finish(outputGrace)
			stderr.finish(outputGrace)
			return res.code, res.err
		}
	}
}

func signalGroup(pgid int, sig syscall.Signal, log *slog.Logger) {
	if err := syscall.Kill(-pgid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		log.Warn("cannot signal command", "pgid", pgid, "signal", sig.String(), "err", err)
	}
}

// waitChild waits for pid to exit and returns its exit code. With reap it
// waits for any child instead, reaping orphans re-parented to this
// process (PID 1) until pid is among them, and then the zombies left.
func waitChild(pid int, reap bool, log *slog.Logger) waitResult {
	target := pid
	if reap {
		target = -1
	}
	for {
		var ws syscall.WaitStatus
		got, err := syscall.Wait4(target, &ws, 0, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return waitResult{code: -1, err: fmt.Errorf("wait for command: %w", err)}
		}
		if got != pid {
			log.Debug("reaped orphan", "pid", got, "status", exitCode(ws))
			continue
		}
		if reap {
			reapZombies(log)
		}
		return waitResult{code: exitCode(ws)}
	}
}

// reapZombies collects every child that has already exited.
func reapZombies(log *slog.Logger) {
	for {
		var ws syscall.WaitStatus
		got, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil || got <= 0 {
			return
		}
		log.Debug("reaped orphan", "pid", got, "status", exitCode(ws))
	}
}

// exitCode follows the shell convention: the exit status, or 128+n for a
// process killed by signal n.
func exitCode(ws syscall.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// sameWriter reports whether a and b are the same writer, which then gets
// one pipe and one copying goroutine, as with os/exec.
func sameWriter(a, b io.Writer) (same bool) {
	defer func() {
		if recover() != nil {
			same = false // not comparable
		}
	}()
	return a == b
}

// output connects a command's output stream to a writer: directly when
// the writer is a file, else through a pipe and a copying goroutine.
type output struct {
	child  *os.File      // the descriptor the command gets
	read   *os.File      // our end of the pipe; nil when direct
	copied chan struct{} // closed when copying ended; nil when direct
}

func newOutput(w io.Writer) (*output, error) {
	if f, ok := w.(*os.File); ok {
		return &output{child: f}, nil
	}
	r, wr, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("create output pipe: %w", err)
	}
	o := &output{child: wr, read: r, copied: make(chan struct{})}
	go func() {
		defer close(o.copied)
		io.Copy(w, r)
	}()
	return o, nil
}

// started closes the command's end of the pipe in this process.
func (o *output) started() {
	if o.read != nil && o.child != nil {
		o.child.Close()
		o.child = nil
	}
}

// finish waits up to grace for the copying to reach the end of the
// output, then stops it. It is idempotent.
func (o *output) finish(grace time.Duration) {
	if o.read == nil {
		return
	}
	o.started()
	if grace > 0 {
		timer := time.NewTimer(grace)
		defer timer.Stop()
		select {
		case <-o.copied:
		case <-timer.C:
		}
	}
	o.read.Close()
	<-o.copied
}
