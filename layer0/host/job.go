package host

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantryhq/gantry/layer0/discovery"
	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer0/readiness"
)

// Job supervision constants.
const (
	// failThreshold is how many consecutive failed checks take an up job
	// out of discovery.
	failThreshold = 3
	// lastLines is how many lines of output a crashed job's state keeps.
	lastLines = 20
	// firstCheckInterval is the pace of the readiness checks of a job
	// until its first pass (at most the job's own interval), so that a
	// new instance joins discovery soon after it listens.
	firstCheckInterval = 100 * time.Millisecond
	// maxLastLineLen bounds each of those lines, so the state stays small.
	maxLastLineLen = 1024
	// logDrainWait bounds the wait for the rest of a dead container's output.
	logDrainWait = 2 * time.Second
	// systemRestartReset is how long a system job's container must have
	// run for the agent to start it again at once when it exits (see
	// restartInPlace).
	systemRestartReset = 10 * time.Second
	// systemRestartDelay is the wait before starting again a system job's
	// container that exited sooner; it doubles with each such exit in a
	// row, up to maxRetryBackoff.
	systemRestartDelay = 250 * time.Millisecond
)

// phase is where a job is in its life; only the job's goroutine changes it.
type phase int

const (
	phaseCreate  phase = iota // container to create, start or adopt
	phaseRunning              // container running: health checks
	phaseExited               // crashed or never started: waiting for removal
	phaseDone                 // a one-off job's final state is recorded: nothing left to run
)

// job supervises one assigned job (or one orphaned container to remove) in
// its own goroutine: create or adopt the container, capture its output,
// check its health, publish its state and discovery entry, and stop it.
type job struct {
	a   *agent
	id  string
	asg keyspace.Assignment // immutable; for an orphan only what the labels say
	// expandErr is why the system job's placeholders could not be
	// expanded (see expandSystem); the job crashes with it.
	expandErr error
	orphan    bool
	logs      *ring
	log       *slog.Logger

	stopCh   chan struct{}
	stopOnce sync.Once
	wakeCh   chan struct{}
	gate     *attachGate // where the client of an attached job meets it; nil for others
	// startedAgain tells the copy of a system job's output that its
	// container was started again in place; nil for other jobs, whose
	// output ends with their container's run.
	startedAgain chan struct{}

	// Owned by the job's goroutine.
	// startExited starts the adopted container again when it exited
	// before this agent started (see agent.converge); cleared once used.
	startExited bool
	// restart starts the exited container of a system job again (see
	// restartInPlace); cleared once used. restartDue asks the run loop to
	// do it after restartDelay; quickExits counts the exits in a row of
	// runs shorter than systemRestartReset.
	restart      bool
	restartDue   bool
	restartDelay time.Duration
	quickExits   int
	phase        phase
	fails        int
	capturing    bool

	mu          sync.Mutex // guards the fields below
	state       keyspace.JobState
	registered  bool // the job should be in discovery
	containerID string
	pid         int       // the container's init process while running; 0 otherwise
	stats       *jobStats // the last reading of its cgroups; nil when none

	pubMu sync.Mutex // serialises writes of the job's keys; guards pub
	pub   published
}

// published is what etcd holds for a job, as far as the agent knows.
type published struct {
	state      string // JSON of the last state written
	stateLease clientv3.LeaseID
	regKnown   bool // false while etcd may hold an entry of a previous run
	registered bool
	regLease   clientv3.LeaseID
	regAddr    string
	deleted    bool
}

