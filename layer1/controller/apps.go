package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/gantryhq/gantry/layer1/controller/build"
	"github.com/gantryhq/gantry/layer1/controller/store"
	"github.com/gantryhq/gantry/layer1/controller/types"
)

// generateAttempts is how many generated names createApp tries before it
// gives up (a conflict needs the same three random choices).
const generateAttempts = 10

// app adds the URLs that depend on the configuration. A system app has no
// web URL: the router serves no default domain of it, since it has no web
// process.
func (s *Server) app(a types.App) types.App {
	a.GitURL = s.cfg.gitURL(a.Name)
	if !types.IsSystemAppName(a.Name) {
		a.WebURL = s.cfg.webURL(a.Name)
		a.URLs = s.cfg.appURLs(a.Name)
	}
	return a
}

func (s *Server) createApp(w http.ResponseWriter, r *http.Request) {
	var req types.CreateAppRequest
	if e := decodeJSON(w, r, &req, true); e != nil {
		writeError(w, e)
		return
	}
	if req.Name != "" {
		if err := types.ValidateAppName(req.Name); err != nil {
			s.fail(w, r, err)
			return
		}
		if types.IsSystemAppName(req.Name) {
			s.fail(w, r, types.ErrInvalid.WithMessage("invalid app name %q: the prefix %q is reserved for the platform's own apps",
				req.Name, types.SystemAppPrefix))
			return
		}
		if owner, err := s.domainOwner(r, req.Name); err != nil || owner != "" {
			if err == nil {
				err = types.ErrConflict.WithMessage("the domain %s of an app named %q is a route of app %s; pick another name",
					s.cfg.defaultDomain(req.Name), req.Name, owner)
			}
			s.fail(w, r, err)
			return
		}
		a, err := s.store.CreateApp(r.Context(), req.Name)
		if errors.Is(err, store.ErrConflict) {
			err = types.ErrConflict.WithMessage("an app named %q already exists", req.Name)
		}
		if err != nil {
			s.fail(w, r, err)
			return
		}
		s.appCreated(a)
		writeJSON(w, http.StatusCreated, s.app(a))
		return
	}
	for range generateAttempts {
		name := generateName()
		owner, err := s.domainOwner(r, name)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if owner != "" {
			continue
		}
		a, err := s.store.CreateApp(r.Context(), name)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			s.fail(w, r, err)
			return
		}
		s.appCreated(a)
		writeJSON(w, http.StatusCreated, s.app(a))
		return
	}
	s.fail(w, r, fmt.Errorf("no free generated app name after %d attempts", generateAttempts))
}

// appCreated wakes the certificate manager, which obtains the new app's
// default domain certificate in the background.
func (s *Server) appCreated(a types.App) {
	s.log.Info("app created", "app", a.Name)
	if s.certs != nil {
		s.certs.poke()
	}
}

