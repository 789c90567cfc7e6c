package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"

	"github.com/gantryhq/gantry/deploy/stack"
	"github.com/gantryhq/gantry/deploy/testenv"
	"github.com/gantryhq/gantry/layer0/keyspace"
)

// TestRun runs one-off jobs with `gantry run` as a user would: plain
// commands and their exit status, stdin, env, bad input, an interactive
// session in a terminal (a pty), and a detached job; every job's
// container is gone afterwards.
func TestRun(t *testing.T) {
	p := newPlatform(t)
	requireStackImages(t)
	docker := testenv.Docker(t)
	image := stack.StackRef(stack.DefaultVersion)

	p.ok("create", "runner")
	if r := p.run("", nil, "run", "-a", "runner", "echo", "hi"); r.code != 1 || !strings.Contains(r.stderr, "no release") {
		t.Fatalf("run before any release: exit %d, stderr %q; want a refusal naming the missing release", r.code, r.stderr)
	}
	p.ok("release", "create", "-a", "runner", "--image", image, "--process", "worker=sleep infinity")
	p.ok("env", "set", "-a", "runner", "FROM_CONFIG=configured")

	for _, tc := range []struct {
		name       string
		args       []string
		stdin      string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{"echo", []string{"echo", "hi"}, "", 0, "hi\n", ""},
		{"exit status", []string{"sh", "-c", "exit 3"}, "", 3, "", ""},
		{"stderr apart", []string{"sh", "-c", "echo out; echo err >&2"}, "", 0, "out\n", "err\n"},
		{"config vars and -e", []string{"-e", "EXTRA=one-off", "sh", "-c", "echo $FROM_CONFIG $EXTRA"}, "", 0, "configured one-off\n", ""},
		{"stdin", []string{"tr", "a-z", "A-Z"}, "abc\ndef\n", 0, "ABC\nDEF\n", ""},
		{"one line for wc", []string{"cat", "/etc/hostname"}, "", 0, "", ""},
		{"command not found", []string{"no-such-command", "x"}, "", 127, "", "no-such-command"},
		{"no command", nil, "", 1, "", "missing the command"},
		{"unknown app", []string{"-a", "nosuchapp", "echo", "hi"}, "", 1, "", `no app named "nosuchapp"`},
		{"bad -e", []string{"-e", "1X=y", "echo"}, "", 1, "", "1X"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"run"}, tc.args...)
			if !strings.Contains(strings.Join(tc.args, " "), "-a ") {
				args = append([]string{"run", "-a", "runner"}, tc.args...)
			}
			r := p.runStdin(tc.stdin, args...)
			if r.code != tc.wantCode {
				t.Fatalf("exit %d, want %d\nstdout %q\nstderr %q", r.code, tc.wantCode, r.stdout, r.stderr)
			}
			if tc.wantStdout != "" && r.stdout != tc.wantStdout {
				t.Errorf("stdout %q, want %q", r.stdout, tc.wantStdout)
			}
			if tc.name == "one line for wc" && strings.Count(r.stdout, "\n") != 1 {
				t.Errorf("stdout %q: want exactly one line, with nothing added", r.stdout)
			}
			if tc.wantStderr != "" && !strings.Contains(r.stderr, tc.wantStderr) {
				t.Errorf("stderr %q, want it to hold %q", r.stderr, tc.wantStderr)
			}
		})
	}

	t.Run("interactive", func(t *testing.T) { p.interactiveRun(t, docker) })

	// --detach prints the job ID and nothing else; the job runs, ends and
	// is removed.
	r := p.runStdin("", "run", "-a", "runner", "--detach", "sh", "-c", "echo detached; sleep 1")
	if r.code != 0 || !regexp.MustCompile(`^runner\.run\.1\.[0-9a-f]+\n$`).MatchString(r.stdout) {
		t.Fatalf("run --detach: exit %d, stdout %q, stderr %q; want the job ID alone", r.code, r.stdout, r.stderr)
	}
	jobID := strings.TrimSpace(r.stdout)
	eventually(t, time.Minute, "the detached job ended and removed", func() bool {
		for _, j := range p.allJobs("runner") {
			if j.ID == jobID {
				return false
			}
		}
		return len(p.jobContainers(docker, jobID)) == 0
	})

	// Nothing of any run is left: no container, no job.
	eventually(t, time.Minute, "no run job left", func() bool {
		for _, j := range p.allJobs("runner") {
			if j.Type == "run" {
				return false
			}
		}
		return len(p.runContainers(docker)) == 0
	})
}

// allJobs lists the jobs of app, those stopped (down) included.
func (p *platform) allJobs(app string) []job {
	p.t.Helper()
	var jobs []job
	if err := json.Unmarshal([]byte(p.ok("ps", "-a", app, "--all", "--json")), &jobs); err != nil {
		p.t.Fatalf("ps --all --json: %v", err)
	}
	return jobs
}