func newJob(a *agent, as keyspace.Assignment, containerID string, prev *keyspace.JobState, orphan bool) *job {
	var expandErr error
	if !orphan {
		var expanded keyspace.Assignment
		if expanded, expandErr = expandSystem(as, a.cfg.SystemVars); expandErr == nil {
			as = expanded
		}
	}
	j := &job{
		expandErr:   expandErr,
		a:           a,
		id:          as.JobID,
		asg:         as,
		orphan:      orphan,
		logs:        newRing(a.cfg.LogLines),
		log:         a.log.With("job", as.JobID, "app", as.Spec.App, "type", as.Spec.Type),
		stopCh:      make(chan struct{}),
		wakeCh:      make(chan struct{}, 1),
		containerID: containerID,
	}
	j.logs.ship = a.jobLines(as, orphan)
	if as.Spec.Attach != nil && !orphan {
		j.gate = newAttachGate()
	}
	if j.restartsInPlace() {
		j.startedAgain = make(chan struct{}, 1)
	}
	now := time.Now().UTC()
	j.state = keyspace.JobState{
		JobID:       as.JobID,
		HostID:      a.cfg.ID,
		App:         as.Spec.App,
		Release:     as.Spec.Release,
		Type:        as.Spec.Type,
		State:       keyspace.StateStarting,
		ContainerID: containerID,
		UpdatedAt:   now,
	}
	if prev != nil && prev.ContainerID == containerID && containerID != "" {
		// Carry the previous run's state over: it stands until the
		// container is inspected, and what the inspection does not
		// change (an up job's time, a crash's record) stays as it was.
		// An up job stays in discovery meanwhile.
		j.state = *prev
		j.registered = prev.State == keyspace.StateUp && as.Spec.Service != ""
	}
	if orphan {
		j.state.State = keyspace.StateStopping
	}
	return j
}

func (j *job) spec() keyspace.JobSpec { return j.asg.Spec }

// poke makes the job re-inspect its container.
func (j *job) poke() {
	select {
	case j.wakeCh <- struct{}{}:
	default:
	}
}

// requestStop makes the job stop and remove its container.
func (j *job) requestStop() {
	j.stopOnce.Do(func() { close(j.stopCh) })
}

// snapshot returns the job's state and container ID.
func (j *job) snapshot() (keyspace.JobState, string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.state, j.containerID
}

// run is the job's goroutine. It returns when the job is removed or the
// agent stops; in the latter case the container is left alone.
func (j *job) run(ctx context.Context) {
	resync := time.NewTicker(resyncInterval)
	defer resync.Stop()
	var health *time.Ticker
	healthFast := false // health ticks at firstCheckInterval
	defer func() {
		if health != nil {
			health.Stop()
		}
	}()
	retry := time.NewTimer(0)
	defer retry.Stop()
	backoff := 500 * time.Millisecond
	if j.orphan {
		retry.Stop()
	}
	for {
		var healthC <-chan time.Time
		if health != nil {
			healthC = health.C
		}
		select {
		case <-ctx.Done():
			return
		case <-j.stopCh:
			if j.stop(ctx) {
				j.a.removeJob(j)
			}
			return
		case <-retry.C:
			if j.phase != phaseCreate || j.orphan {
				continue
			}
			if err := j.create(ctx); err != nil {
				if j.stopRequested() || ctx.Err() != nil {
					continue // the stop, or the agent's end, comes next
				}
				j.log.Warn("cannot start job; will retry", "err", err, "in", backoff)
				retry.Reset(backoff)
				backoff = min(2*backoff, maxRetryBackoff)
			}
		case <-j.wakeCh:
			j.refresh(ctx)
		case <-resync.C:
			j.refresh(ctx)
			if err := j.publish(ctx); err != nil {
				j.log.Warn("cannot publish job state; will retry", "err", err)
			}
		case <-healthC:
			j.checkHealth(ctx)
		}
		if j.restartDue {
			j.restartDue = false
			retry.Reset(j.restartDelay)
		}
		if j.phase == phaseRunning && j.spec().Port > 0 && health == nil {
			health = time.NewTicker(min(firstCheckInterval, checkInterval(j.spec().Health)))
			healthFast = true
			j.checkHealth(ctx)
		}
		if health != nil && healthFast && j.passed() {
			health.Reset(checkInterval(j.spec().Health))
			healthFast = false
		}
		if j.phase != phaseRunning && health != nil {
			health.Stop()
			health = nil
		}
	}
}

// setState changes the job's state and publishes it. UpdatedAt moves only
// when something else changed, so that a new run of the agent that adopts
// the job, finding it as it was, leaves its state as it was. The caller
// holds no lock.
func (j *job) setState(ctx context.Context, change func(st *keyspace.JobState)) {
	j.mu.Lock()
	was := j.state
	change(&j.state)
	if !sameState(was, j.state) {
		j.state.UpdatedAt = time.Now().UTC()
	}
	j.mu.Unlock()
	if err := j.publish(ctx); err != nil {
		j.log.Warn("cannot publish job state; will retry", "err", err)
	}
}

