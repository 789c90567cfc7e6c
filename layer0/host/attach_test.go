package host_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/gantryhq/gantry/deploy/stack"
	"github.com/gantryhq/gantry/deploy/testenv"
	"github.com/gantryhq/gantry/layer0/host/attach"
	hostclient "github.com/gantryhq/gantry/layer0/host/client"
	"github.com/gantryhq/gantry/layer0/keyspace"
)

// TestAttach runs attached one-off jobs (gantry run) on the stack image,
// which has a shell, through the agent's attach API and real Docker.
func TestAttach(t *testing.T) {
	docker := testenv.Docker(t)
	image := stack.StackRef(stack.DefaultVersion)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	_, err := docker.ImageInspect(ctx, image)
	cancel()
	if cerrdefs.IsNotFound(err) {
		t.Fatalf("the image %s is missing: run `bin/gantryd stack build` to build it (or go test -short to skip)", image)
	}
	if err != nil {
		t.Fatalf("inspect %s: %v", image, err)
	}
	f := &fixture{docker: docker, etcd: testenv.Etcd(t), image: image}
	tests := []struct {
		name string
		run  func(t *testing.T, e *env, api *hostclient.Client)
	}{
		{"NoTTY", testAttachNoTTY},
		{"Stdin", testAttachStdin},
		{"TTY", testAttachTTY},
		{"Signal", testAttachSignal},
		{"FirstOutput", testAttachFirstOutput},
		{"CommandNotFound", testAttachCommandNotFound},
		{"ClientGone", testAttachClientGone},
		{"NoClient", testAttachNoClient},
		{"Refused", testAttachRefused},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := f.env(t)
			e.start(e.config("h1"))
			tc.run(t, e, e.api("h1"))
		})
	}
}

// attachedSpec is an attached one-off job running argv on the stack image.
func (e *env) attachedSpec(tty bool, argv ...string) keyspace.JobSpec {
	return keyspace.JobSpec{
		App: "runner", Release: "run-1", ReleaseVersion: 1, Type: "run",
		Image:       e.image,
		Cmd:         argv,
		OneOff:      true,
		Attach:      &keyspace.Attach{TTY: tty, Rows: 30, Cols: 100},
		Resources:   keyspace.Resources{Memory: 64 << 20, PIDs: 100},
		StopTimeout: 3 * time.Second,
	}
}

// session is the client side of one attached job: it collects the job's
// frames as they come.
type session struct {
	t    *testing.T
	conn *attach.Conn
	w    *attach.Writer

	mu       sync.Mutex
	stdout   strings.Builder
	stderr   strings.Builder
	errors   []string
	exit     *int
	readErr  error
	changed  chan struct{}
	finished chan struct{}
}

// runAttached assigns spec as job id on h1 and attaches to it.
func (e *env) runAttached(api *hostclient.Client, id string, spec keyspace.JobSpec) *session {
	e.t.Helper()
	e.assign("h1", id, spec)
	conn, err := api.Attach(e.t.Context(), id)
	if err != nil {
		e.t.Fatalf("attach to %s: %v", id, err)
	}
	e.t.Cleanup(func() { conn.Close() })
	s := &session{t: e.t, conn: conn, w: attach.NewWriter(conn), changed: make(chan struct{}, 1), finished: make(chan struct{})}
	go s.read()
	return s
}

func (s *session) read() {
	defer close(s.finished)
	r := attach.NewReader(s.conn)
	for {
		f, err := r.Read()
		s.mu.Lock()
		switch {
		case err != nil:
			s.readErr = err
		case f.Type == attach.Stdout:
			s.stdout.Write(f.Data)
		case f.Type == attach.Stderr:
			s.stderr.Write(f.Data)
		case f.Type == attach.Error:
			s.errors = append(s.errors, string(f.Data))
		case f.Type == attach.Exit:
			code := f.ExitCode()
			s.exit = &code
		default:
			s.readErr = fmt.Errorf("unexpected %v frame from the agent", f.Type)
		}
		s.mu.Unlock()
		if err != nil || f.Type == attach.Exit {
			return
		}
	}
}

func (s *session) send(f attach.Frame) {
	s.t.Helper()
	if err := s.w.Write(f); err != nil {
		s.t.Fatalf("send %v: %v", f.Type, err)
	}
}

func (s *session) input(text string) { s.send(attach.Frame{Type: attach.Stdin, Data: []byte(text)}) }

