package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gantryhq/gantry/layer0/host/attach"
)

// AttachTimeout bounds the wait for the agent to accept an attach: it
// answers once the job's container is created, after its artifacts are
// fetched.
const AttachTimeout = 6 * time.Minute

// Attach attaches to an attached one-off job (keyspace.JobSpec.Attach):
// POST /v1/jobs/{id}/attach, switched to the frames of package attach once
// the job's container is created. The job starts once Attach returns; the
// caller sends stdin, resize and signal frames, reads output frames until
// the exit frame, and closes the connection. Only ctx and AttachTimeout
// bound the wait for the switch.
func (c *Client) Attach(ctx context.Context, id string) (*attach.Conn, error) {
	req, err := http.NewRequest(http.MethodPost, c.base+"/v1/jobs/"+url.PathEscape(id)+"/attach", nil)
	if err != nil {
		return nil, fmt.Errorf("attach to job %s: %w", id, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	conn, resp, err := attach.Dial(ctx, req, AttachTimeout)
	if err != nil {
		return nil, fmt.Errorf("attach to job %s: %w", id, err)
	}
	if conn != nil {
		return conn, nil
	}
	body, _ := io.ReadAll(resp.Body)
	var eb ErrorBody
	if json.Unmarshal(body, &eb) == nil && eb.Error != nil && eb.Error.Code != "" {
		eb.Error.Status = resp.StatusCode
		return nil, eb.Error
	}
	return nil, &Error{Status: resp.StatusCode, Code: codeOfStatus(resp.StatusCode), Message: strings.TrimSpace(string(body))}
}
