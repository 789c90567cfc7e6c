package controller

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gantryhq/gantry/layer1/controller/store"
	"github.com/gantryhq/gantry/layer1/controller/types"
)

const (
	// maxDeploymentsListed is how many deployments GET .../deployments
	// lists, newest first.
	maxDeploymentsListed = 100
	// eventsPoll is how often a stream of deployment events reads the
	// deployment when nothing in this process said it changed (another
	// controller may be moving it).
	eventsPoll = time.Second
	// eventsKeepAlive is the pause after which an idle event stream gets a
	// comment line, so that proxies and clients see it is alive.
	eventsKeepAlive = 15 * time.Second
)

// deploymentMade is what the endpoints that create a release do once it is
// stored: name its deployment in the answer (the Gantry-Deployment
// header), mirror the app into etcd, wake the deployer, and announce the
// deployment in the app's events.
func (s *Server) deploymentMade(w http.ResponseWriter, r *http.Request, app string, d store.Deployment) {
	w.Header().Set(types.DeploymentHeader, d.ID)
	s.syncApp(r, app)
	s.deployer.Announce(d)
}

// wireDeployment is the API's view of d.
func (s *Server) wireDeployment(d store.Deployment) types.Deployment {
	timeout := s.deployer.TimeoutOf(d)
	out := types.Deployment{
		ID:             d.ID,
		App:            d.App,
		OldRelease:     d.Old.Version,
		NewRelease:     d.New.Version,
		Strategy:       d.Strategy,
		State:          d.Status,
		Timeout:        int(timeout / time.Second),
		Processes:      []types.DeploymentProcess{},
		Reason:         d.Error,
		FailedJob:      d.FailedJob,
		LastLines:      d.LastLines,
		ConfigRestored: d.ConfigRestored,
		CreatedAt:      d.CreatedAt,
		StartedAt:      d.StartedAt,
		FinishedAt:     d.FinishedAt,
		UpdatedAt:      d.UpdatedAt,
	}
	for _, p := range d.Processes {
		if p.Want == 0 && p.NewCount == 0 && p.Started == 0 {
			continue // a type the new release does not run
		}
		out.Processes = append(out.Processes, types.DeploymentProcess{Type: p.Type, Up: p.Up, Want: p.Want})
	}
	return out
}

// getDeploySettings answers GET /v1/apps/{app}/deploy.
func (s *Server) getDeploySettings(w http.ResponseWriter, r *http.Request) {
	app := r.PathValue("app")
	st, err := s.store.GetDeploySettings(r.Context(), app)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.wireSettings(app, st))
}

func (s *Server) wireSettings(app string, st store.DeploySettings) types.DeploySettings {
	out := types.DeploySettings{App: app, Strategy: st.Strategy, Timeout: st.Timeout}
	if st.Timeout == 0 {
		out.Timeout, out.TimeoutDefault = int(s.cfg.deployTimeout()/time.Second), true
	}
	return out
}

// updateDeploySettings answers PATCH /v1/apps/{app}/deploy: it sets the
// fields the body has, after checking them all.
func (s *Server) updateDeploySettings(w http.ResponseWriter, r *http.Request) {
	var req types.DeploySettingsRequest
	if e := decodeJSON(w, r, &req, false); e != nil {
		writeError(w, e)
		return
	}
	if err := validateDeploySettings(req); err != nil {
		s.fail(w, r, err)
		return
	}
	app := r.PathValue("app")
	st, err := s.store.UpdateDeploySettings(r.Context(), app, req.Strategy, req.Timeout)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("deploy settings changed", "app", app, "strategy", st.Strategy, "timeout", st.Timeout)
	writeJSON(w, http.StatusOK, s.wireSettings(app, st))
}

// validateDeploySettings returns an ErrInvalid naming the first bad field
// of req.
func validateDeploySettings(req types.DeploySettingsRequest) error {
	if req.Strategy != nil && !slices.Contains(types.DeployStrategies, *req.Strategy) {
		return types.ErrInvalid.WithMessage("unknown deploy strategy %q; use %s", *req.Strategy, strings.Join(types.DeployStrategies, " or "))
	}
	if req.Timeout != nil && (*req.Timeout < 0 || *req.Timeout > store.MaxDeployTimeout) {
		return types.ErrInvalid.WithMessage("deploy timeout %d: give a number of seconds from 1 to %d (0 for the default)", *req.Timeout, store.MaxDeployTimeout)
	}
	return nil
}

// listDeployments answers GET /v1/apps/{app}/deployments, newest first.
func (s *Server) listDeployments(w http.ResponseWriter, r *http.Request) {
	deps, err := s.store.ListDeployments(r.Context(), r.PathValue("app"), maxDeploymentsListed)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := make([]types.Deployment, 0, len(deps))
	for _, d := range deps {
		out = append(out, s.wireDeployment(d))
	}
	writeJSON(w, http.StatusOK, out)
}

// getDeployment answers GET /v1/apps/{app}/deployments/{id}.
func (s *Server) getDeployment(w http.ResponseWriter, r *http.Request) {
	d, err := s.store.GetDeployment(r.Context(), r.PathValue("app"), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.wireDeployment(d))
}

// deploymentEvents answers GET /v1/apps/{app}/deployments/{id}/events with
// server-sent events: the deployment now, then again after each change
// (event "progress"), and last when it has ended (event "end"), after
// which the stream ends. A deployment that has ended gets only its "end"
// event.
func (s *Server) deploymentEvents(w http.ResponseWriter, r *http.Request) {
	app, id := r.PathValue("app"), r.PathValue("id")
	ctx := r.Context()
	d, err := s.store.GetDeployment(ctx, app, id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	poll := time.NewTicker(eventsPoll)
	defer poll.Stop()
	keepAlive := time.NewTicker(eventsKeepAlive)
	defer keepAlive.Stop()
	var last []byte
	seq := 0
	for {
		wire := s.wireDeployment(d)
		b, err := json.Marshal(wire)
		if err != nil {
			s.log.Error("encode deployment", "err", err)
			return
		}
		if !slices.Equal(b, last) {
			event := types.DeploymentEventProgress
			if wire.Ended() {
				event = types.DeploymentEventEnd
			}
			seq++
			if _, err := fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", seq, event, b); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
			keepAlive.Reset(eventsKeepAlive)
			last = b
		}
		if wire.Ended() {
			return
		}
		changed := s.deployer.Changed()
		select {
		case <-ctx.Done():
			return
		case <-s.deployer.Closing():
			return // the server shuts down; the client follows again
		case <-changed:
		case <-poll.C:
		case <-keepAlive.C:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
		}
		next, err := s.store.GetDeployment(ctx, app, id)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return // the app is gone
		case err != nil:
			if ctx.Err() == nil {
				s.log.Warn("read deployment for its events", "app", app, "deployment", id, "err", err)
			}
		default:
			d = next
		}
	}
}
