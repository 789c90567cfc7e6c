package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
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
