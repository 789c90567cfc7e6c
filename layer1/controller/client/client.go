// Package client is the typed Go client of the controller API v1 (see
// docs/API.md). Every call takes a context; API errors come back as
// *types.Error, so that errors.Is(err, types.ErrAppNotFound) and friends
// work, and transport failures say which controller could not be reached.
package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gantryhq/gantry/layer1/controller/types"
)

// Timeout bounds every request, on top of the caller's context, except
// the stream of a build (see Build).
const Timeout = 30 * time.Second

// buildHeaderTimeout bounds the wait for the answer to a build request once
// its source is sent: the controller stores the source as it arrives and
// answers at once.
const buildHeaderTimeout = time.Minute

// maxEventLine bounds one line of a build stream.
const maxEventLine = 1 << 20

// maxErrorBody is how much of an error answer the client reads.
const maxErrorBody = 64 << 10

// Client calls one controller. It is safe for concurrent use.
type Client struct {
	base  string
	token string
	http  *http.Client
	// stream sends the requests whose answers stream (builds): no overall
	// timeout, the caller's context bounds them.
	stream *http.Client
}

// New returns a client of the controller at baseURL (e.g.
// "http://127.0.0.1:7070") that authenticates with token.
func New(baseURL, token string) *Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ResponseHeaderTimeout = buildHeaderTimeout
	return &Client{
		base:   strings.TrimRight(baseURL, "/"),
		token:  strings.TrimSpace(token),
		http:   &http.Client{Timeout: Timeout},
		stream: &http.Client{Transport: tr},
	}
}

// Health checks that the controller and its database answer.
func (c *Client) Health(ctx context.Context) error {
	return c.do(ctx, http.MethodGet, "/healthz", nil, nil)
}

// Info returns the cluster's description.
func (c *Client) Info(ctx context.Context) (*types.Info, error) {
	var info types.Info
	if err := c.do(ctx, http.MethodGet, "/v1/info", nil, &info); err != nil {
		return nil, err
	}
	return &info, nil
}

// CreateApp creates an app; name "" makes the controller generate one.
func (c *Client) CreateApp(ctx context.Context, name string) (*types.App, error) {
	var app types.App
	if err := c.do(ctx, http.MethodPost, "/v1/apps", types.CreateAppRequest{Name: name}, &app); err != nil {
		return nil, err
	}
	return &app, nil
}

// ListApps returns all apps, sorted by name.
func (c *Client) ListApps(ctx context.Context) ([]types.App, error) {
	var apps []types.App
	if err := c.do(ctx, http.MethodGet, "/v1/apps", nil, &apps); err != nil {
		return nil, err
	}
	return apps, nil
}

