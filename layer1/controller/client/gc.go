package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/gantryhq/gantry/layer1/controller/types"
)

// GCTimeout bounds GC: a collection of a large cluster takes longer than
// Timeout.
const GCTimeout = 15 * time.Minute

// GC runs a garbage collection now (admin only) and returns its report.
func (c *Client) GC(ctx context.Context) (*types.GCReport, error) {
	ctx, cancel := context.WithTimeout(ctx, GCTimeout)
	defer cancel()
	resp, err := c.openStream(ctx, http.MethodPost, "/v1/gc", "application/json", "", nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var rep types.GCReport
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		return nil, fmt.Errorf("POST /v1/gc: decode the answer: %w", err)
	}
	return &rep, nil
}

// ListHosts returns the cluster's hosts with their CPU, memory and disk
// use (admin only).
func (c *Client) ListHosts(ctx context.Context) ([]types.Host, error) {
	var hosts []types.Host
	if err := c.do(ctx, http.MethodGet, "/v1/hosts", nil, &hosts); err != nil {
		return nil, err
	}
	return hosts, nil
}

// DrainHost drains a host (admin only): it takes no new job, and its jobs
// move to other hosts, each new job up before the old one stops.
func (c *Client) DrainHost(ctx context.Context, host string) (*types.HostDrain, error) {
	var out types.HostDrain
	if err := c.do(ctx, http.MethodPost, "/v1/hosts/"+url.PathEscape(host)+"/drain", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// UndrainHost makes a drained host take new jobs again (admin only).
func (c *Client) UndrainHost(ctx context.Context, host string) (*types.HostDrain, error) {
	var out types.HostDrain
	if err := c.do(ctx, http.MethodPost, "/v1/hosts/"+url.PathEscape(host)+"/undrain", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RemoveHost forgets a host that is down (admin only); its jobs are
// placed elsewhere.
func (c *Client) RemoveHost(ctx context.Context, host string) (*types.HostRemoval, error) {
	var out types.HostRemoval
	if err := c.do(ctx, http.MethodDelete, "/v1/hosts/"+url.PathEscape(host), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