// sameState reports whether a and b say the same but for UpdatedAt.
func sameState(a, b keyspace.JobState) bool {
	a.UpdatedAt, b.UpdatedAt = time.Time{}, time.Time{}
	ja, erra := json.Marshal(a)
	jb, errb := json.Marshal(b)
	return erra == nil && errb == nil && bytes.Equal(ja, jb)
}

// create creates and starts the job's container, or adopts the one it has.
// It returns an error only for failures worth retrying.
func (j *job) create(ctx context.Context) error {
	spec := j.spec()
	if j.expandErr != nil {
		j.crash(ctx, nil, j.expandErr.Error())
		return nil
	}
	if err := validateSpec(spec); err != nil {
		j.crash(ctx, nil, err.Error())
		return nil
	}
	if spec.OneOff {
		if st, ok := j.a.loadFinished(j.id); ok {
			j.restore(ctx, st)
			return nil
		}
	}
	j.mu.Lock()
	id := j.containerID
	j.mu.Unlock()
	if id == "" {
		var err error
		if id, err = j.createContainer(ctx); err != nil || id == "" {
			return err
		}
	}

	tctx, cancel := context.WithTimeout(ctx, dockerTimeout)
	info, err := j.a.docker.ContainerInspect(tctx, id)
	cancel()
	switch {
	case cerrdefs.IsNotFound(err):
		j.crash(ctx, nil, "container removed outside gantry")
		return nil
	case err != nil:
		return fmt.Errorf("inspect container: %w", err)
	}
	again := j.startAgain(info)
	inPlace := again && j.restart
	j.startExited, j.restart = false, false
	if again {
		// The previous run's view (up, in discovery) is stale: the job
		// starts anew and joins discovery once its check passes.
		if inPlace {
			j.log.Info("starting the system job's container again", "container", shortID(id), "finished_at", info.State.FinishedAt)
		} else {
			j.log.Info("starting again a container that exited while no agent ran", "container", shortID(id), "finished_at", info.State.FinishedAt)
		}
		j.mu.Lock()
		j.registered = false
		j.mu.Unlock()
		j.setState(ctx, func(st *keyspace.JobState) { st.State, st.Addr = keyspace.StateStarting, "" })
	}
	if info.State != nil && (info.State.Status == container.StateCreated || again) {
		if start, err := j.awaitAttach(ctx, id); !start {
			return err
		}
		tctx, cancel := context.WithTimeout(ctx, dockerTimeout)
		err := j.a.docker.ContainerStart(tctx, id, container.StartOptions{})
		cancel()
		j.attachStarted(err)
		if err != nil {
			if ctx.Err() != nil || client.IsErrConnectionFailed(err) ||
				errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
				return fmt.Errorf("start container: %w", err)
			}
			// The engine could not run the process (no such executable,
			// bad user, ...): that is the job crashing.
			code := j.exitCode(ctx, id)
			j.crash(ctx, code, "cannot start container: "+err.Error())
			return nil
		}
		tctx, cancel = context.WithTimeout(ctx, dockerTimeout)
		info, err = j.a.docker.ContainerInspect(tctx, id)
		cancel()
		if err != nil {
			return fmt.Errorf("inspect container: %w", err)
		}
		j.log.Info("container started", "container", shortID(id))
		if again && j.startedAgain != nil {
			select {
			case j.startedAgain <- struct{}{}:
			default:
			}
		}
	}
	j.captureLogs(ctx, id)
	if info.State == nil || !info.State.Running {
		j.exited(ctx, info)
		return nil
	}
	j.running(ctx, info)
	return nil
}

// startAgain reports whether the container of info is to be started
// again: a system job's that exited (restartInPlace), or an adopted one
// that exited before this agent started (a reboot, or a platform that was
// stopped) when the job may be.
func (j *job) startAgain(info container.InspectResponse) bool {
	if info.State == nil || info.State.Status != container.StateExited {
		return false
	}
	if j.restart {
		return true
	}
	if !j.startExited {
		return false
	}
	finished, err := time.Parse(time.RFC3339Nano, info.State.FinishedAt)
	return err == nil && finished.Before(j.a.started)
}

