package host

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/gantryhq/gantry/layer0/keyspace"
)

// proxyCloseWait is how long a TCP check waits for the connection to be
// closed on it. Docker's userland proxy accepts a connection on a published
// port even when nothing listens in the container, and closes it right
// after failing to reach the container.
const proxyCloseWait = 250 * time.Millisecond

// probe runs one readiness check of the job listening at addr: an HTTP GET
// of h.Path (2xx and 3xx pass) or, without a path, a TCP connect that the
// other side keeps open.
func probe(ctx context.Context, addr string, h keyspace.HealthCheck) error {
	if addr == "" {
		return errors.New("no published address")
	}
	ctx, cancel := context.WithTimeout(ctx, checkTimeout(h))
	defer cancel()
	if h.Path != "" {
		return probeHTTP(ctx, addr, h.Path)
	}
	return probeTCP(ctx, addr)
}

// checkClient does not follow redirects (a 3xx passes) and keeps no idle
// connections, so every check opens a connection to the instance.
var checkClient = &http.Client{
	Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

func probeHTTP(ctx context.Context, addr, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return fmt.Errorf("health check: %w", err)
	}
	req.Header.Set("User-Agent", "gantry-health-check")
	resp, err := checkClient.Do(req)
	if err != nil {
		return fmt.Errorf("health check GET %s: %w", path, err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 399 {
		return fmt.Errorf("health check GET %s: status %d", path, resp.StatusCode)
	}
	return nil
}

func probeTCP(ctx context.Context, addr string) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("health check: connect: %w", err)
	}
	defer conn.Close()
	wait := time.Now().Add(proxyCloseWait)
	if dl, ok := ctx.Deadline(); ok && dl.Before(wait) {
		wait = dl
	}
	conn.SetReadDeadline(wait)
	var b [1]byte
	_, err = conn.Read(b[:])
	var ne net.Error
	if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		return nil // open, and either talking or waiting for us
	}
	return fmt.Errorf("health check: connection closed by the other side: %w", err)
}
