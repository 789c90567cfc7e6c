package controller

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net/http"
	"strings"
	"time"

	"github.com/gantryhq/gantry/layer0/etcdwatch"
	"github.com/gantryhq/gantry/layer0/host/attach"
	hostclient "github.com/gantryhq/gantry/layer0/host/client"
	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer1/controller/build"
	"github.com/gantryhq/gantry/layer1/controller/etcdkv"
	"github.com/gantryhq/gantry/layer1/controller/types"
)

// One-off jobs of `gantry run`.
const (
	// runReleasePrefix starts the release segment of a run's formation
	// key (formations/<app>/run-<id>/run).
	runReleasePrefix = "run-"
	// MaxRunDuration is how long a run job may last: after it, its
	// formation is removed and the job stopped.
	MaxRunDuration = 24 * time.Hour
	// runStopTimeout is the grace period of a run job that is stopped.
	runStopTimeout = 10 * time.Second
	// runSweepInterval is how often the formations of run jobs that ended
	// are removed.
	runSweepInterval = 5 * time.Second
	// runLinger bounds the wait for the client to go once the job's side
	// of an attached run has ended.
	runLinger = 5 * time.Second
	// runHeaderJob names the job in the 101 answer of an attached run.
	runHeaderJob = "Gantry-Job"
	// maxTerminalSize bounds the rows and columns of a run's terminal.
	maxTerminalSize = 10000
	// placeTimeout bounds the wait for the scheduler to place a run job.
	placeTimeout = 2 * time.Minute
	// cleanupTimeout bounds the removal of a run's formation.
	cleanupTimeout = 30 * time.Second
)

// runJob runs a one-off job of the app's current release (POST
// /v1/apps/{app}/run): it writes a one-off formation, waits for the
// scheduler to place its job, and either answers 201 with the job
// (detached) or attaches the client to the job through its host agent
// (HTTP upgrade to the frames of package attach) until the job ends. The
// formation goes when the attached job ends, or, for a detached job, once
// the sweep sees it ended.
func (s *Server) runJob(w http.ResponseWriter, r *http.Request) {
	app := r.PathValue("app")
	var req types.RunRequest
	if e := decodeJSON(w, r, &req, false); e != nil {
		writeError(w, e)
		return
	}
	if e := validateRun(req); e != nil {
		writeError(w, e)
		return
	}
	if !req.Detach && !attach.IsUpgrade(r) {
		writeError(w, types.ErrBadRequest.WithMessage(
			"an attached run needs the headers Connection: Upgrade and Upgrade: %s (or set detach)", attach.Protocol))
		return
	}
	rel, slugPath, err := s.store.CurrentRelease(r.Context(), app)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	id := build.NewID()
	spec, apiErr := s.runSpec(app, id, rel, slugPath, req)
	if apiErr != nil {
		writeError(w, apiErr)
		return
	}
	log := s.log.With("app", app, "run", id)
	key := s.space.Formation(app, spec.Release, types.RunType)
	if err := etcdkv.Put(r.Context(), s.cfg.Etcd, key, etcdkv.MustJSON(keyspace.Formation{
		App: app, Release: spec.Release, Type: types.RunType, Count: 1, Template: spec, UpdatedAt: time.Now().UTC(),
	})); err != nil {
		s.fail(w, r, err)
		return
	}
	removed := false
	remove := func() {
		if removed {
			return
		}
		removed = true
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), cleanupTimeout)
		defer cancel()
		if err := etcdkv.Delete(ctx, s.cfg.Etcd, key); err != nil {
			log.Warn("remove the run's formation; the sweep retries", "key", key, "err", err)
		}
	}
	asg, err := s.waitRunPlaced(r.Context(), app, spec.Release)
	if err != nil {
		remove()
		if r.Context().Err() != nil {
			log.Info("the client left before the run's job was placed")
			return
		}
		writeError(w, types.ErrUnavailable.WithMessage("no host took the job within %s: it needs %d MiB of memory and a healthy host",
			placeTimeout, runMemory>>20))
		return
	}
	job := types.RunJob{ID: asg.JobID, App: app, Release: rel.Version, Host: asg.HostID}
	log = log.With("job", asg.JobID, "host", asg.HostID)
	if req.Detach {
		log.Info("detached run started", "release", rel.Version)
		writeJSON(w, http.StatusCreated, job)
		return
	}
	defer remove()
	hostConn, e := s.attachHost(r.Context(), asg)
	if e != nil {
		log.Warn("cannot attach to the run's job", "err", e.Message)
		writeError(w, e)
		return
	}
	defer hostConn.Close()
	w.Header().Set(runHeaderJob, asg.JobID)
	clientConn, err := attach.Upgrade(w)
	if err != nil {
		log.Warn("cannot switch the run request's connection", "err", err)
		return
	}
	defer clientConn.Close()
	log.Info("attached run started", "release", rel.Version, "tty", req.TTY)
	splice(clientConn, hostConn)
	log.Info("attached run ended")
}