// createContainer creates the job's container after checking that its image
// is in the engine (fetching it from another host when it is not) and
// fetching its artifacts. It returns "" when the job crashed instead.
func (j *job) createContainer(ctx context.Context) (string, error) {
	spec := j.spec()
	tctx, cancel := context.WithTimeout(ctx, dockerTimeout)
	_, err := j.a.docker.ImageInspect(tctx, spec.Image)
	cancel()
	switch {
	case cerrdefs.IsNotFound(err):
		if crashed, err := j.fetchImage(ctx); crashed || err != nil {
			return "", err
		}
	case err != nil:
		return "", fmt.Errorf("inspect image %s: %w", spec.Image, err)
	}
	files, err := j.prepareFiles(ctx)
	if errors.Is(err, errRefused) {
		j.crash(ctx, nil, err.Error())
		return "", nil
	}
	if err != nil {
		return "", err
	}

	volumes, err := j.volumeMounts(ctx)
	if err != nil {
		return "", err
	}
	ready := ""
	if spec.Health.Socket && spec.Port > 0 {
		ready = j.a.readyDir(j.id)
		if err := os.MkdirAll(ready, 0o700); err != nil {
			return "", fmt.Errorf("readiness directory: %w", err)
		}
	}
	cfg, hc := containerConfig(j.a.cfg.Cluster, j.a.cfg.ID, j.a.cfg.AdvertiseAddr, j.asg, files, volumes, ready)
	name := containerName(j.a.cfg.Cluster, j.a.cfg.ID, spec, j.id)
	tctx, cancel = context.WithTimeout(ctx, dockerTimeout)
	resp, err := j.a.docker.ContainerCreate(tctx, cfg, hc, nil, nil, name)
	cancel()
	var id string
	switch {
	case err == nil:
		id = resp.ID
		j.log.Info("container created", "container", shortID(id), "name", name, "image", spec.Image)
		j.shipStart()
	case cerrdefs.IsConflict(err):
		// A create whose answer was lost: take the container if it is ours.
		tctx, cancel := context.WithTimeout(ctx, dockerTimeout)
		info, ierr := j.a.docker.ContainerInspect(tctx, name)
		cancel()
		if ierr != nil {
			return "", fmt.Errorf("create container %s: %w", name, err)
		}
		l := info.Config.Labels
		if l[keyspace.LabelCluster] != j.a.cfg.Cluster || l[LabelHost] != j.a.cfg.ID || l[keyspace.LabelJob] != j.id {
			j.crash(ctx, nil, "container name "+name+" is taken by a container gantry does not own")
			return "", nil
		}
		id = info.ID
	case cerrdefs.IsNotFound(err):
		j.crash(ctx, nil, "image not found: "+spec.Image)
		return "", nil
	case cerrdefs.IsInvalidArgument(err):
		j.crash(ctx, nil, "cannot create container: "+err.Error())
		return "", nil
	default:
		return "", fmt.Errorf("create container: %w", err)
	}
	j.mu.Lock()
	j.containerID = id
	j.mu.Unlock()
	j.setState(ctx, func(st *keyspace.JobState) { st.ContainerID = id })
	return id, nil
}

// running records a running container: its address and start time. A job
// without a port is up at once; one with a port waits for its check.
func (j *job) running(ctx context.Context, info container.InspectResponse) {
	spec := j.spec()
	addr, ok := publishedAddr(spec, info, j.a.cfg.AdvertiseAddr)
	if spec.Port > 0 && !ok {
		j.crash(ctx, nil, fmt.Sprintf("port %d was not published", spec.Port))
		return
	}
	started, _ := time.Parse(time.RFC3339Nano, info.State.StartedAt)
	j.phase = phaseRunning
	j.fails = 0
	j.mu.Lock()
	if j.pid != info.State.Pid {
		j.pid, j.stats = info.State.Pid, nil
	}
	j.mu.Unlock()
	j.setState(ctx, func(st *keyspace.JobState) {
		st.Addr, st.StartedAt = addr, started.UTC()
		st.ExitCode, st.Error, st.LastLines = nil, "", nil
		switch {
		case spec.Port == 0:
			st.State = keyspace.StateUp
		case st.State != keyspace.StateUp:
			st.State = keyspace.StateStarting
		}
	})
}

// refresh re-inspects a running job's container and notices exits.
func (j *job) refresh(ctx context.Context) {
	if j.phase != phaseRunning {
		return
	}
	j.mu.Lock()
	id := j.containerID
	j.mu.Unlock()
	tctx, cancel := context.WithTimeout(ctx, dockerTimeout)
	info, err := j.a.docker.ContainerInspect(tctx, id)
	cancel()
	switch {
	case cerrdefs.IsNotFound(err):
		j.crash(ctx, nil, "container removed outside gantry")
	case err != nil:
		j.log.Debug("cannot inspect container", "err", err)
	case info.State == nil || !info.State.Running:
		j.exited(ctx, info)
	}
}