// waitStdout waits until the job's stdout holds want.
func (s *session) waitStdout(want string) {
	s.t.Helper()
	waitFor(s.t, fmt.Sprintf("%q on stdout", want), func() (bool, string) {
		s.mu.Lock()
		defer s.mu.Unlock()
		return strings.Contains(s.stdout.String(), want), fmt.Sprintf("stdout %q, stderr %q, read error %v", s.stdout.String(), s.stderr.String(), s.readErr)
	})
}

// wait waits for the exit frame and returns its status.
func (s *session) wait() int {
	s.t.Helper()
	select {
	case <-s.finished:
	case <-time.After(waitTimeout):
		s.t.Fatalf("no exit frame within %s; stdout %q", waitTimeout, s.output())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.exit == nil {
		s.t.Fatalf("the stream ended without an exit frame: %v; stdout %q, errors %q", s.readErr, s.stdout.String(), s.errors)
	}
	return *s.exit
}

func (s *session) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stdout.String()
}

func testAttachNoTTY(t *testing.T, e *env, api *hostclient.Client) {
	s := e.runAttached(api, "runner.run.1.a", e.attachedSpec(false, "sh", "-c", "echo out; echo err >&2; exit 3"))
	s.input("") // no stdin
	if code := s.wait(); code != 3 {
		t.Fatalf("exit %d, want 3", code)
	}
	if s.stdout.String() != "out\n" || s.stderr.String() != "err\n" {
		t.Fatalf("stdout %q, stderr %q; want them apart", s.stdout.String(), s.stderr.String())
	}
	st := e.waitState("runner.run.1.a", keyspace.StateCrashed)
	if st.ExitCode == nil || *st.ExitCode != 3 {
		t.Fatalf("state %+v", st)
	}
	e.waitRemoved("runner.run.1.a")
}

func testAttachStdin(t *testing.T, e *env, api *hostclient.Client) {
	s := e.runAttached(api, "runner.run.1.b", e.attachedSpec(false, "sh", "-c", "tr a-z A-Z; echo done"))
	s.input("hello\n")
	s.input("world\n")
	s.input("")
	if code := s.wait(); code != 0 {
		t.Fatalf("exit %d, want 0", code)
	}
	if got := s.output(); got != "HELLO\nWORLD\ndone\n" {
		t.Fatalf("stdout %q", got)
	}
	e.waitState("runner.run.1.b", keyspace.StateDown)
	e.waitRemoved("runner.run.1.b")
}

func testAttachTTY(t *testing.T, e *env, api *hostclient.Client) {
	s := e.runAttached(api, "runner.run.1.c", e.attachedSpec(true, "sh"))
	s.input("echo $((6*7))\n")
	s.waitStdout("42\r\n")
	// The resize is applied before the next input is written, so stty
	// sees it.
	s.send(attach.ResizeFrame(33, 121))
	s.input("stty size\n")
	s.waitStdout("33 121\r\n")
	// ^C on the terminal interrupts the foreground command.
	s.input("sleep 100; echo slept\n")
	waitFor(t, "sleep 100 running in the job", func() (bool, string) {
		procs := e.processes("runner.run.1.c")
		return strings.Contains(procs, "sleep 100"), procs
	})
	s.input("\x03")
	s.input("echo after-interrupt\n")
	s.waitStdout("after-interrupt\r\n")
	if strings.Contains(s.output(), "\nslept\r\n") {
		t.Fatalf("sleep was not interrupted: %q", s.output())
	}
	s.input("exit 5\n")
	if code := s.wait(); code != 5 {
		t.Fatalf("exit %d, want 5", code)
	}
	e.waitRemoved("runner.run.1.c")
}

func testAttachSignal(t *testing.T, e *env, api *hostclient.Client) {
	s := e.runAttached(api, "runner.run.1.d", e.attachedSpec(false, "sh", "-c",
		`trap 'echo got INT; exit 7' INT; echo ready; while :; do sleep 0.1; done`))
	s.waitStdout("ready\n")
	s.send(attach.SignalFrame("INT"))
	if code := s.wait(); code != 7 {
		t.Fatalf("exit %d, want 7", code)
	}
	if got := s.output(); got != "ready\ngot INT\n" {
		t.Fatalf("stdout %q", got)
	}
	e.waitRemoved("runner.run.1.d")
}

