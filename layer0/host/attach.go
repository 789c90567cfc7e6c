package host

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/gantryhq/gantry/layer0/host/attach"
	"github.com/gantryhq/gantry/layer0/host/client"
	"github.com/gantryhq/gantry/layer0/keyspace"
)

// Timings of attached jobs.
const (
	// DefaultAttachWait is how long a created attached job waits for its
	// client when its spec does not say (keyspace.Attach.Wait).
	DefaultAttachWait = time.Minute
	// attachFindWait bounds the wait of an attach request for its job to
	// be assigned to this host.
	attachFindWait = 30 * time.Second
	// attachCreateWait bounds the wait of an attach request for the job's
	// container: its artifacts (a slug) are fetched first.
	attachCreateWait = 5 * time.Minute
	// attachFinalWait bounds the wait for the job's final state once its
	// output ended.
	attachFinalWait = 30 * time.Second
	// attachLinger bounds the wait for the client to go once it has the
	// exit status.
	attachLinger = 5 * time.Second
	// attachPoll is how often an attach request looks at the job's state.
	attachPoll = 50 * time.Millisecond
)

// attachGate is where an attached job (keyspace.JobSpec.Attach) and the
// client's attach request meet: the job publishes its created container
// and waits; the request claims it, attaches to the container and lets the
// job start it; the job says how the start went.
type attachGate struct {
	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every change
	id      string        // the created container, waiting for its client
	claimed bool          // a request is attaching
	open    bool          // the client is attached: start the container
	started bool          // the start was tried
	// startErr is the start's failure; failed says why the job will not
	// wait for a client (any more).
	startErr error
	failed   string
}

func newAttachGate() *attachGate { return &attachGate{changed: make(chan struct{})} }

// update changes the gate under its lock and wakes the waiters.
func (g *attachGate) update(f func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	f()
	close(g.changed)
	g.changed = make(chan struct{})
}

// view returns a copy of the gate's state and a channel closed at the next
// change.
func (g *attachGate) view() (attachGate, <-chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return attachGate{id: g.id, claimed: g.claimed, open: g.open, started: g.started, startErr: g.startErr, failed: g.failed}, g.changed
}

// claim reserves the gate for one request; it reports false when another
// request holds it or a client attached already.
func (g *attachGate) claim() bool {
	ok := false
	g.update(func() {
		ok = !g.claimed && !g.open
		if ok {
			g.claimed = true
		}
	})
	return ok
}

// release gives up a claim that did not lead to an attach.
func (g *attachGate) release() { g.update(func() { g.claimed = false }) }

