package controller

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	hostclient "github.com/gantryhq/gantry/layer0/host/client"
	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer1/controller/etcdkv"
	"github.com/gantryhq/gantry/layer1/controller/types"
)

const (
	// hostTimeout bounds a call to a host agent's API.
	hostTimeout = 10 * time.Second
	// lastLines is how many lines of a job's output a failed deployment
	// shows when the job's state has none.
	lastLines = 10
)

// appJobs are the etcd records of one app's jobs, read at one revision.
type appJobs struct {
	// assignments and states are keyed by job ID.
	assignments map[string]keyspace.Assignment
	states      map[string]keyspace.JobState
}

// readJobs reads the assignments and job states of app from etcd in one
// transaction. Job IDs start with "<app>.", and app names hold no dot.
func (s *Server) readJobs(ctx context.Context, app string) (appJobs, error) {
	ctx, cancel := context.WithTimeout(ctx, etcdkv.Timeout)
	defer cancel()
	resp, err := s.cfg.Etcd.Txn(ctx).Then(
		clientv3.OpGet(s.space.Assignments(), clientv3.WithPrefix()),
		clientv3.OpGet(s.space.Job(app+"."), clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return appJobs{}, etcdkv.Err("read the jobs of app "+app, err)
	}
	out := appJobs{assignments: map[string]keyspace.Assignment{}, states: map[string]keyspace.JobState{}}
	for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
		id := keyspace.Last(string(kv.Key))
		if !strings.HasPrefix(id, app+".") {
			continue
		}
		var a keyspace.Assignment
		if err := json.Unmarshal(kv.Value, &a); err != nil || a.Spec.App != app {
			continue
		}
		out.assignments[id] = a
	}
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		var st keyspace.JobState
		if err := json.Unmarshal(kv.Value, &st); err != nil || st.App != app {
			continue
		}
		out.states[keyspace.Last(string(kv.Key))] = st
	}
	return out, nil
}

// listJobs answers the jobs of an app: the jobs the scheduler placed
// (pending until their host reports them) and the jobs their hosts still
// report after the placement is gone (stopping, down). A crashed job says
// when the scheduler replaces it (the restart time it records in the
// assignment), and every job its index's last exit: its own when it
// crashed, else the one its assignment carries from the job it replaced.
// Build jobs are one-off jobs of type build with release 0.
func (s *Server) listJobs(w http.ResponseWriter, r *http.Request) {
	app := r.PathValue("app")
	releases, err := s.store.ListReleases(r.Context(), app)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	versions := make(map[string]int, len(releases))
	for _, rel := range releases {
		versions[rel.ID] = rel.Version
	}
	recs, err := s.readJobs(r.Context(), app)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	jobs := make([]types.Job, 0, len(recs.assignments)+len(recs.states))
	for id, a := range recs.assignments {
		j := types.Job{
			ID: id, App: app, Release: a.Spec.ReleaseVersion, Type: a.Spec.Type, Index: a.Index,
			Host: a.HostID, State: types.JobPending, UpdatedAt: a.CreatedAt.UTC(), Restarts: a.Restarts,
			OneOff: a.Spec.OneOff,
		}
		if e := a.LastExit; e != nil {
			j.LastExit = &types.JobExit{ExitCode: e.ExitCode, Error: e.Error, At: e.At.UTC(), LastLines: e.LastLines}
		}
		if st, ok := recs.states[id]; ok {
			withState(&j, st)
			if j.State == types.JobCrashed && !a.Spec.OneOff && !a.RestartAt.IsZero() {
				j.RestartAt = a.RestartAt.UTC()
			}
		}
		jobs = append(jobs, j)
	}
	for id, st := range recs.states {
		if _, ok := recs.assignments[id]; ok {
			continue
		}
		// Only one-off jobs (builds, runs) carry release IDs of no release.
		version, known := versions[st.Release]
		j := types.Job{ID: id, App: app, Release: version, Type: st.Type, Index: jobIndex(id), OneOff: !known}
		withState(&j, st)
		jobs = append(jobs, j)
	}
	slices.SortFunc(jobs, func(a, b types.Job) int {
		return cmp.Or(cmp.Compare(a.Type, b.Type), cmp.Compare(a.Index, b.Index),
			cmp.Compare(a.Release, b.Release), cmp.Compare(a.ID, b.ID))
	})
	s.addUsage(r.Context(), jobs)
	writeJSON(w, http.StatusOK, jobs)
}

// withState fills j from the state its host reports; a crashed job's own
// exit is its last.
func withState(j *types.Job, st keyspace.JobState) {
	j.Host = st.HostID
	j.State = st.State
	j.Addr = st.Addr
	j.StartedAt = st.StartedAt.UTC()
	j.UpdatedAt = st.UpdatedAt.UTC()
	j.ExitCode = st.ExitCode
	j.Error = st.Error
	j.LastLines = st.LastLines
	if st.State == keyspace.StateCrashed {
		j.LastExit = &types.JobExit{ExitCode: st.ExitCode, Error: st.Error, At: st.UpdatedAt.UTC(), LastLines: st.LastLines}
	}
}

