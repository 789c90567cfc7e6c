package controller

import (
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strconv"

	"github.com/gantryhq/gantry/layer1/controller/types"
)

func (s *Server) getFormation(w http.ResponseWriter, r *http.Request) {
	f, err := s.store.Formation(r.Context(), r.PathValue("app"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, f)
}

// scale sets the counts of the process types the body names (PUT
// /v1/apps/{app}/formation). Every count is checked before any is stored.
func (s *Server) scale(w http.ResponseWriter, r *http.Request) {
	var body map[string]json.RawMessage
	if e := decodeJSON(w, r, &body, false); e != nil {
		writeError(w, e)
		return
	}
	if body == nil {
		writeError(w, types.ErrBadRequest.WithMessage(`the body must be a JSON object of process counts, e.g. {"web": 2}`))
		return
	}
	limit := s.cfg.maxProcessCount()
	counts := make(map[string]int, len(body))
	for _, typ := range slices.Sorted(maps.Keys(body)) {
		n, e := decodeCount(typ, body[typ])
		if e != nil {
			writeError(w, e)
			return
		}
		switch {
		case n < 0:
			writeError(w, types.ErrInvalid.WithMessage("%s=%d: a count cannot be negative", typ, n))
			return
		case n > limit:
			writeError(w, types.ErrInvalid.WithMessage("%s=%d: the limit is %d processes per type", typ, n, limit))
			return
		}
		counts[typ] = n
	}
	app := r.PathValue("app")
	f, err := s.store.Scale(r.Context(), app, counts)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if len(counts) > 0 {
		s.log.Info("scaled", "app", app, "release", f.Release, "counts", counts)
		s.events.emit(app, scaleEvent(counts))
		s.syncApp(r, app)
	}
	writeJSON(w, http.StatusOK, f)
}

// decodeCount decodes the count of process type typ: a JSON integer.
func decodeCount(typ string, raw json.RawMessage) (int, *types.Error) {
	var n int
	err := json.Unmarshal(raw, &n)
	if err == nil && string(raw) != "null" {
		return n, nil
	}
	return 0, types.ErrBadRequest.WithMessage("field %q: got a JSON %s, want an integer", typ, jsonKind(raw))
}

// jsonKind describes the JSON value raw (valid JSON) for a message: "null",
// "string", "number 100" (its value, however it was written: 1e2 too),
// "boolean", "array" or "object".
func jsonKind(raw json.RawMessage) string {
	var v any
	_ = json.Unmarshal(raw, &v) // raw is valid JSON: the body decoded
	switch x := v.(type) {
	case string:
		return "string"
	case float64:
		return "number " + strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		return "boolean"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	if len(raw) > 0 && raw[0] != 'n' {
		// A number too large for a float64.
		return "number " + string(raw)
	}
	return "null"
}

// restart asks for a rolling restart of one process type, or of all (POST
// /v1/apps/{app}/restart); the scheduler replaces the jobs.
func (s *Server) restart(w http.ResponseWriter, r *http.Request) {
	var req types.RestartRequest
	if e := decodeJSON(w, r, &req, true); e != nil {
		writeError(w, e)
		return
	}
	if req.Type != "" {
		if err := types.ValidateProcessType(req.Type); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	app := r.PathValue("app")
	if err := s.store.Restart(r.Context(), app, req.Type); err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("restart asked", "app", app, "type", req.Type)
	s.events.emit(app, restartEvent(req.Type))
	s.syncApp(r, app)
	w.WriteHeader(http.StatusAccepted)
}