// awaitAttach is called by the job's goroutine with its created container:
// it waits for a client to attach and reports whether to start the
// container. When no client comes in time the job crashes (and is
// retired); a stop request or the agent's end returns false as well, the
// latter with ctx's error.
func (j *job) awaitAttach(ctx context.Context, id string) (bool, error) {
	g := j.gate
	if g == nil {
		return true, nil
	}
	g.update(func() { g.id = id })
	wait := j.spec().Attach.Wait
	if wait <= 0 {
		wait = DefaultAttachWait
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		st, changed := g.view()
		if st.open {
			return true, nil
		}
		select {
		case <-changed:
		case <-timer.C:
			msg := fmt.Sprintf("no client attached within %s; the job did not run", wait)
			g.update(func() { g.failed = msg })
			j.crash(ctx, nil, msg)
			return false, nil
		case <-j.stopCh:
			g.update(func() { g.failed = "the job was stopped before it started" })
			return false, nil
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
}

// attachStarted tells the attach request how the start of the container
// went.
func (j *job) attachStarted(err error) {
	if g := j.gate; g != nil {
		g.update(func() { g.started, g.startErr = true, err })
	}
}

// attachConfig adds what an attached job needs to its container config:
// stdin open (closed when the client detaches) and, if asked, a terminal
// of the given size.
func attachConfig(s keyspace.JobSpec, cfg *container.Config, hc *container.HostConfig) {
	if s.Attach == nil {
		return
	}
	cfg.AttachStdin, cfg.AttachStdout, cfg.AttachStderr = true, true, true
	cfg.OpenStdin, cfg.StdinOnce = true, true
	cfg.Tty = s.Attach.TTY
	if s.Attach.TTY && s.Attach.Rows > 0 && s.Attach.Cols > 0 {
		// Engines before API 1.42 ignore it; the agent resizes the
		// terminal right after the start as well.
		hc.ConsoleSize = [2]uint{uint(s.Attach.Rows), uint(s.Attach.Cols)}
	}
}

// validateAttach checks the attach part of a spec.
func validateAttach(s keyspace.JobSpec) []error {
	if s.Attach == nil {
		return nil
	}
	var errs []error
	if !s.OneOff {
		errs = append(errs, errors.New("attach on a job that is not one-off"))
	}
	if s.Attach.Wait < 0 || s.Attach.Wait > time.Hour {
		errs = append(errs, fmt.Errorf("attach wait %s out of range", s.Attach.Wait))
	}
	return errs
}

// attachJob returns the handler that attaches a client to an attached job
// (POST /v1/jobs/{id}/attach with "Upgrade: gantry-attach/1"): once the
// job's container is created it attaches to it, answers 101, lets the job
// start and then carries the frames of package attach until the job ends,
// when it sends the exit status. A client that goes away first gets the
// job killed. After the switch, the session ends with ctx (the agent's):
// a request's context does not outlive its connection's take-over.
func (a *agent) attachJob(ctx context.Context) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { a.attach(ctx, w, r) }
}

func (a *agent) attach(agentCtx context.Context, w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !attach.IsUpgrade(r) {
		writeError(w, client.NewError(client.ErrBadRequest, "attach needs the headers Connection: Upgrade and Upgrade: %s", attach.Protocol))
		return
	}
	ctx := r.Context()
	j, ok := a.findJob(ctx, id)
	if !ok {
		writeError(w, client.NewError(client.ErrJobNotFound, "no job %q on this host", id))
		return
	}
	if j.gate == nil {
		writeError(w, client.NewError(client.ErrConflict, "job %s does not take a client: it was not started attached", id))
		return
	}
	if !j.gate.claim() {
		writeError(w, client.NewError(client.ErrConflict, "a client is already attached to job %s", id))
		return
	}
	claimed := true
	defer func() {
		if claimed {
			j.gate.release()
		}
	}()
	cid, apiErr := j.waitCreated(ctx)
	if apiErr != nil {
		writeError(w, apiErr)
		return
	}
	tctx, cancel := context.WithTimeout(ctx, dockerTimeout)
	hj, err := a.docker.ContainerAttach(tctx, cid, container.AttachOptions{Stream: true, Stdin: true, Stdout: true, Stderr: true})
	cancel()
	if err != nil {
		j.log.Warn("cannot attach to the container", "container", shortID(cid), "err", err)
		writeError(w, client.NewError(client.ErrUnavailable, "docker: cannot attach to the container of job %s", id))
		return
	}
	defer hj.Close()
	conn, err := attach.Upgrade(w)
	if err != nil {
		j.log.Warn("cannot switch the attach request's connection", "err", err)
		return
	}
	defer conn.Close()
	claimed = false
	j.log.Info("client attached", "container", shortID(cid), "tty", j.spec().Attach.TTY)
	s := &attachSession{a: a, j: j, cid: cid, hj: hj, conn: conn, out: attach.NewWriter(conn)}
	s.run(agentCtx)
}

// findJob waits, briefly, for the job to be assigned to this host.
func (a *agent) findJob(ctx context.Context, id string) (*job, bool) {
	deadline := time.Now().Add(attachFindWait)
	for {
		if j, ok := a.job(id); ok && !j.orphan {
			return j, true
		}
		if time.Now().After(deadline) || sleep(ctx, attachPoll) != nil {
			return nil, false
		}
	}
}

// final returns the job's state once it is final (down or crashed).
func (j *job) final() (keyspace.JobState, bool) {
	st, _ := j.snapshot()
	return st, st.State == keyspace.StateDown || st.State == keyspace.StateCrashed
}

// waitCreated waits until the job's container is created and waits for
// its client, and returns its ID.
func (j *job) waitCreated(ctx context.Context) (string, *client.Error) {
	timer := time.NewTimer(attachCreateWait)
	defer timer.Stop()
	tick := time.NewTicker(attachPoll)
	defer tick.Stop()
	for {
		g, changed := j.gate.view()
		switch st, done := j.final(); {
		case g.failed != "":
			return "", client.NewError(client.ErrConflict, "job %s: %s", j.id, g.failed)
		case done:
			return "", client.NewError(client.ErrConflict, "job %s has ended (%s): %s", j.id, st.State, st.Error)
		case g.id != "":
			return g.id, nil
		}
		select {
		case <-changed:
		case <-tick.C: // the state changes without the gate (a crash)
		case <-timer.C:
			return "", client.NewError(client.ErrUnavailable, "the container of job %s was not created within %s", j.id, attachCreateWait)
		case <-ctx.Done():
			return "", client.NewError(client.ErrUnavailable, "the host agent is stopping")
		}
	}
}

// attachSession carries one attached client's frames.
type attachSession struct {
	a    *agent
	j    *job
	cid  string
	hj   types.HijackedResponse
	conn *attach.Conn
	out  *attach.Writer
}

func (s *attachSession) run(ctx context.Context) {
	g := s.j.gate
	g.update(func() { g.open = true })
	gone := make(chan error, 1)
	if !s.waitStarted(ctx) {
		go func() {
			_, err := io.Copy(io.Discard, s.conn)
			gone <- err
		}()
		s.finish(ctx, nil)
		s.linger(gone)
		return
	}
	spec := s.j.spec().Attach
	if spec.TTY && spec.Rows > 0 && spec.Cols > 0 {
		s.resize(ctx, spec.Rows, spec.Cols)
	}
	output := make(chan struct{})
	go func() {
		defer close(output)
		s.copyOutput()
	}()
	go func() { gone <- s.readInput(ctx) }()
	tick := time.NewTicker(attachPoll)
	defer tick.Stop()
	for {
		select {
		case <-output:
			s.finish(ctx, output)
			s.linger(gone)
			return
		case err := <-gone:
			if _, done := s.j.final(); !done {
				s.j.log.Info("client went away; killing the job", "err", err)
				s.kill(ctx, "KILL")
			}
			return
		case <-tick.C:
			// Output normally ends when the container stops; a start
			// that failed may leave the stream open.
			if _, done := s.j.final(); done {
				s.finish(ctx, output)
				s.linger(gone)
				return
			}
		case <-ctx.Done():
			return
		}
	}
}

// linger ends the stream to the client after the exit frame and gives it
// a moment to read it and go: closing a connection with unread input
// would reset it, and the client could lose the end of the output.
func (s *attachSession) linger(gone <-chan error) {
	if err := s.conn.CloseWrite(); err != nil {
		return
	}
	timer := time.NewTimer(attachLinger)
	defer timer.Stop()
	select {
	case <-gone:
	case <-timer.C:
	}
}

// waitStarted waits for the job's goroutine to start the container and
// reports whether it did.
func (s *attachSession) waitStarted(ctx context.Context) bool {
	tick := time.NewTicker(attachPoll)
	defer tick.Stop()
	for {
		g, changed := s.j.gate.view()
		if g.started {
			return g.startErr == nil
		}
		if _, done := s.j.final(); done {
			return false
		}
		select {
		case <-changed:
		case <-tick.C:
		case <-ctx.Done():
			return false
		}
	}
}

// copyOutput sends the container's output to the client until it ends.
func (s *attachSession) copyOutput() {
	var err error
	if s.j.spec().Attach.TTY {
		_, err = io.Copy(s.out.Stream(attach.Stdout), s.hj.Reader)
	} else {
		_, err = stdcopy.StdCopy(s.out.Stream(attach.Stdout), s.out.Stream(attach.Stderr), s.hj.Reader)
	}
	if err != nil {
		s.j.log.Debug("attached output ended", "err", err)
	}
}

// readInput carries the client's frames to the container until the client
// goes away, and returns why.
func (s *attachSession) readInput(ctx context.Context) error {
	r := attach.NewReader(s.conn)
	for {
		f, err := r.Read()
		if err != nil {
			return err
		}
		switch f.Type {
		case attach.Stdin:
			if len(f.Data) == 0 {
				if err := s.hj.CloseWrite(); err != nil {
					s.j.log.Debug("close the job's stdin", "err", err)
				}
				continue
			}
			if _, err := s.hj.Conn.Write(f.Data); err != nil {
				s.j.log.Debug("write to the job's stdin", "err", err)
			}
		case attach.Resize:
			rows, cols := f.Size()
			s.resize(ctx, rows, cols)
		case attach.Signal:
			s.kill(ctx, string(f.Data))
		default:
			return fmt.Errorf("%w: a client may not send %s frames", attach.ErrMalformed, f.Type)
		}
	}
}

// resize sets the size of the job's terminal.
func (s *attachSession) resize(ctx context.Context, rows, cols uint16) {
	if !s.j.spec().Attach.TTY {
		return
	}
	tctx, cancel := context.WithTimeout(ctx, dockerTimeout)
	defer cancel()
	if err := s.a.docker.ContainerResize(tctx, s.cid, container.ResizeOptions{Height: uint(rows), Width: uint(cols)}); err != nil {
		s.j.log.Debug("resize the job's terminal", "err", err)
	}
}

// kill sends the container's main process a signal.
func (s *attachSession) kill(ctx context.Context, signal string) {
	tctx, cancel := context.WithTimeout(ctx, dockerTimeout)
	defer cancel()
	if err := s.a.docker.ContainerKill(tctx, s.cid, signal); err != nil {
		s.j.log.Debug("signal the job", "signal", signal, "err", err)
		return
	}
	s.j.log.Info("signal sent to the job", "signal", signal)
}

// finish waits for the job's final state and the end of its output
// (closed output; nil when none is copied), and sends the exit status,
// after an error frame when the job did not run.
func (s *attachSession) finish(ctx context.Context, output <-chan struct{}) {
	st, ok := s.waitFinal(ctx)
	if !ok {
		s.out.Write(attach.ErrorFrame(fmt.Sprintf("the end of job %s was not recorded within %s", s.j.id, attachFinalWait)))
		return
	}
	if output != nil {
		timer := time.NewTimer(logDrainWait)
		select {
		case <-output:
		case <-timer.C:
		}
		timer.Stop()
	}
	code := 0
	if st.ExitCode != nil {
		code = *st.ExitCode
	} else if st.State == keyspace.StateCrashed {
		code = 1
	}
	if st.Error != "" {
		if err := s.out.Write(attach.ErrorFrame(describeRunError(st.Error))); err != nil {
			return
		}
	}
	if err := s.out.Write(attach.ExitFrame(code)); err != nil {
		s.j.log.Debug("send the exit status", "err", err)
		return
	}
	s.j.log.Info("attached job ended", "state", st.State, "exit_code", code)
}

// waitFinal waits for the job's final state.
func (s *attachSession) waitFinal(ctx context.Context) (keyspace.JobState, bool) {
	deadline := time.Now().Add(attachFinalWait)
	for {
		if st, done := s.j.final(); done {
			return st, true
		}
		if time.Now().After(deadline) || sleep(ctx, attachPoll) != nil {
			return keyspace.JobState{}, false
		}
	}
}

// describeRunError shortens the engine's account of a command that could
// not run ("... unable to start container process: exec: \"x\":
// executable file not found in $PATH: unknown").
func describeRunError(msg string) string {
	if i := strings.Index(msg, "exec: "); i >= 0 {
		return "cannot run the command: " + strings.TrimSuffix(msg[i+len("exec: "):], ": unknown")
	}
	return msg
}