// testAttachFirstOutput checks that a job that writes at once and exits
// loses nothing: it starts only once the client is attached.
func testAttachFirstOutput(t *testing.T, e *env, api *hostclient.Client) {
	for i, tty := range []bool{false, true, false, true} {
		id := fmt.Sprintf("runner.run.%d.e", i+1)
		s := e.runAttached(api, id, e.attachedSpec(tty, "echo", "first words"))
		if code := s.wait(); code != 0 {
			t.Fatalf("%s: exit %d", id, code)
		}
		if got := s.output(); !strings.HasPrefix(got, "first words") {
			t.Fatalf("%s (tty %v): stdout %q, want the first words", id, tty, got)
		}
	}
}

func testAttachCommandNotFound(t *testing.T, e *env, api *hostclient.Client) {
	s := e.runAttached(api, "runner.run.1.f", e.attachedSpec(false, "no-such-command"))
	if code := s.wait(); code != 127 {
		t.Fatalf("exit %d, want 127", code)
	}
	s.mu.Lock()
	errs := s.errors
	s.mu.Unlock()
	if len(errs) != 1 || !strings.Contains(errs[0], `"no-such-command": executable file not found`) {
		t.Fatalf("error frames %q", errs)
	}
	e.waitRemoved("runner.run.1.f")
}

func testAttachClientGone(t *testing.T, e *env, api *hostclient.Client) {
	s := e.runAttached(api, "runner.run.1.g", e.attachedSpec(false, "sh", "-c", "echo ready; sleep 1000"))
	s.waitStdout("ready\n")
	s.conn.Close()
	st := e.waitState("runner.run.1.g", keyspace.StateCrashed)
	if st.ExitCode == nil || *st.ExitCode != 137 {
		t.Fatalf("state after the client left: %+v, want killed (137)", st)
	}
	e.waitRemoved("runner.run.1.g")
}

func testAttachNoClient(t *testing.T, e *env, api *hostclient.Client) {
	spec := e.attachedSpec(false, "echo", "never")
	spec.Attach.Wait = 2 * time.Second
	e.assign("h1", "runner.run.1.h", spec)
	st := e.waitState("runner.run.1.h", keyspace.StateCrashed)
	if !strings.Contains(st.Error, "no client attached within 2s") {
		t.Fatalf("state %+v", st)
	}
	e.waitRemoved("runner.run.1.h")
	_, err := api.Attach(t.Context(), "runner.run.1.h")
	if !errors.Is(err, hostclient.ErrConflict) {
		t.Fatalf("attach after the wait: %v, want a conflict", err)
	}
}

func testAttachRefused(t *testing.T, e *env, api *hostclient.Client) {
	// A one-off job that was not started attached.
	e.assign("h1", "runner.run.1.i", e.oneOffSpec("id"))
	e.waitState("runner.run.1.i", keyspace.StateDown)
	if _, err := api.Attach(t.Context(), "runner.run.1.i"); !errors.Is(err, hostclient.ErrConflict) {
		t.Fatalf("attach to a job that was not started attached: %v, want a conflict", err)
	}
	// A second client of an attached job.
	s := e.runAttached(api, "runner.run.1.j", e.attachedSpec(false, "sh", "-c", "echo ready; read line; echo \"$line\""))
	s.waitStdout("ready\n")
	if _, err := api.Attach(t.Context(), "runner.run.1.j"); !errors.Is(err, hostclient.ErrConflict) {
		t.Fatalf("second attach: %v, want a conflict", err)
	}
	// A wrong token.
	h, _, _ := e.hostRecord("h1")
	if _, err := bad(h.APIURL).Attach(t.Context(), "runner.run.1.j"); !errors.Is(err, hostclient.ErrUnauthorized) {
		t.Fatalf("attach without the token: %v", err)
	}
	s.input("bye\n")
	if code := s.wait(); code != 0 || s.output() != "ready\nbye\n" {
		t.Fatalf("exit %d, stdout %q", code, s.output())
	}
}

// processes lists the command lines of the processes in a job's container.
func (e *env) processes(jobID string) string {
	e.t.Helper()
	list := e.jobContainers(jobID)
	if len(list) != 1 {
		return fmt.Sprintf("%d containers", len(list))
	}
	top, err := e.docker.ContainerTop(e.t.Context(), list[0].ID, []string{"-o", "pid,args"})
	if err != nil {
		return err.Error()
	}
	var lines []string
	for _, p := range top.Processes {
		lines = append(lines, strings.Join(p, " "))
	}
	return strings.Join(lines, "\n")
}