// exited records a container that is no longer running: a crash, or the
// completion of a one-off job that exited with status 0.
func (j *job) exited(ctx context.Context, info container.InspectResponse) {
	var code *int
	msg := ""
	if info.State != nil {
		c := info.State.ExitCode
		code = &c
		msg = info.State.Error
		if info.State.OOMKilled {
			msg = "out of memory"
		}
	}
	if j.spec().OneOff && code != nil && *code == 0 && msg == "" {
		j.complete(ctx, info.ID)
		return
	}
	if j.restartsInPlace() && (code == nil || *code != 0 || msg != "") {
		j.restartInPlace(ctx, info, code, msg)
		return
	}
	j.crash(ctx, code, msg)
}

// restartsInPlace reports whether the job is a system job, whose container
// the agent starts again itself when it dies (see restartInPlace).
func (j *job) restartsInPlace() bool {
	return j.spec().System != "" && !j.spec().OneOff && !j.orphan
}

// restartInPlace starts the container of a system job that died (killed,
// or exited with an error) again, in place, rather than leaving the job
// crashed for the scheduler to replace: the platform's own jobs, the
// scheduler's among them, come back without the scheduler, the controller
// or a new container. A clean exit (status 0) is the job's own doing (a
// router that handed its sockets over) and is a crash as for any job. The
// container starts again at once when it had run for systemRestartReset,
// and otherwise after a delay that doubles with each such quick exit in a
// row. Meanwhile the job is starting, with its exit's code and error, out
// of discovery; the scheduler leaves a starting job alone.
func (j *job) restartInPlace(ctx context.Context, info container.InspectResponse, code *int, msg string) {
	if ran, ok := runTime(info); ok && ran >= systemRestartReset {
		j.quickExits = 0
	} else {
		j.quickExits++
	}
	j.restartDelay = systemRestartWait(j.quickExits)
	j.phase = phaseCreate
	j.restart, j.restartDue = true, true
	j.mu.Lock()
	j.registered = false
	j.pid, j.stats = 0, nil // the process is gone; its pid may be reused
	j.mu.Unlock()
	j.setState(ctx, func(st *keyspace.JobState) {
		st.State, st.ExitCode, st.Error, st.LastLines, st.Addr = keyspace.StateStarting, code, msg, nil, ""
	})
	j.shipRestart(code, msg, j.restartDelay)
	attrs := []any{"error", msg, "in", j.restartDelay}
	if code != nil {
		attrs = append(attrs, "exit_code", *code)
	}
	j.log.Warn("system job exited; starting its container again", attrs...)
}

// systemRestartWait is the wait before a system job's container is
// started again after quick exits in a row (see restartInPlace).
func systemRestartWait(quickExits int) time.Duration {
	if quickExits <= 0 {
		return 0
	}
	return min(systemRestartDelay<<min(quickExits-1, 16), maxRetryBackoff)
}

// runTime returns how long the exited container of info ran, and false
// when Docker does not say.
func runTime(info container.InspectResponse) (time.Duration, bool) {
	if info.State == nil {
		return 0, false
	}
	started, err := time.Parse(time.RFC3339Nano, info.State.StartedAt)
	if err != nil {
		return 0, false
	}
	finished, err := time.Parse(time.RFC3339Nano, info.State.FinishedAt)
	if err != nil || finished.Before(started) {
		return 0, false
	}
	return finished.Sub(started), true
}

func (j *job) exitCode(ctx context.Context, id string) *int {
	tctx, cancel := context.WithTimeout(ctx, dockerTimeout)
	defer cancel()
	info, err := j.a.docker.ContainerInspect(tctx, id)
	if err != nil || info.State == nil || info.State.Running {
		return nil
	}
	c := info.State.ExitCode
	return &c
}