// validateRun checks a run request.
func validateRun(req types.RunRequest) *types.Error {
	size := 0
	for _, a := range req.Command {
		size += len(a)
		if strings.ContainsRune(a, 0) {
			return types.ErrInvalid.WithMessage("the command holds a NUL byte")
		}
	}
	switch {
	case len(req.Command) == 0 || req.Command[0] == "":
		return types.ErrInvalid.WithMessage("no command: say what to run, e.g. [\"sh\", \"-c\", \"echo hi\"]")
	case len(req.Command) > types.MaxRunArgs:
		return types.ErrInvalid.WithMessage("the command has %d arguments, the limit is %d", len(req.Command), types.MaxRunArgs)
	case size > types.MaxRunCommandBytes:
		return types.ErrInvalid.WithMessage("the command is %d bytes, the limit is %d", size, types.MaxRunCommandBytes)
	case len(req.Env) > types.MaxRunEnv:
		return types.ErrInvalid.WithMessage("%d env vars, the limit is %d", len(req.Env), types.MaxRunEnv)
	case req.Detach && req.TTY:
		return types.ErrInvalid.WithMessage("a detached run has no terminal: set detach or tty, not both")
	case req.Rows < 0 || req.Cols < 0 || req.Rows > maxTerminalSize || req.Cols > maxTerminalSize:
		return types.ErrInvalid.WithMessage("terminal size %dx%d out of range", req.Rows, req.Cols)
	}
	for name, value := range req.Env {
		if err := types.ValidateConfigVar(name, value); err != nil {
			var e *types.Error
			if errors.As(err, &e) {
				return e
			}
			return types.ErrInvalid.WithMessage("%s", err.Error())
		}
	}
	return nil
}

// runMemory is the memory limit of run jobs (the scheduler's default).
const runMemory = 512 << 20

// runSpec is the one-off job of a run: the release's image (or, for a
// slug, the stack image running `gantryd slugrunner` with the command)
// and config vars plus the run's env, never discoverable and without a
// port.
func (s *Server) runSpec(app, id string, rel types.Release, slugPath string, req types.RunRequest) (keyspace.JobSpec, *types.Error) {
	env := map[string]string{}
	maps.Copy(env, rel.Config)
	maps.Copy(env, req.Env)
	spec := keyspace.JobSpec{
		App:            app,
		Release:        runReleasePrefix + id,
		ReleaseVersion: rel.Version,
		Type:           types.RunType,
		Image:          rel.Image,
		Env:            env,
		Resources:      keyspace.Resources{Memory: runMemory},
		StopTimeout:    runStopTimeout,
		OneOff:         true,
	}
	if !req.Detach {
		spec.Attach = &keyspace.Attach{TTY: req.TTY}
		if req.TTY && req.Rows > 0 && req.Cols > 0 {
			spec.Attach.Rows, spec.Attach.Cols = uint16(req.Rows), uint16(req.Cols)
		}
	}
	if rel.Slug == "" {
		spec.Cmd = req.Command
		return spec, nil
	}
	if s.cfg.InternalURL == "" {
		return keyspace.JobSpec{}, types.ErrUnavailable.WithMessage("this controller cannot run releases built from source: it has no internal URL configured")
	}
	if _, ok := env["GANTRY_LOG_LEVEL"]; !ok {
		// The runner's own messages would mix with the command's output.
		env["GANTRY_LOG_LEVEL"] = "warn"
	}
	spec.Cmd = []string{types.GantrydPath, "slugrunner", "start", "--slug", types.SlugMountPath, "--digest", rel.Slug,
		"--command", shellCommand(req.Command), types.RunType}
	spec.Artifacts = []keyspace.Artifact{{URL: s.cfg.blobURL(slugPath), Digest: rel.Slug, Path: types.SlugMountPath}}
	spec.MountGantryd = true
	spec.User = types.AppUser
	return spec, nil
}

