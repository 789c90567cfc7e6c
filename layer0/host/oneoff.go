package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/gantryhq/gantry/layer0/keyspace"
)

// finishedDir is the directory under Config.StateDir that keeps the final
// state of each finished one-off job until its assignment goes, so that a
// restarted agent never runs it again, even when etcd lost its state.
const finishedDir = "finished"

// complete finishes a one-off job whose container exited with status 0:
// it uploads the outputs, then records the job down, or crashed when an
// output is missing or cannot be uploaded, and removes the container. A
// stop request or the agent's end interrupts the uploads and leaves the
// container; the stop, or the next run of the agent, takes it from there.
func (j *job) complete(ctx context.Context, containerID string) {
	j.phase = phaseExited
	j.mu.Lock()
	j.pid, j.stats = 0, nil
	j.mu.Unlock()
	uctx, cancel := j.untilStop(ctx)
	err := j.uploadOutputs(uctx, containerID)
	interrupted := uctx.Err() != nil
	cancel()
	if interrupted {
		j.log.Info("output uploads interrupted", "err", err)
		return
	}
	zero := 0
	if err != nil {
		j.crash(ctx, &zero, err.Error())
		return
	}
	j.drainLogs(ctx)
	j.setState(ctx, func(st *keyspace.JobState) {
		st.State, st.ExitCode, st.Error, st.LastLines, st.Addr = keyspace.StateDown, &zero, "", nil, ""
	})
	j.log.Info("one-off job done", "outputs", len(j.spec().Outputs))
	j.retire(ctx)
}

// retire ends a one-off job whose state is final (down or crashed): it
// records the state on disk and removes the container, whose output is in
// the job's log buffer by now.
func (j *job) retire(ctx context.Context) {
	j.phase = phaseDone
	st, id := j.snapshot()
	if err := j.a.saveFinished(st); err != nil {
		j.log.Warn("cannot record the finished one-off job on disk", "err", err)
	}
	if id == "" {
		return
	}
	rctx, cancel := j.untilStop(ctx)
	defer cancel()
	if !retry(rctx, j.log, "remove container", func(ctx context.Context) error { return j.removeContainer(ctx, id) }) {
		return // the stop, or the next run, removes it
	}
	j.mu.Lock()
	j.containerID = ""
	j.mu.Unlock()
	j.log.Info("one-off container removed", "container", shortID(id))
}

// restore takes over the recorded final state of a one-off job that
// finished in an earlier run of the agent, and removes its container if
// that run could not.
func (j *job) restore(ctx context.Context, st keyspace.JobState) {
	j.logs.close()
	j.mu.Lock()
	j.state = st
	j.mu.Unlock()
	if err := j.publish(ctx); err != nil {
		j.log.Warn("cannot publish job state; will retry", "err", err)
	}
	j.log.Info("one-off job finished in an earlier run; not running it again", "state", st.State)
	j.retire(ctx)
}

// untilStop returns a context that ends with ctx or when the job is asked
// to stop.
func (j *job) untilStop(ctx context.Context) (context.Context, context.CancelFunc) {
	sctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-j.stopCh:
			cancel()
		case <-sctx.Done():
		}
	}()
	return sctx, cancel
}

// stopRequested reports whether the job was asked to stop.
func (j *job) stopRequested() bool {
	select {
	case <-j.stopCh:
		return true
	default:
		return false
	}
}

// finishedPath is the record of a finished one-off job.
func (a *agent) finishedPath(jobID string) string {
	return filepath.Join(a.cfg.StateDir, finishedDir, jobID+".json")
}

// saveFinished records the final state of a one-off job, atomically.
func (a *agent) saveFinished(st keyspace.JobState) error {
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	path := a.finishedPath(st.JobID)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("record finished job: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("record finished job: %w", err)
	}
	return nil
}

// loadFinished returns the recorded final state of a one-off job, if any.
func (a *agent) loadFinished(jobID string) (keyspace.JobState, bool) {
	var st keyspace.JobState
	data, err := os.ReadFile(a.finishedPath(jobID))
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			a.log.Warn("cannot read the record of a finished job", "job", jobID, "err", err)
		}
		return st, false
	}
	if err := json.Unmarshal(data, &st); err != nil || st.JobID != jobID {
		a.log.Warn("ignoring an unreadable record of a finished job", "job", jobID, "err", err)
		return st, false
	}
	return st, true
}

// dropFinished deletes the record of a job, if any.
func (a *agent) dropFinished(jobID string) {
	if err := os.Remove(a.finishedPath(jobID)); err != nil && !errors.Is(err, os.ErrNotExist) {
		a.log.Warn("cannot delete the record of a finished job", "job", jobID, "err", err)
	}
}

// dropStaleFinished deletes the records of jobs without an assignment:
// assignments deleted while the agent was not running.
func (a *agent) dropStaleFinished(assigned map[string]keyspace.Assignment) {
	entries, err := os.ReadDir(filepath.Join(a.cfg.StateDir, finishedDir))
	if err != nil {
		a.log.Warn("cannot list the records of finished jobs", "err", err)
		return
	}
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if _, assignedNow := assigned[id]; ok && assignedNow {
			continue
		}
		if err := os.Remove(filepath.Join(a.cfg.StateDir, finishedDir, e.Name())); err != nil {
			a.log.Warn("cannot delete a stale record of a finished job", "file", e.Name(), "err", err)
		}
	}
}

// prepareFiles fetches a job's artifacts into the cache and returns its
// read-only mounts: the artifacts and, with MountGantryd, gantryd. Failures
// that trying again cannot fix (a digest mismatch, a 4xx answer) wrap
// errRefused.
func (j *job) prepareFiles(ctx context.Context) ([]fileMount, error) {
	spec := j.spec()
	var files []fileMount
	if spec.MountGantryd {
		files = append(files, fileMount{source: j.a.gantryd, target: GantrydMountPath})
	}
	if len(spec.Artifacts) == 0 {
		return files, nil
	}
	fctx, cancel := j.untilStop(ctx)
	defer cancel()
	for _, art := range spec.Artifacts {
		p, err := j.a.artifacts.fetch(fctx, art, j.a.artifactsInUse)
		if err != nil {
			return nil, fmt.Errorf("artifact %s: %w", art.Path, err)
		}
		files = append(files, fileMount{source: p, target: art.Path})
	}
	return files, nil
}

// artifactsInUse returns the digests of the current jobs' artifacts.
func (a *agent) artifactsInUse() map[string]bool {
	keep := make(map[string]bool)
	for _, j := range a.jobList() {
		for _, art := range j.spec().Artifacts {
			keep[art.Digest] = true
		}
	}
	return keep
}