// crash takes the job out of discovery and records it as crashed with the
// last lines of its output. The container, if any, stays for its logs,
// except a one-off job's, which is removed once the state is recorded.
func (j *job) crash(ctx context.Context, code *int, msg string) {
	j.phase = phaseExited
	j.drainLogs(ctx)
	j.mu.Lock()
	j.registered = false
	j.pid, j.stats = 0, nil // the process is gone; its pid may be reused
	recorded := j.state.State == keyspace.StateCrashed
	j.mu.Unlock()
	if recorded {
		// A previous run of the agent recorded this crash of this
		// container: its record, and the time the scheduler counts the
		// back-off from, stay.
		if err := j.publish(ctx); err != nil {
			j.log.Warn("cannot publish job state; will retry", "err", err)
		}
		j.retireOneOff(ctx)
		return
	}
	j.shipCrash(code, msg)
	last := j.logs.last(lastLines)
	for i, l := range last {
		if len(l) > maxLastLineLen {
			last[i] = strings.ToValidUTF8(l[:maxLastLineLen], "") + "..."
		}
	}
	j.setState(ctx, func(st *keyspace.JobState) {
		st.State, st.ExitCode, st.Error, st.LastLines, st.Addr = keyspace.StateCrashed, code, msg, last, ""
	})
	attrs := []any{"error", msg}
	if code != nil {
		attrs = append(attrs, "exit_code", *code)
	}
	j.log.Warn("job crashed", attrs...)
	j.retireOneOff(ctx)
}

// retireOneOff retires a crashed one-off job (see retire).
func (j *job) retireOneOff(ctx context.Context) {
	if j.spec().OneOff && !j.orphan {
		j.retire(ctx)
	}
}

// drainLogs waits, briefly, for the rest of a stopped container's output,
// and ends the job's log.
func (j *job) drainLogs(ctx context.Context) {
	if j.capturing {
		j.logs.waitClosed(ctx, logDrainWait)
	} else {
		j.logs.close()
	}
}

// checkHealth runs one readiness check of a running job: a pass makes it up
// (and discoverable), failThreshold failures in a row take an up job out of
// discovery until it passes again.
func (j *job) checkHealth(ctx context.Context) {
	if j.phase != phaseRunning || j.spec().Port == 0 {
		return
	}
	st, _ := j.snapshot()
	var err error
	if h := j.spec().Health; h.Socket {
		cctx, cancel := context.WithTimeout(ctx, checkTimeout(h))
		err = readiness.Check(cctx, filepath.Join(j.a.readyDir(j.id), readiness.SocketName), h.Path)
		cancel()
	} else {
		err = probe(ctx, st.Addr, h)
	}
	if err == nil {
		j.fails = 0
		if st.State != keyspace.StateUp || !j.isRegistered() {
			j.mu.Lock()
			j.registered = j.spec().Service != ""
			j.mu.Unlock()
			j.setState(ctx, func(st *keyspace.JobState) { st.State = keyspace.StateUp })
			j.log.Info("job up", "addr", st.Addr)
		}
		return
	}
	j.fails++
	if st.State == keyspace.StateUp && j.fails >= failThreshold {
		j.mu.Lock()
		j.registered = false
		j.mu.Unlock()
		j.setState(ctx, func(st *keyspace.JobState) { st.State = keyspace.StateStarting })
		j.log.Warn("job failing its health check; taken out of discovery", "err", err, "failures", j.fails)
		return
	}
	j.log.Debug("health check failed", "err", err, "failures", j.fails)
}

// passed reports whether the job has passed a readiness check since it
// last started.
func (j *job) passed() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.state.State == keyspace.StateUp
}

func (j *job) isRegistered() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.registered || j.spec().Service == ""
}

// stop drains and removes the job: deregister, wait the drain delay,
// SIGTERM, SIGKILL after the stop timeout, remove the container, delete the
// job's keys. It reports whether it finished (false when ctx ended first).
func (j *job) stop(ctx context.Context) bool {
	if j.phase == phaseDone {
		return j.forget(ctx)
	}
	j.mu.Lock()
	wasRegistered := j.registered || j.orphan
	j.registered = false
	id := j.containerID
	j.mu.Unlock()
	j.log.Info("stopping job", "container", shortID(id))
	j.setState(ctx, func(st *keyspace.JobState) { st.State = keyspace.StateStopping })
	if !retry(ctx, j.log, "deregister", j.publish) {
		return false
	}
	if wasRegistered && j.spec().Service != "" {
		if sleep(ctx, j.a.cfg.DrainDelay) != nil {
			return false
		}
	}
	if id != "" {
		if !retry(ctx, j.log, "stop container", func(ctx context.Context) error { return j.stopContainer(ctx, id) }) {
			return false
		}
		code := j.exitCode(ctx, id)
		j.setState(ctx, func(st *keyspace.JobState) { st.State, st.Addr, st.ExitCode = keyspace.StateDown, "", code })
		if !retry(ctx, j.log, "remove container", func(ctx context.Context) error { return j.removeContainer(ctx, id) }) {
			return false
		}
	}
	j.logs.close()
	if !retry(ctx, j.log, "delete job keys", j.deleteKeys) {
		return false
	}
	if err := os.RemoveAll(j.a.readyDir(j.id)); err != nil {
		j.log.Warn("cannot remove the job's readiness directory", "err", err)
	}
	j.log.Info("job removed", "container", shortID(id))
	return true
}