// runStdin runs the CLI like run, with stdin.
func (p *platform) runStdin(stdin string, args ...string) result {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, p.gantry, args...)
	cmd.Dir = p.home
	cmd.Env = p.cliEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Stdin = strings.NewReader(stdin)
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			p.t.Fatalf("gantry %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return result{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

// interactiveRun drives `gantry run sh` in a terminal: a pty whose other
// end is the CLI's stdin, stdout and stderr and controlling terminal.
func (p *platform) interactiveRun(t *testing.T, docker *client.Client) {
	term := newPty(t, 24, 80)
	cmd := exec.Command(p.gantry, "run", "-a", "runner", "sh")
	cmd.Dir = p.home
	cmd.Env = append(p.cliEnv(), "TERM=dumb")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = term.tty, term.tty, term.tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	term.tty.Close() // the CLI has it
	var waitErr error
	exited := make(chan struct{})
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})

	// The prompt shows once the CLI runs the session, its terminal raw.
	term.expect("# ")
	term.send("echo $((6*7))\r")
	term.expect("42\r\n")

	// The terminal's size follows the CLI's: a resize and SIGWINCH.
	term.resize(33, 121)
	if err := cmd.Process.Signal(syscall.SIGWINCH); err != nil {
		t.Fatal(err)
	}
	// The resize frame may still be on its way when the command is read:
	// ask until the new size shows.
	eventually(t, 30*time.Second, "stty size to say 33 121", func() bool {
		term.send("stty size\r")
		return term.wait("33 121\r\n", 2*time.Second)
	})

	// Ctrl-C stops a running command, not the session.
	term.send("sleep 100; echo slept-$((1+1))\r")
	eventually(t, 30*time.Second, "sleep 100 running in the job", func() bool {
		return strings.Contains(p.runProcesses(docker), "sleep 100")
	})
	term.send("\x03")
	term.send("echo after-$((2+2))\r")
	term.expect("after-4\r\n")
	if strings.Contains(term.output(), "slept-2") {
		t.Fatalf("sleep was not interrupted:\n%s", term.output())
	}

	term.send("exit 5\r")
	select {
	case <-exited:
		ee, ok := waitErr.(*exec.ExitError)
		if !ok || ee.ExitCode() != 5 {
			t.Fatalf("gantry run sh ended with %v, want exit status 5\n%s", waitErr, term.output())
		}
	case <-time.After(time.Minute):
		t.Fatalf("gantry run sh did not exit after exit 5:\n%s", term.output())
	}
}

// runContainers lists the containers of the platform's run jobs.
func (p *platform) runContainers(docker *client.Client) []container.Summary {
	p.t.Helper()
	return p.listContainers(docker, filters.Arg("label", keyspace.LabelType+"=run"))
}

// jobContainers lists the containers of one job.
func (p *platform) jobContainers(docker *client.Client, jobID string) []container.Summary {
	p.t.Helper()
	return p.listContainers(docker, filters.Arg("label", keyspace.LabelJob+"="+jobID))
}

func (p *platform) listContainers(docker *client.Client, f filters.KeyValuePair) []container.Summary {
	p.t.Helper()
	id, err := os.ReadFile(filepath.Join(p.data, "cluster-id"))
	if err != nil {
		p.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	list, err := docker.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", keyspace.LabelCluster+"="+strings.TrimSpace(string(id))), f)})
	if err != nil {
		p.t.Fatal(err)
	}
	return list
}

// runProcesses lists the command lines of the processes of the running
// run jobs.
func (p *platform) runProcesses(docker *client.Client) string {
	var lines []string
	for _, c := range p.runContainers(docker) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		top, err := docker.ContainerTop(ctx, c.ID, []string{"-o", "pid,args"})
		cancel()
		if err != nil {
			continue
		}
		for _, proc := range top.Processes {
			lines = append(lines, strings.Join(proc, " "))
		}
	}
	return strings.Join(lines, "\n")
}

// pty is a pseudo-terminal: the test holds the master side, tty is the
// terminal a process gets.
type pty struct {
	t      *testing.T
	master *os.File
	tty    *os.File

	mu  sync.Mutex
	out bytes.Buffer
	// seen is where the next expect starts looking.
	seen int
}

func newPty(t *testing.T, rows, cols uint16) *pty {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	var n uint32
	if err := ioctl(master, syscall.TIOCGPTN, unsafe.Pointer(&n)); err != nil {
		master.Close()
		t.Fatalf("pty number: %v", err)
	}
	var unlock int32
	if err := ioctl(master, syscall.TIOCSPTLCK, unsafe.Pointer(&unlock)); err != nil {
		master.Close()
		t.Fatalf("unlock pty: %v", err)
	}
	tty, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		t.Fatalf("open the pty's terminal: %v", err)
	}
	p := &pty{t: t, master: master, tty: tty}
	p.resize(rows, cols)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			p.mu.Lock()
			p.out.Write(buf[:n])
			p.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		master.Close()
		tty.Close()
	})
	return p
}

func ioctl(f *os.File, req uintptr, arg unsafe.Pointer) error {
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), req, uintptr(arg)); errno != 0 {
		return errno
	}
	return nil
}

func (p *pty) resize(rows, cols uint16) {
	p.t.Helper()
	ws := struct{ Row, Col, X, Y uint16 }{rows, cols, 0, 0}
	if err := ioctl(p.master, syscall.TIOCSWINSZ, unsafe.Pointer(&ws)); err != nil {
		p.t.Fatalf("resize pty: %v", err)
	}
}

func (p *pty) send(s string) {
	p.t.Helper()
	if _, err := io.WriteString(p.master, s); err != nil {
		p.t.Fatalf("type %q: %v", s, err)
	}
}

func (p *pty) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// wait waits up to d for want to show after what earlier waits matched,
// and reports whether it did.
func (p *pty) wait(want string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		p.mu.Lock()
		i := strings.Index(p.out.String()[p.seen:], want)
		if i >= 0 {
			p.seen += i + len(want)
		}
		p.mu.Unlock()
		if i >= 0 {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// expect waits for want on the terminal and fails the test without it.
func (p *pty) expect(want string) {
	p.t.Helper()
	if !p.wait(want, time.Minute) {
		p.t.Fatalf("%q never showed on the terminal:\n%s", want, p.output())
	}
}
