package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
)

// RemoveAppVolumes removes the volumes of app on the agent's host (its
// build cache), as when the app is deleted. A volume that a running job
// uses is left, with an *Error of code conflict.
func (c *Client) RemoveAppVolumes(ctx context.Context, app string) error {
	ctx, cancel := context.WithTimeout(ctx, RequestTimeout)
	defer cancel()
	resp, err := c.do(ctx, http.MethodDelete, "/v1/apps/"+url.PathEscape(app)+"/volumes")
	if err != nil {
		return fmt.Errorf("remove the volumes of %s: %w", app, err)
	}
	resp.Body.Close()
	return nil
}

// GC asks the agent to remove what its host no longer needs (see
// GCRequest) and returns what it removed.
func (c *Client) GC(ctx context.Context, req GCRequest) (GCResult, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return GCResult{}, fmt.Errorf("host gc: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, RequestTimeout)
	defer cancel()
	resp, err := c.send(ctx, http.MethodPost, "/v1/gc", body)
	if err != nil {
		return GCResult{}, fmt.Errorf("host gc: %w", err)
	}
	defer resp.Body.Close()
	var res GCResult
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		return GCResult{}, fmt.Errorf("host gc: decode: %w", err)
	}
	return res, nil
}