// forget removes a finished one-off job, whose state stays final to the
// end: its container if still there, its keys and its record on disk.
func (j *job) forget(ctx context.Context) bool {
	_, id := j.snapshot()
	if id != "" {
		if !retry(ctx, j.log, "remove container", func(ctx context.Context) error { return j.removeContainer(ctx, id) }) {
			return false
		}
	}
	if !retry(ctx, j.log, "delete job keys", j.deleteKeys) {
		return false
	}
	j.a.dropFinished(j.id)
	j.log.Info("finished one-off job removed")
	return true
}

func (j *job) stopContainer(ctx context.Context, id string) error {
	var timeout *int
	if !j.orphan {
		s := stopSeconds(j.spec())
		timeout = &s
	}
	grace := stopTimeout(j.spec())
	tctx, cancel := context.WithTimeout(ctx, grace+dockerTimeout)
	defer cancel()
	err := j.a.docker.ContainerStop(tctx, id, container.StopOptions{Timeout: timeout})
	if err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("stop container %s: %w", shortID(id), err)
	}
	return nil
}

func (j *job) removeContainer(ctx context.Context, id string) error {
	tctx, cancel := context.WithTimeout(ctx, dockerTimeout)
	defer cancel()
	err := j.a.docker.ContainerRemove(tctx, id, container.RemoveOptions{Force: true, RemoveVolumes: true})
	if err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("remove container %s: %w", shortID(id), err)
	}
	return nil
}

// retry runs f until it succeeds or ctx ends, with back-off, and reports
// whether it succeeded.
func retry(ctx context.Context, log *slog.Logger, what string, f func(context.Context) error) bool {
	backoff := 200 * time.Millisecond
	for {
		err := f(ctx)
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		log.Warn("retrying", "step", what, "err", err, "in", backoff)
		if sleep(ctx, backoff) != nil {
			return false
		}
		backoff = min(2*backoff, maxRetryBackoff)
	}
}

// publish makes etcd hold the job's current state and discovery entry,
// writing only what changed (or what a new lease lost). Discovery changes
// go first, so the state never claims more than discovery shows.
func (j *job) publish(ctx context.Context) error {
	j.pubMu.Lock()
	defer j.pubMu.Unlock()
	if j.pub.deleted {
		return nil
	}
	j.mu.Lock()
	st, reg := j.state, j.registered
	j.mu.Unlock()
	lease := j.a.lease.ID()
	spec := j.spec()

	if spec.Service != "" {
		switch {
		case !reg && (j.pub.registered || !j.pub.regKnown):
			if err := j.a.disc.Deregister(ctx, spec.Service, j.id); err != nil {
				return err
			}
			if j.pub.registered {
				j.log.Info("deregistered from discovery", "service", spec.Service)
			}
			j.pub.registered, j.pub.regKnown = false, true
		case reg && (!j.pub.registered || j.pub.regLease != lease || j.pub.regAddr != st.Addr):
			inst := discovery.Instance{
				ID:   j.id,
				Addr: st.Addr,
				Meta: map[string]string{"app": spec.App, "release": spec.Release, "type": spec.Type, "host": j.a.cfg.ID},
			}
			if err := j.a.disc.Register(ctx, lease, spec.Service, inst); err != nil {
				return err
			}
			j.log.Info("registered in discovery", "service", spec.Service, "addr", st.Addr)
			j.pub.registered, j.pub.regKnown, j.pub.regLease, j.pub.regAddr = true, true, lease, st.Addr
		}
	}

	val, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode job state: %w", err)
	}
	if string(val) == j.pub.state && lease == j.pub.stateLease {
		return nil
	}
	tctx, cancel := context.WithTimeout(ctx, etcdTimeout)
	defer cancel()
	if _, err := j.a.etcd.Put(tctx, j.a.space.Job(j.id), string(val), clientv3.WithLease(lease)); err != nil {
		return fmt.Errorf("put job state: %w", err)
	}
	j.pub.state, j.pub.stateLease = string(val), lease
	return nil
}

