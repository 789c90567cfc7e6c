package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"time"
)

// probeTimeout bounds the request of probeAPI.
const probeTimeout = 5 * time.Second

// probeAPI asks base for GET /healthz, which every Gantry controller answers
// with JSON (its health, or an error body). It returns what answered
// instead, or "" when the answer is JSON or there is no answer (the
// transport error says that already).
func probeAPI(ctx context.Context, base string) string {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/healthz", nil)
	if err != nil {
		return ""
	}
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	ct := resp.Header.Get("Content-Type")
	mt, _, _ := mime.ParseMediaType(ct)
	var body map[string]json.RawMessage
	if mt == "application/json" && json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&body) == nil {
		return ""
	}
	if ct == "" {
		ct = "no content type"
	}
	return fmt.Sprintf("it answered GET /healthz with %s (%s) rather than JSON", resp.Status, ct)
}

// notGantryAPI returns the explanation of err when the controller the
// command talked to is not a Gantry API, and "" otherwise. It probes the
// URL only for errors that a web server other than the controller causes:
// an error status (other than 401) or an answer that is not JSON.
func (r *runner) notGantryAPI(err error, status int) string {
	var syntax *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	if r.target == nil || !(status >= 400 && status != http.StatusUnauthorized || errors.As(err, &syntax) || errors.As(err, &typeErr)) {
		return ""
	}
	what := probeAPI(context.Background(), r.target.URL)
	if what == "" {
		return ""
	}
	return fmt.Sprintf("%s (from %s) is not a Gantry API: %v\n"+
		"point it at the controller (for gantryd up, GANTRY_URL in ~/.gantry/admin.env), not at the router or an app",
		r.target.URL, r.target.Source, what)
}