// shellCommand is the shell code of a run's argv in a slug: one argument
// is shell code as it is, more are quoted and joined, so that
// ["sh", "-c", "exit 3"] runs as typed.
func shellCommand(argv []string) string {
	if len(argv) == 1 {
		return argv[0]
	}
	quoted := make([]string, len(argv))
	for i, a := range argv {
		quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(quoted, " ")
}

// waitRunPlaced waits until the scheduler assigns the run's job to a host.
func (s *Server) waitRunPlaced(ctx context.Context, app, release string) (keyspace.Assignment, error) {
	wctx, cancel := context.WithTimeout(ctx, placeTimeout)
	defer cancel()
	snaps, err := etcdwatch.Watch(wctx, etcdwatch.Config{
		Client: s.cfg.Etcd, Prefix: s.space.Assignments(), RequestTimeout: etcdkv.Timeout, Logger: s.log,
	})
	if err != nil {
		return keyspace.Assignment{}, err
	}
	for snap := range snaps {
		for _, v := range snap.KVs {
			var a keyspace.Assignment
			if json.Unmarshal(v, &a) == nil && a.Spec.App == app && a.Spec.Release == release {
				return a, nil
			}
		}
	}
	return keyspace.Assignment{}, context.Cause(wctx)
}

// attachHost attaches to the run's job through the agent of its host.
func (s *Server) attachHost(ctx context.Context, asg keyspace.Assignment) (*attach.Conn, *types.Error) {
	host, err := s.readHost(ctx, asg.HostID)
	if err != nil {
		return nil, types.ErrUnavailable.WithMessage("etcd is unreachable; the job was not started")
	}
	if host == nil || host.APIURL == "" {
		return nil, types.ErrUnavailable.WithMessage("host %s, which was to run the job, is not reporting", asg.HostID)
	}
	conn, err := s.hosts.get(host.APIURL).Attach(ctx, asg.JobID)
	var hostErr *hostclient.Error
	switch {
	case err == nil:
		return conn, nil
	case errors.As(err, &hostErr):
		return nil, types.ErrUnavailable.WithMessage("the agent of host %s did not start the job: %s", asg.HostID, hostErr.Message)
	default:
		s.log.Warn("host agent unreachable", "host", asg.HostID, "url", host.APIURL, "err", err)
		return nil, types.ErrUnavailable.WithMessage("cannot reach the agent of host %s at %s", asg.HostID, host.APIURL)
	}
}

// splice carries the frames between the client and the host agent until
// the agent's side ends (after the exit frame) or the client goes. The
// client then gets the end of the stream and a moment to read it, so that
// nothing it has not read yet is lost to a reset.
func splice(client, host *attach.Conn) {
	up := make(chan struct{})
	go func() {
		defer close(up)
		io.Copy(host, client)
		// The client went (the agent then kills the job), or the agent
		// did: keep reading what the client still sends until it goes.
		host.Close()
		io.Copy(io.Discard, client)
	}()
	io.Copy(client, host)
	host.Close()
	if client.CloseWrite() == nil {
		timer := time.NewTimer(runLinger)
		defer timer.Stop()
		select {
		case <-up:
		case <-timer.C:
		}
	}
	client.Close()
	<-up
}

// sweepRuns removes, every runSweepInterval until ctx ends, the
// formations of run jobs that ended (detached runs, and attached runs
// whose controller went away), never placed, or ran longer than
// MaxRunDuration.
func (s *Server) sweepRuns(ctx context.Context) {
	tick := time.NewTicker(runSweepInterval)
	defer tick.Stop()
	for {
		if err := s.sweepRunsOnce(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("sweep of run jobs failed; retrying at the next interval", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// sweepRunsOnce is one pass of sweepRuns.
func (s *Server) sweepRunsOnce(ctx context.Context) error {
	kvs, err := etcdkv.List(ctx, s.cfg.Etcd, s.space.Formations())
	if err != nil {
		return err
	}
	runs := map[string]keyspace.Formation{}
	for key, v := range kvs {
		var f keyspace.Formation
		if json.Unmarshal(v, &f) == nil && f.Template.OneOff && f.Type == types.RunType && strings.HasPrefix(f.Release, runReleasePrefix) {
			runs[key] = f
		}
	}
	if len(runs) == 0 {
		return nil
	}
	assignments, err := etcdkv.List(ctx, s.cfg.Etcd, s.space.Assignments())
	if err != nil {
		return err
	}
	placed := map[string]string{} // release -> job ID
	for _, v := range assignments {
		var a keyspace.Assignment
		if json.Unmarshal(v, &a) == nil && a.Spec.Type == types.RunType {
			placed[a.Spec.Release] = a.JobID
		}
	}
	var errs []error
	for key, f := range runs {
		age := time.Since(f.UpdatedAt)
		jobID, ok := placed[f.Release]
		reason := ""
		switch {
		case age > MaxRunDuration:
			reason = "ran longer than " + MaxRunDuration.String()
		case !ok && age > 2*placeTimeout:
			reason = "never placed"
		case ok:
			st, err := s.readJobState(ctx, jobID)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if st != nil && (st.State == keyspace.StateDown || st.State == keyspace.StateCrashed) {
				reason = "ended " + st.State
			}
		}
		if reason == "" {
			continue
		}
		if err := etcdkv.Delete(ctx, s.cfg.Etcd, key); err != nil {
			errs = append(errs, err)
			continue
		}
		s.log.Info("removed the formation of a run job", "app", f.App, "release", f.Release, "job", jobID, "reason", reason)
	}
	return errors.Join(errs...)
}

// readJobState returns the state of a job, or nil when it has none.
func (s *Server) readJobState(ctx context.Context, id string) (*keyspace.JobState, error) {
	ctx, cancel := context.WithTimeout(ctx, etcdkv.Timeout)
	defer cancel()
	resp, err := s.cfg.Etcd.Get(ctx, s.space.Job(id))
	if err != nil {
		return nil, etcdkv.Err("read job "+id, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	var st keyspace.JobState
	if err := json.Unmarshal(resp.Kvs[0].Value, &st); err != nil {
		return nil, nil
	}
	return &st, nil
}