// deleteKeys removes the job's discovery entry and state for good.
func (j *job) deleteKeys(ctx context.Context) error {
	j.pubMu.Lock()
	defer j.pubMu.Unlock()
	if j.pub.deleted {
		return nil
	}
	if s := j.spec().Service; s != "" {
		if err := j.a.disc.Deregister(ctx, s, j.id); err != nil {
			return err
		}
	}
	tctx, cancel := context.WithTimeout(ctx, etcdTimeout)
	defer cancel()
	if _, err := j.a.etcd.Delete(tctx, j.a.space.Job(j.id)); err != nil {
		return fmt.Errorf("delete job state: %w", err)
	}
	j.pub.deleted = true
	return nil
}

// captureLogs starts copying the container's output into the job's ring,
// once, beginning with the last LogLines lines it already wrote (all of a
// new container's, the recent ones of an adopted container's).
func (j *job) captureLogs(ctx context.Context, id string) {
	if j.capturing {
		return
	}
	j.capturing = true
	tail := strconv.Itoa(j.a.cfg.LogLines)
	j.a.goFn(func() { j.a.copyLogs(ctx, id, j.logs, tail, j.startedAgain, j.stopCh) })
}

// copyLogStream copies one ContainerLogs stream into r, skipping the lines
// not newer than last (kept before), and returns the timestamp of the
// newest line kept.
func copyLogStream(rc io.ReadCloser, r *ring, last time.Time) (time.Time, error) {
	sess := &logSession{skipUntil: last}
	out := &lineWriter{ring: r, stream: "stdout", sess: sess}
	errw := &lineWriter{ring: r, stream: "stderr", sess: sess}
	_, err := stdcopy.StdCopy(out, errw, rc)
	rc.Close()
	out.flush()
	errw.flush()
	if sess.last.After(last) {
		last = sess.last
	}
	return last, err
}

// copyLogs follows a container's output into r until the container stops
// (then closes r) or ctx ends. A broken stream of a running container is
// resumed from the last line's timestamp. With startedAgain (a system
// job's, see restartInPlace) a stopped container's output goes on when
// the container is started again, until it is removed or stopped is
// closed.
func (a *agent) copyLogs(ctx context.Context, id string, r *ring, tail string, startedAgain, stopped <-chan struct{}) {
	defer r.close()
	var last time.Time
	backoff := 200 * time.Millisecond
	for {
		opts := container.LogsOptions{ShowStdout: true, ShowStderr: true, Follow: true, Timestamps: true, Tail: tail}
		if !last.IsZero() {
			opts.Tail, opts.Since = "all", last.Format(time.RFC3339Nano)
		}
		rc, err := a.docker.ContainerLogs(ctx, id, opts)
		if err == nil {
			last, err = copyLogStream(rc, r, last)
		}
		if ctx.Err() != nil {
			return
		}
		tctx, cancel := context.WithTimeout(ctx, dockerTimeout)
		info, ierr := a.docker.ContainerInspect(tctx, id)
		cancel()
		if cerrdefs.IsNotFound(ierr) {
			return
		}
		if ierr == nil && (info.State == nil || !info.State.Running) {
			// A follow stream can end with the container before it has
			// read the container's last lines: read what came after the
			// last line kept once more, without following.
			opts.Follow, opts.Tail = false, "all"
			if !last.IsZero() {
				opts.Since = last.Format(time.RFC3339Nano)
			}
			tctx, cancel := context.WithTimeout(ctx, dockerTimeout)
			if rc, err := a.docker.ContainerLogs(tctx, id, opts); err == nil {
				last, _ = copyLogStream(rc, r, last)
			}
			cancel()
			if startedAgain == nil {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-stopped:
				return
			case <-startedAgain:
			}
			backoff = 200 * time.Millisecond
			continue
		}
		a.log.Debug("container log stream interrupted; resuming", "container", shortID(id), "err", err)
		if sleep(ctx, backoff) != nil {
			return
		}
		backoff = min(2*backoff, maxRetryBackoff)
	}
}
