package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/gantryhq/gantry/layer1/controller/types"
)

// GetDeploySettings returns how an app's releases are deployed.
func (c *Client) GetDeploySettings(ctx context.Context, app string) (*types.DeploySettings, error) {
	var st types.DeploySettings
	if err := c.do(ctx, http.MethodGet, appPath(app)+"/deploy", nil, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// UpdateDeploySettings changes the deploy settings that req names and
// returns them all.
func (c *Client) UpdateDeploySettings(ctx context.Context, app string, req types.DeploySettingsRequest) (*types.DeploySettings, error) {
	var st types.DeploySettings
	if err := c.do(ctx, http.MethodPatch, appPath(app)+"/deploy", req, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// ListDeployments returns an app's latest deployments, newest first.
func (c *Client) ListDeployments(ctx context.Context, app string) ([]types.Deployment, error) {
	var deps []types.Deployment
	if err := c.do(ctx, http.MethodGet, appPath(app)+"/deployments", nil, &deps); err != nil {
		return nil, err
	}
	return deps, nil
}

// GetDeployment returns one deployment of an app.
func (c *Client) GetDeployment(ctx context.Context, app, id string) (*types.Deployment, error) {
	var d types.Deployment
	if err := c.do(ctx, http.MethodGet, deploymentPath(app, id), nil, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

func deploymentPath(app, id string) string {
	return appPath(app) + "/deployments/" + url.PathEscape(id)
}

// CreateReleaseDeployment is CreateRelease that also returns the ID of the
// release's deployment.
func (c *Client) CreateReleaseDeployment(ctx context.Context, app string, req types.ReleaseRequest) (*types.Release, string, error) {
	var rel types.Release
	h, err := c.doHeader(ctx, http.MethodPost, appPath(app)+"/releases", req, &rel)
	if err != nil {
		return nil, "", err
	}
	return &rel, h.Get(types.DeploymentHeader), nil
}

// RollbackDeployment is Rollback that also returns the ID of the new
// release's deployment.
func (c *Client) RollbackDeployment(ctx context.Context, app string, version int) (*types.Release, string, error) {
	var rel types.Release
	h, err := c.doHeader(ctx, http.MethodPost, appPath(app)+"/rollback", types.RollbackRequest{Version: version}, &rel)
	if err != nil {
		return nil, "", err
	}
	return &rel, h.Get(types.DeploymentHeader), nil
}

// UpdateConfigDeployment is UpdateConfig that also returns the ID of the
// deployment of the release the change made; "" when it made none (the
// app has no release, or nothing changed).
func (c *Client) UpdateConfigDeployment(ctx context.Context, app string, changes map[string]*string) (map[string]string, string, error) {
	if changes == nil {
		changes = map[string]*string{}
	}
	var config map[string]string
	h, err := c.doHeader(ctx, http.MethodPatch, appPath(app)+"/config", changes, &config)
	if err != nil {
		return nil, "", err
	}
	return config, h.Get(types.DeploymentHeader), nil
}

// FollowDeployment follows a deployment's server-sent events: progress is
// called with the deployment as it is now and after each change, and the
// deployment is returned once it has ended. Only ctx bounds the call; a
// stream that breaks off (e.g. the controller restarts) is an error.
func (c *Client) FollowDeployment(ctx context.Context, app, id string, progress func(types.Deployment)) (*types.Deployment, error) {
	path := deploymentPath(app, id) + "/events"
	resp, err := c.openStream(ctx, http.MethodGet, path, "text/event-stream", "", nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var last *types.Deployment
	err = ReadEvents(resp.Body, func(ev Event) error {
		if ev.Event != types.DeploymentEventProgress && ev.Event != types.DeploymentEventEnd {
			return nil
		}
		var d types.Deployment
		if err := json.Unmarshal([]byte(ev.Data), &d); err != nil {
			return fmt.Errorf("decode a deployment event: %w", err)
		}
		last = &d
		if progress != nil {
			progress(d)
		}
		if ev.Event == types.DeploymentEventEnd {
			return errEndOfEvents
		}
		return nil
	})
	switch {
	case errors.Is(err, errEndOfEvents):
		return last, nil
	case err != nil:
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	return nil, fmt.Errorf("GET %s: the event stream ended before the deployment did", path)
}

// errEndOfEvents stops ReadEvents at the last event of a deployment.
var errEndOfEvents = errors.New("end of events")

// Event is one server-sent event.
type Event struct {
	ID    string
	Event string
	// Data is the event's data lines joined with newlines.
	Data string
}

// ReadEvents parses a text/event-stream from r and calls fn for each
// event (comments and events without data are skipped), until r ends
// (nil) or fn returns an error (returned as is). Lines are at most
// maxEventLine bytes.
func ReadEvents(r io.Reader, fn func(Event) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxEventLine)
	var ev Event
	var data []string
	hasData := false
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			if hasData {
				ev.Data = strings.Join(data, "\n")
				if err := fn(ev); err != nil {
					return err
				}
			}
			ev, data, hasData = Event{}, nil, false
			continue
		}
		if strings.HasPrefix(line, ":") {
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "event":
			ev.Event = value
		case "data":
			data = append(data, value)
			hasData = true
		case "id":
			ev.ID = value
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read the event stream: %w", err)
	}
	return nil
}