// jobIndex returns the index of a job ID "<app>.<type>.<index>.<hex>", or
// 0 when the ID has another form.
func jobIndex(id string) int {
	parts := strings.Split(id, ".")
	if len(parts) != 4 {
		return 0
	}
	n, err := strconv.Atoi(parts[2])
	if err != nil {
		return 0
	}
	return n
}

// killJob kills one job of an app through the API of the host agent that
// runs it (DELETE /v1/apps/{app}/jobs/{job}); the scheduler replaces it.
func (s *Server) killJob(w http.ResponseWriter, r *http.Request) {
	app, id := r.PathValue("app"), r.PathValue("job")
	if _, err := s.store.GetApp(r.Context(), app); err != nil {
		s.fail(w, r, err)
		return
	}
	recs, err := s.readJobs(r.Context(), app)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	st, ok := recs.states[id]
	if !ok {
		if _, placed := recs.assignments[id]; placed {
			writeError(w, types.ErrConflict.WithMessage("job %s has not started yet; its host has not reported it", id))
			return
		}
		writeError(w, types.ErrJobNotFound.WithMessage("app %q has no job %q", app, id))
		return
	}
	host, err := s.readHost(r.Context(), st.HostID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if host == nil || host.APIURL == "" {
		writeError(w, types.ErrUnavailable.WithMessage("host %s of job %s is not reporting; its jobs are moved once it is gone for good", st.HostID, id))
		return
	}
	kctx, cancel := context.WithTimeout(r.Context(), hostTimeout)
	defer cancel()
	err = s.hosts.get(host.APIURL).KillJob(kctx, id)
	var hostErr *hostclient.Error
	switch {
	case err == nil:
		s.log.Info("job killed", "app", app, "job", id, "host", st.HostID)
		w.WriteHeader(http.StatusNoContent)
	case errors.Is(err, hostclient.ErrJobNotFound):
		writeError(w, types.ErrJobNotFound.WithMessage("app %q has no job %q (host %s no longer runs it)", app, id, st.HostID))
	case errors.Is(err, hostclient.ErrConflict):
		writeError(w, types.ErrConflict.WithMessage("job %s is not running (%s)", id, st.State))
	case errors.As(err, &hostErr):
		s.log.Error("host agent refused to kill a job", "job", id, "host", st.HostID, "err", err)
		writeError(w, types.ErrUnavailable.WithMessage("the agent of host %s answered %d %s: %s", st.HostID, hostErr.Status, hostErr.Code, hostErr.Message))
	default:
		s.log.Warn("host agent unreachable", "job", id, "host", st.HostID, "url", host.APIURL, "err", err)
		writeError(w, types.ErrUnavailable.WithMessage("cannot reach the agent of host %s at %s", st.HostID, host.APIURL))
	}
}

// readHost returns the record of a host, or nil when it has none (its
// lease expired).
func (s *Server) readHost(ctx context.Context, id string) (*keyspace.Host, error) {
	ctx, cancel := context.WithTimeout(ctx, etcdkv.Timeout)
	defer cancel()
	resp, err := s.cfg.Etcd.Get(ctx, s.space.Host(id))
	if err != nil {
		return nil, etcdkv.Err("read host "+id, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	var h keyspace.Host
	if err := json.Unmarshal(resp.Kvs[0].Value, &h); err != nil {
		return nil, fmt.Errorf("decode host %s: %w", id, err)
	}
	return &h, nil
}

// hostClients keeps one client per host agent API URL, so that their
// connections are reused. It is safe for concurrent use.
type hostClients struct {
	token string

	mu    sync.Mutex
	byURL map[string]*hostclient.Client
}

func newHostClients(token string) *hostClients {
	return &hostClients{token: token, byURL: map[string]*hostclient.Client{}}
}

// get returns the client of the agent at apiURL.
func (h *hostClients) get(apiURL string) *hostclient.Client {
	h.mu.Lock()
	defer h.mu.Unlock()
	c, ok := h.byURL[apiURL]
	if !ok {
		c = hostclient.New(apiURL, h.token)
		h.byURL[apiURL] = c
	}
	return c
}

// jobLastLines returns the last lines of output of a job from its host
// agent, or nil when they cannot be had.
func (s *Server) jobLastLines(ctx context.Context, st keyspace.JobState) []string {
	if len(st.LastLines) > 0 {
		return st.LastLines
	}
	host, err := s.readHost(ctx, st.HostID)
	if err != nil || host == nil || host.APIURL == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, hostTimeout)
	defer cancel()
	stream, err := s.hosts.get(host.APIURL).Logs(ctx, st.JobID, hostclient.LogOptions{Lines: lastLines})
	if err != nil {
		return nil
	}
	defer stream.Close()
	var lines []string
	for {
		l, err := stream.Next()
		if err != nil {
			return lines
		}
		lines = append(lines, l.Text)
	}
}