// GetApp returns one app.
func (c *Client) GetApp(ctx context.Context, app string) (*types.App, error) {
	var a types.App
	if err := c.do(ctx, http.MethodGet, appPath(app), nil, &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// UpdateApp changes the settings of an app that req sets (its app-wide
// https_only) and returns the app.
func (c *Client) UpdateApp(ctx context.Context, app string, req types.UpdateAppRequest) (*types.App, error) {
	var a types.App
	if err := c.do(ctx, http.MethodPatch, appPath(app), req, &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// DeleteApp deletes an app with its config and releases.
func (c *Client) DeleteApp(ctx context.Context, app string) error {
	return c.do(ctx, http.MethodDelete, appPath(app), nil, nil)
}

// GetConfig returns an app's config vars.
func (c *Client) GetConfig(ctx context.Context, app string) (map[string]string, error) {
	var config map[string]string
	if err := c.do(ctx, http.MethodGet, appPath(app)+"/config", nil, &config); err != nil {
		return nil, err
	}
	return config, nil
}

// UpdateConfig changes an app's config vars at once: a non-nil value sets
// the var, nil unsets it. It returns the whole config after the change. When
// one change is invalid, nothing changes.
func (c *Client) UpdateConfig(ctx context.Context, app string, changes map[string]*string) (map[string]string, error) {
	if changes == nil {
		changes = map[string]*string{}
	}
	var config map[string]string
	if err := c.do(ctx, http.MethodPatch, appPath(app)+"/config", changes, &config); err != nil {
		return nil, err
	}
	return config, nil
}

// AddKey registers an SSH public key given in authorized_keys format.
func (c *Client) AddKey(ctx context.Context, authorizedKey string) (*types.Key, error) {
	var k types.Key
	if err := c.do(ctx, http.MethodPost, "/v1/keys", types.AddKeyRequest{Key: authorizedKey}, &k); err != nil {
		return nil, err
	}
	return &k, nil
}

// ListKeys returns the registered SSH keys.
func (c *Client) ListKeys(ctx context.Context) ([]types.Key, error) {
	var keys []types.Key
	if err := c.do(ctx, http.MethodGet, "/v1/keys", nil, &keys); err != nil {
		return nil, err
	}
	return keys, nil
}

// GetKey returns the registered SSH key with fingerprint ("SHA256:...").
func (c *Client) GetKey(ctx context.Context, fingerprint string) (*types.Key, error) {
	var k types.Key
	if err := c.do(ctx, http.MethodGet, "/v1/keys/"+url.PathEscape(fingerprint), nil, &k); err != nil {
		return nil, err
	}
	return &k, nil
}

// RemoveKey removes the SSH key with fingerprint ("SHA256:...").
func (c *Client) RemoveKey(ctx context.Context, fingerprint string) error {
	return c.do(ctx, http.MethodDelete, "/v1/keys/"+url.PathEscape(fingerprint), nil, nil)
}

// ListReleases returns an app's releases, newest first.
func (c *Client) ListReleases(ctx context.Context, app string) ([]types.Release, error) {
	var releases []types.Release
	if err := c.do(ctx, http.MethodGet, appPath(app)+"/releases", nil, &releases); err != nil {
		return nil, err
	}
	return releases, nil
}

// GetRelease returns release version of an app.
func (c *Client) GetRelease(ctx context.Context, app string, version int) (*types.Release, error) {
	var r types.Release
	if err := c.do(ctx, http.MethodGet, appPath(app)+"/releases/"+strconv.Itoa(version), nil, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// CreateRelease creates a release of an image with the app's current
// config vars and deploys it: it becomes the current release once its jobs
// are up.
func (c *Client) CreateRelease(ctx context.Context, app string, req types.ReleaseRequest) (*types.Release, error) {
	var r types.Release
	if err := c.do(ctx, http.MethodPost, appPath(app)+"/releases", req, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Rollback creates a release that copies release version of app (its
// image or slug, config vars and process types), makes its config vars the
// app's, and deploys it like any new release. Version 0 means the release
// that was current before the current one.
func (c *Client) Rollback(ctx context.Context, app string, version int) (*types.Release, error) {
	var r types.Release
	if err := c.do(ctx, http.MethodPost, appPath(app)+"/rollback", types.RollbackRequest{Version: version}, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// GetFormation returns the process counts of an app's release.
func (c *Client) GetFormation(ctx context.Context, app string) (*types.Formation, error) {
	var f types.Formation
	if err := c.do(ctx, http.MethodGet, appPath(app)+"/formation", nil, &f); err != nil {
		return nil, err
	}
	return &f, nil
}

// Scale sets the counts of the process types named in counts; the other
// types keep theirs. It returns the whole formation after the change.
func (c *Client) Scale(ctx context.Context, app string, counts map[string]int) (*types.Formation, error) {
	if counts == nil {
		counts = map[string]int{}
	}
	var f types.Formation
	if err := c.do(ctx, http.MethodPut, appPath(app)+"/formation", counts, &f); err != nil {
		return nil, err
	}
	return &f, nil
}

// ListJobs returns an app's jobs, by type then index.
func (c *Client) ListJobs(ctx context.Context, app string) ([]types.Job, error) {
	var jobs []types.Job
	if err := c.do(ctx, http.MethodGet, appPath(app)+"/jobs", nil, &jobs); err != nil {
		return nil, err
	}
	return jobs, nil
}

// AppMetrics returns the app's key series over the last since (a Go
// duration from 1m to 24h; empty means 1h).
func (c *Client) AppMetrics(ctx context.Context, app, since string) (types.AppMetrics, error) {
	path := appPath(app) + "/metrics"
	if since != "" {
		path += "?" + url.Values{"since": {since}}.Encode()
	}
	var m types.AppMetrics
	err := c.do(ctx, http.MethodGet, path, nil, &m)
	return m, err
}

// KillJob kills one job of an app (SIGKILL); the scheduler replaces it,
// or, for a system app's job, the host agent starts its container again.
func (c *Client) KillJob(ctx context.Context, app, job string) error {
	return c.do(ctx, http.MethodDelete, appPath(app)+"/jobs/"+url.PathEscape(job), nil, nil)
}

// Restart replaces every job of processType ("" for every type) with a new
// one, each new job up before an old one stops.
func (c *Client) Restart(ctx context.Context, app, processType string) error {
	return c.do(ctx, http.MethodPost, appPath(app)+"/restart", types.RestartRequest{Type: processType}, nil)
}

// ListRoutes returns an app's routes: the default one first, then the
// custom ones by domain.
func (c *Client) ListRoutes(ctx context.Context, app string) ([]types.Route, error) {
	var routes []types.Route
	if err := c.do(ctx, http.MethodGet, appPath(app)+"/routes", nil, &routes); err != nil {
		return nil, err
	}
	return routes, nil
}

// AddRoute adds a custom route to an app.
func (c *Client) AddRoute(ctx context.Context, app string, req types.RouteRequest) (*types.Route, error) {
	var r types.Route
	if err := c.do(ctx, http.MethodPost, appPath(app)+"/routes", req, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// RemoveRoute removes a custom route of an app.
func (c *Client) RemoveRoute(ctx context.Context, app, domain string) error {
	return c.do(ctx, http.MethodDelete, appPath(app)+"/routes/"+url.PathEscape(domain), nil, nil)
}

// Build sends source, a tar archive (optionally gzipped) of an app's
// source tree such as `git archive` writes, to be built into a slug,
// released and deployed; commit ("" for none) names the commit it is. The
// output lines are passed to output as they come. It returns the outcome
// when the build ran: with a nil error when it succeeded, else with its
// *types.Error (errors.Is(err, types.ErrBuildFailed), ErrDeployFailed, ...).
// A request that fails before the build runs returns no Build. Only ctx
// bounds the call.
func (c *Client) Build(ctx context.Context, app, commit string, source io.Reader, output func(line string)) (*types.Build, error) {
	path := appPath(app) + "/builds"
	if commit != "" {
		path += "?" + url.Values{"commit": {commit}}.Encode()
	}
	resp, err := c.openStream(ctx, http.MethodPost, path, "application/x-ndjson", "application/x-tar", source)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), maxEventLine)
	for sc.Scan() {
		var ev types.BuildEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return nil, fmt.Errorf("POST %s: decode the build stream: %w", path, err)
		}
		switch {
		case ev.Event == types.BuildOutput:
			if output != nil {
				output(ev.Text)
			}
		case ev.Event == types.BuildDone && ev.Build != nil:
			b := ev.Build
			if b.Status == types.BuildSucceeded {
				return b, nil
			}
			e := b.Error
			if e == nil {
				e = types.ErrInternal.WithMessage("the build failed without saying why")
			}
			if sentinel := types.ErrorForCode(e.Code); sentinel != nil {
				e.Status = sentinel.Status
			}
			return b, e
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("POST %s: the build stream broke off: %w", path, err)
	}
	return nil, fmt.Errorf("POST %s: the controller ended the build stream without an outcome", path)
}

func appPath(app string) string {
	return "/v1/apps/" + url.PathEscape(app)
}

// do sends a request with body as JSON (nil: no body) and decodes a
// successful answer into out (nil: ignored).
func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	_, err := c.doHeader(ctx, method, path, body, out)
	return err
}

// doHeader is do that also returns the answer's header.
func (c *Client) doHeader(ctx context.Context, method, path string, body, out any) (http.Header, error) {
	var reqBody io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("%s %s: encode request: %w", method, path, err)
		}
		reqBody = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, reqBody)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if err := c.authorize(req); err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, transportErr(c.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 400 {
		return nil, decodeError(resp)
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return resp.Header, nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return nil, fmt.Errorf("%s %s: decode the answer: %w", method, path, err)
	}
	return resp.Header, nil
}

// openStream sends a request whose answer is a stream (NDJSON, server-sent
// events) on the client without a timeout, and returns the answer of a
// success; the caller closes its body. contentType is body's, "" for none.
func (c *Client) openStream(ctx context.Context, method, path, accept, contentType string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", accept)
	if err := c.authorize(req); err != nil {
		return nil, err
	}
	resp, err := c.stream.Do(req)
	if err != nil {
		return nil, transportErr(c.base, err)
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		return nil, decodeError(resp)
	}
	return resp, nil
}

// authorize adds the client's token to req. A token with a byte no token
// has (a newline, a space, a control character, a byte outside ASCII)
// cannot be sent in a header; it gets an unauthorized error that says so,
// without a request.
func (c *Client) authorize(req *http.Request) error {
	if c.token == "" {
		return nil
	}
	if i := strings.IndexFunc(c.token, func(r rune) bool { return r <= ' ' || r > '~' }); i >= 0 {
		return types.ErrUnauthorized.WithMessage("the API token holds %q at byte %d, which no token has (check GANTRY_TOKEN)", c.token[i:i+1], i+1)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	return nil
}

// transportErr says that the controller at base could not be reached;
// url.Error repeats the method and URL, so only its cause is kept.
func transportErr(base string, err error) error {
	var urlErr *url.Error
	if errors.As(err, &urlErr) {
		err = urlErr.Err
	}
	return fmt.Errorf("cannot reach the controller at %s: %w", base, err)
}

// decodeError turns an error answer into a *types.Error. An answer without
// the API's error body (e.g. from a proxy) gets the generic error of its
// status.
func decodeError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var body types.ErrorBody
	e := &types.Error{}
	if err := json.Unmarshal(b, &body); err == nil && body.Error != nil && body.Error.Code != "" {
		e = body.Error
	} else {
		*e = *types.ErrorForStatus(resp.StatusCode)
		e.Message = resp.Status
		if line := firstLine(b); line != "" {
			e.Message += ": " + line
		}
	}
	e.Status = resp.StatusCode
	if e.Code == types.ErrUnauthorized.Code {
		e.Message += " (check GANTRY_TOKEN)"
	}
	return e
}

func firstLine(b []byte) string {
	line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	const maxRunes = 200
	if r := []rune(line); len(r) > maxRunes {
		line = string(r[:maxRunes]) + "..."
	}
	return line
}
