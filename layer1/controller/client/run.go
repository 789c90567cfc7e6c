package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/gantryhq/gantry/layer0/host/attach"
	"github.com/gantryhq/gantry/layer1/controller/types"
)

// runHandshakeTimeout bounds the wait for an attached run to start: the
// scheduler places the job (up to 2 minutes), then its host fetches the
// slug and creates the container (up to 6 minutes).
const runHandshakeTimeout = 10 * time.Minute

// RunDetached starts a one-off job of app's current release in the
// background (req.Detach is set) and returns it; its output goes to the
// app's logs.
func (c *Client) RunDetached(ctx context.Context, app string, req types.RunRequest) (*types.RunJob, error) {
	req.Detach, req.TTY, req.Rows, req.Cols = true, false, 0, 0
	var job types.RunJob
	if err := c.do(ctx, http.MethodPost, appPath(app)+"/run", req, &job); err != nil {
		return nil, err
	}
	return &job, nil
}

// Run starts a one-off job of app's current release attached to the
// caller, and returns the connection, switched to the frames of package
// attach, and the job's ID. The job starts once Run returns: send stdin,
// resize and signal frames, read output frames until the exit frame, then
// close the connection (closing it earlier kills the job). ctx bounds the
// wait for the job to start, not the connection.
func (c *Client) Run(ctx context.Context, app string, req types.RunRequest) (*attach.Conn, string, error) {
	req.Detach = false
	path := appPath(app) + "/run"
	body, err := json.Marshal(req)
	if err != nil {
		return nil, "", fmt.Errorf("POST %s: encode request: %w", path, err)
	}
	hreq, err := http.NewRequest(http.MethodPost, c.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, "", fmt.Errorf("POST %s: %w", path, err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	if err := c.authorize(hreq); err != nil {
		return nil, "", err
	}
	conn, resp, err := attach.Dial(ctx, hreq, runHandshakeTimeout)
	if err != nil {
		return nil, "", transportErr(c.base, err)
	}
	if conn == nil {
		return nil, "", decodeError(resp)
	}
	return conn, resp.Header.Get("Gantry-Job"), nil
}
