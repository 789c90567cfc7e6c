package client

import (
	"context"
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