func (s *Server) listApps(w http.ResponseWriter, r *http.Request) {
	apps, err := s.store.ListApps(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := make([]types.App, 0, len(apps))
	for _, a := range apps {
		out = append(out, s.app(a))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getApp(w http.ResponseWriter, r *http.Request) {
	a, err := s.store.GetApp(r.Context(), r.PathValue("app"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.app(a))
}

// updateApp changes the settings of an app (PATCH /v1/apps/{app}): today
// its app-wide https_only, which the mirror carries to the routes of all
// its domains.
func (s *Server) updateApp(w http.ResponseWriter, r *http.Request) {
	var req types.UpdateAppRequest
	if e := decodeJSON(w, r, &req, false); e != nil {
		writeError(w, e)
		return
	}
	if err := validateUpdateApp(req); err != nil {
		s.fail(w, r, err)
		return
	}
	app := r.PathValue("app")
	a, err := s.store.SetHTTPSOnly(r.Context(), app, *req.HTTPSOnly)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("app settings changed", "app", app, "https_only", a.HTTPSOnly)
	s.events.emit(app, "https-only "+onOff(a.HTTPSOnly))
	s.syncApp(r, app)
	writeJSON(w, http.StatusOK, s.app(a))
}

// onOff prints b as "on" or "off".
func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// deleteApp deletes the app from PostgreSQL, then its formations and
// routes from etcd: the scheduler stops its jobs and the router forgets
// its domains.
func (s *Server) deleteApp(w http.ResponseWriter, r *http.Request) {
	app := r.PathValue("app")
	if types.IsSystemAppName(app) {
		s.fail(w, r, types.ErrForbidden.WithMessage("%s is one of the platform's own apps (prefix %q); it cannot be destroyed",
			app, types.SystemAppPrefix))
		return
	}
	if err := s.store.DeleteApp(r.Context(), app); err != nil {
		s.fail(w, r, err)
		return
	}
	s.syncApp(r, app)
	// The app's blobs go too; what a failure leaves, the periodic
	// collection deletes.
	if err := s.collector.DeleteAppBlobs(context.WithoutCancel(r.Context()), app); err != nil {
		s.log.Warn("delete the blobs of a deleted app", "app", app, "err", err)
	}
	// Its build cache on the hosts goes too.
	if err := s.deleteAppVolumes(context.WithoutCancel(r.Context()), app); err != nil {
		s.log.Warn("delete the volumes of a deleted app", "app", app, "err", err)
	}
	// Its log goes too, so that a new app of the same name starts afresh.
	if err := s.deleteAppLog(context.WithoutCancel(r.Context()), app); err != nil {
		s.log.Warn("delete the log of a deleted app", "app", app, "err", err)
	}
	w.WriteHeader(http.StatusNoContent)
}

// domainOwner returns the app that has a custom route for the default
// domain of an app named name, or "".
func (s *Server) domainOwner(r *http.Request, name string) (string, error) {
	owner, err := s.store.RouteOwner(r.Context(), s.cfg.defaultDomain(name))
	if errors.Is(err, store.ErrRouteNotFound) {
		return "", nil
	}
	return owner, err
}

func (s *Server) getConfig(w http.ResponseWriter, r *http.Request) {
	config, err := s.store.Config(r.Context(), r.PathValue("app"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, config)
}

func (s *Server) updateConfig(w http.ResponseWriter, r *http.Request) {
	var body map[string]json.RawMessage
	if e := decodeJSON(w, r, &body, false); e != nil {
		writeError(w, e)
		return
	}
	if body == nil {
		writeError(w, types.ErrBadRequest.WithMessage("the body must be a JSON object of config vars"))
		return
	}
	// Check every change before applying any, in a stable order so that
	// the message names the same var each time.
	names := slices.Sorted(maps.Keys(body))
	changes := make(map[string]*string, len(body))
	for _, name := range names {
		value, e := decodeConfigValue(name, body[name])
		if e != nil {
			writeError(w, e)
			return
		}
		v := ""
		if value != nil {
			v = *value
		}
		if err := types.ValidateConfigVar(name, v); err != nil {
			s.fail(w, r, err)
			return
		}
		changes[name] = value
	}
	app := r.PathValue("app")
	change, err := s.store.UpdateConfig(r.Context(), app, changes, configChange("env ", names, changes), types.ValidateConfigChange)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if change.Release != nil {
		// The new release is deployed like any other.
		s.log.Info("release created", "app", app, "release", change.Release.Version,
			"description", change.Release.Description, "deployment", change.Deployment.Status)
		s.events.emit(app, configChange("", names, changes))
		s.deploymentMade(w, r, app, change.Deployment)
	}
	writeJSON(w, http.StatusOK, change.Config)
}

// decodeConfigValue decodes the value of config var name in a PATCH: a
// string sets it, null unsets it (nil).
func decodeConfigValue(name string, raw json.RawMessage) (*string, *types.Error) {
	if string(raw) == "null" {
		return nil, nil
	}
	var v string
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, types.ErrBadRequest.WithMessage("config var %q: got a JSON %s, want a string or null (to unset it)", name, jsonKind(raw))
	}
	return &v, nil
}

func (s *Server) listReleases(w http.ResponseWriter, r *http.Request) {
	releases, err := s.store.ListReleases(r.Context(), r.PathValue("app"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if releases == nil {
		releases = []types.Release{}
	}
	if err := s.markDeletedSlugs(r.Context(), r.PathValue("app"), releases); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, releases)
}

// markDeletedSlugs sets SlugDeleted on the releases of app whose slug is no
// longer in the blobstore.
func (s *Server) markDeletedSlugs(ctx context.Context, app string, releases []types.Release) error {
	paths, err := s.store.SlugPaths(ctx, app)
	if err != nil || len(paths) == 0 {
		return err
	}
	st, err := s.blobStore(ctx)
	if err != nil {
		return err
	}
	blobs, err := st.List(ctx, build.SlugsPrefix+app+"/")
	if err != nil {
		return err
	}
	have := make(map[string]bool, len(blobs))
	for _, b := range blobs {
		have[b.Path] = true
	}
	for i, rel := range releases {
		if p, ok := paths[rel.Version]; ok && !have[p] {
			releases[i].SlugDeleted = true
		}
	}
	return nil
}

func (s *Server) getRelease(w http.ResponseWriter, r *http.Request) {
	// "3" or "v3" (checkParams answered anything else).
	version, _ := parseVersion(r.PathValue("version"))
	rel, err := s.store.GetRelease(r.Context(), r.PathValue("app"), version)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rel)
}

// configChange says what a config change of the names did, each verb
// after prefix: with prefix "env ", "env set A, B; env unset C", the
// description of the release it makes; with "", "set A, B; unset C", its
// event in the app's log.
func configChange(prefix string, names []string, changes map[string]*string) string {
	var set, unset []string
	for _, name := range names {
		if changes[name] == nil {
			unset = append(unset, name)
		} else {
			set = append(set, name)
		}
	}
	var parts []string
	if len(set) > 0 {
		parts = append(parts, prefix+"set "+strings.Join(set, ", "))
	}
	if len(unset) > 0 {
		parts = append(parts, prefix+"unset "+strings.Join(unset, ", "))
	}
	return strings.Join(parts, "; ")
}
