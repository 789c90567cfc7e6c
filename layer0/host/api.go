package host

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gantryhq/gantry/layer0/host/client"
)

// apiServer returns the agent's HTTP API; see package client for the
// routes. Request contexts derive from ctx, so log streams end when the
// agent stops.
func (a *agent) apiServer(ctx context.Context) *http.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.Handle("GET /v1/jobs", a.auth(a.listJobs))
	mux.Handle("GET /v1/usage", a.auth(func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, a.usage()) }))
	mux.Handle("GET /metrics", a.auth(promhttp.HandlerFor(a.metrics, promhttp.HandlerOpts{}).ServeHTTP))
	mux.Handle("GET /v1/jobs/{id}/log", a.auth(a.jobLog))
	mux.Handle("POST /v1/jobs/{id}/kill", a.auth(a.killJob))
	mux.Handle("POST /v1/jobs/{id}/attach", a.auth(a.attachJob(ctx)))
	mux.Handle("DELETE /v1/apps/{app}/volumes", a.auth(a.removeAppVolumes))
	mux.Handle("POST /v1/gc", a.auth(a.collect))
	mux.Handle("GET /v1/images/save", a.auth(a.saveImage))
	return &http.Server{
		Handler:           jsonErrors(mux),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
}

// auth requires the API token as a bearer token, compared in constant time.
func (a *agent) auth(h http.HandlerFunc) http.Handler {
	want := sha256.Sum256([]byte(a.cfg.APIToken))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		got := sha256.Sum256([]byte(token))
		if !ok || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="gantry-host"`)
			writeError(w, client.NewError(client.ErrUnauthorized, "missing or wrong API token"))
			return
		}
		h(w, r)
	})
}

func (a *agent) listJobs(w http.ResponseWriter, r *http.Request) {
	jobs := a.jobList()
	out := make([]client.Job, 0, len(jobs))
	for _, j := range jobs {
		st, _ := j.snapshot()
		s := j.spec()
		out = append(out, client.Job{JobState: st, Image: s.Image, Service: s.Service, Index: j.asg.Index, Stats: j.statsOf()})
	}
	slices.SortFunc(out, func(x, y client.Job) int { return cmp.Compare(x.JobID, y.JobID) })
	writeJSON(w, http.StatusOK, out)
}

// jobLog sends the last lines of a job's output, one JSON object per line,
// and with follow=1 keeps sending new ones, flushing each, until the
// output ends (the container stopped) or the client leaves.
func (a *agent) jobLog(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	j, ok := a.job(id)
	if !ok {
		writeError(w, client.NewError(client.ErrJobNotFound, "no job %q on this host", id))
		return
	}
	n := 0
	if s := r.URL.Query().Get("lines"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 0 {
			writeError(w, client.NewError(client.ErrBadRequest, "lines must be a non-negative integer"))
			return
		}
		n = v
	}
	follow, err := parseBool(r.URL.Query().Get("follow"))
	if err != nil {
		writeError(w, client.NewError(client.ErrBadRequest, "follow must be 0 or 1"))
		return
	}

	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	seq := j.logs.tail(n)
	for {
		lines, next, changed, closed := j.logs.since(seq)
		seq = next
		for _, l := range lines {
			if enc.Encode(l) != nil {
				return
			}
		}
		if len(lines) > 0 && rc.Flush() != nil {
			return
		}
		if !follow || closed {
			return
		}
		select {
		case <-changed:
		case <-r.Context().Done():
			return
		}
	}
}

// killJob sends SIGKILL to a job's container: the job crashes, and the
// scheduler replaces it (a system job's container is started again in
// place).
func (a *agent) killJob(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	j, ok := a.job(id)
	if !ok {
		writeError(w, client.NewError(client.ErrJobNotFound, "no job %q on this host", id))
		return
	}
	_, cid := j.snapshot()
	if cid == "" {
		writeError(w, client.NewError(client.ErrConflict, "job %s has no container", id))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), dockerTimeout)
	defer cancel()
	err := a.docker.ContainerKill(ctx, cid, "KILL")
	switch {
	case err == nil:
		j.log.Info("job killed through the API", "container", shortID(cid))
		j.poke()
		w.WriteHeader(http.StatusNoContent)
	case cerrdefs.IsConflict(err), cerrdefs.IsNotFound(err):
		writeError(w, client.NewError(client.ErrConflict, "job %s is not running", id))
	default:
		a.log.Warn("kill job", "job", id, "err", err)
		writeError(w, client.NewError(client.ErrUnavailable, "docker: cannot kill the container"))
	}
}

func parseBool(s string) (bool, error) {
	switch s {
	case "", "0", "false":
		return false, nil
	case "1", "true":
		return true, nil
	}
	return false, errors.New("not a boolean")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, e *client.Error) {
	writeJSON(w, e.Status, client.ErrorBody{Error: e})
}

// jsonErrors answers unknown routes and wrong methods with the API's JSON
// error shape instead of the mux's plain text.
func jsonErrors(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" {
			mux.ServeHTTP(w, r) // sets the path values
			return
		}
		rec := &statusRecorder{header: http.Header{}}
		h.ServeHTTP(rec, r)
		if allow := rec.header.Get("Allow"); allow != "" {
			w.Header().Set("Allow", allow)
		}
		if rec.status == http.StatusMethodNotAllowed {
			writeError(w, client.NewError(client.ErrMethodNotAllowed, "method %s not allowed on %s", r.Method, r.URL.Path))
			return
		}
		writeError(w, client.NewError(client.ErrNotFound, "no route %s %s", r.Method, r.URL.Path))
	})
}

// statusRecorder captures the status and headers of the mux's own error
// answers.
type statusRecorder struct {
	header http.Header
	status int
}

func (s *statusRecorder) Header() http.Header         { return s.header }
func (s *statusRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (s *statusRecorder) WriteHeader(status int)      { s.status = status }
