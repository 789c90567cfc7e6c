package up

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"
)

// waitHealthy polls url until it answers 200, ctx is done, or timeout
// passes.
func waitHealthy(ctx context.Context, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("health check %s: %w", url, err)
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not healthy: %w (last: %v)", url, ctx.Err(), lastErr)
		case <-tick.C:
		}
	}
}

// waitListening polls until addr (host:port) accepts a TCP connection, ctx
// is done, or timeout passes; what names the listener in the error.
func waitListening(ctx context.Context, what, addr string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	dialer := &net.Dialer{Timeout: 2 * time.Second}
	var lastErr error
	for {
		conn, err := dialer.DialContext(ctx, "tcp", addr)
		if err == nil {
			conn.Close()
			return nil
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("the %s on %s does not listen: %w (last: %v)", what, addr, ctx.Err(), lastErr)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
