package slugrunner

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// runner is the test binary re-executed as a slug runner process.
type runner struct {
	cmd    *exec.Cmd
	out    bytes.Buffer
	app    string
	waited chan error
	pidNS  bool // runs as PID 1 of a new PID namespace
}

func startRunner(t *testing.T, command string, sys *syscall.SysProcAttr) *runner {
	t.Helper()
	r := &runner{app: t.TempDir(), waited: make(chan error, 1)}
	r.cmd = exec.Command(os.Args[0])
	r.cmd.Env = append(os.Environ(), runnerEnv+"=1", runnerAppDirEnv+"="+r.app, runnerCommandEnv+"="+command)
	r.cmd.Stdout, r.cmd.Stderr = &r.out, &r.out
	if sys == nil {
		sys = &syscall.SysProcAttr{}
	}
	sys.Pdeathsig = syscall.SIGKILL // the runner ends with this test binary
	r.pidNS = sys.Cloneflags&syscall.CLONE_NEWPID != 0
	r.cmd.SysProcAttr = sys
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("start runner: %v", err)
	}
	go func() { r.waited <- r.cmd.Wait() }()
	t.Cleanup(r.stop)
	return r
}

// stop kills the runner, if it still runs, and the command's process
// group, named by the pid the command wrote to the file "pid".
func (r *runner) stop() {
	if r.cmd.ProcessState == nil {
		r.cmd.Process.Kill()
		<-r.waited
	}
	if r.pidNS {
		return // the namespace ended with the runner, its PID 1
	}
	if b, err := os.ReadFile(filepath.Join(r.app, "pid")); err == nil {
		if pgid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			syscall.Kill(-pgid, syscall.SIGKILL)
		}
	}
}

func (r *runner) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-r.waited:
	case <-time.After(time.Minute):
		t.Fatalf("runner did not exit; output:\n%s", r.out.String())
	}
	return r.cmd.ProcessState.ExitCode()
}

func (r *runner) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := r.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal runner: %v", err)
	}
}

func TestStartForwardsSignals(t *testing.T) {
	const command = `echo $$ > pid
trap 'echo USR1 >> signals' USR1
trap 'echo HUP >> signals' HUP
trap 'echo TERM >> signals; exit 42' TERM
touch ready
` + idle
	r := startRunner(t, command, nil)
	waitFor(t, "the command to start", fileExists(filepath.Join(r.app, "ready")))
	signals := filepath.Join(r.app, "signals")
	r.signal(t, syscall.SIGUSR1)
	waitFor(t, "SIGUSR1 to arrive", func() bool { b, _ := os.ReadFile(signals); return string(b) == "USR1\n" })
	r.signal(t, syscall.SIGHUP)
	waitFor(t, "SIGHUP to arrive", func() bool { b, _ := os.ReadFile(signals); return string(b) == "USR1\nHUP\n" })
	r.signal(t, syscall.SIGTERM)
	if code := r.wait(t); code != 42 {
		t.Fatalf("runner exit code %d, want 42; output:\n%s", code, r.out.String())
	}
	if b, _ := os.ReadFile(signals); string(b) != "USR1\nHUP\nTERM\n" {
		t.Errorf("signals received: %q", b)
	}
}

func TestStartReportsFatalSignal(t *testing.T) {
	r := startRunner(t, "echo $$ > pid; touch ready; "+idle, nil)
	waitFor(t, "the command to start", fileExists(filepath.Join(r.app, "ready")))
	r.signal(t, syscall.SIGTERM)
	if code, want := r.wait(t), 128+int(syscall.SIGTERM); code != want {
		t.Fatalf("runner exit code %d, want %d; output:\n%s", code, want, r.out.String())
	}
}

// TestStartReapsOrphansAsPID1 runs the runner as PID 1 of a new PID
// namespace. The command orphans a short-lived process, which the kernel
// re-parents to PID 1, and waits until that process is gone: a zombie
// still answers kill -0, so the command only ends if the runner reaps it.
func TestStartReapsOrphansAsPID1(t *testing.T) {
	if os.Geteuid() != 0 {
		if testing.Short() {
			t.Skip("a new PID namespace needs root")
		}
		t.Fatal("a new PID namespace needs root; run as root or with -short")
	}
	const command = `sh -c 'sleep 0.01 & echo $! > orphan'
i=0; while kill -0 "$(cat orphan)" 2>/dev/null && [ $i -lt 6000 ]; do sleep 0.01; i=$((i+1)); done
kill -0 "$(cat orphan)" 2>/dev/null && { echo orphan not reaped; exit 1; }
trap 'exit 7' TERM
touch reaped
` + idle
	r := startRunner(t, command, &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID})
	waitFor(t, "the orphan to be reaped", fileExists(filepath.Join(r.app, "reaped")))
	r.signal(t, syscall.SIGTERM)
	if code := r.wait(t); code != 7 {
		t.Fatalf("runner exit code %d, want 7; output:\n%s", code, r.out.String())
	}
	if !strings.Contains(r.out.String(), "reaped orphan") {
		t.Errorf("runner did not log reaping; output:\n%s", r.out.String())
	}
}

// TestStartTerminalForeground runs the runner as the session leader of a
// pseudo-terminal, as in an interactive one-off container. The command
// reads the terminal, which only works when the runner made its process
// group the terminal's foreground group (a background reader is stopped
// by SIGTTIN).
func TestStartTerminalForeground(t *testing.T) {
	master, slave := openPTY(t)
	r := &runner{app: t.TempDir(), waited: make(chan error, 1)}
	r.cmd = exec.Command(os.Args[0])
	r.cmd.Env = append(os.Environ(), runnerEnv+"=1", runnerAppDirEnv+"="+r.app, runnerStdinEnv+"=1",
		runnerCommandEnv+"="+`echo $$ > pid; touch ready; read line; echo "got $line"`)
	r.cmd.Stdin, r.cmd.Stdout, r.cmd.Stderr = slave, slave, &r.out
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0, Pdeathsig: syscall.SIGKILL}
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("start runner: %v", err)
	}
	slave.Close()
	go func() { r.waited <- r.cmd.Wait() }()
	t.Cleanup(r.stop)

	var mu sync.Mutex
	var screen bytes.Buffer
	go func() {
		buf := make([]byte, 1024)
		for {
			n, err := master.Read(buf)
			mu.Lock()
			screen.Write(buf[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	waitFor(t, "the command to start", fileExists(filepath.Join(r.app, "ready")))
	if _, err := master.Write([]byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	if code := r.wait(t); code != 0 {
		t.Fatalf("runner exit code %d, want 0; output:\n%s", code, r.out.String())
	}
	waitFor(t, "the command's answer", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return strings.Contains(screen.String(), "got hello")
	})
}

// openPTY opens a pseudo-terminal pair.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { master.Close() })
	var unlock int32
	var n uint32
	ioctl := func(req uintptr, arg unsafe.Pointer) {
		var errno syscall.Errno
		conn, err := master.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		conn.Control(func(fd uintptr) { _, _, errno = syscall.Syscall(syscall.SYS_IOCTL, fd, req, uintptr(arg)) })
		if errno != 0 {
			t.Fatalf("pseudo-terminal ioctl %#x: %v", req, errno)
		}
	}
	ioctl(syscall.TIOCSPTLCK, unsafe.Pointer(&unlock))
	ioctl(syscall.TIOCGPTN, unsafe.Pointer(&n))
	slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { slave.Close() })
	return master, slave
}
