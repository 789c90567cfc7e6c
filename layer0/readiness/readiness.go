// Package readiness is a job's own readiness signal to its host agent.
//
// A health check that connects to a job's port cannot tell two jobs apart
// when they share the port: the platform's roles on the host's network
// bind theirs with SO_REUSEPORT (or, the router, take it over from the
// running job), so during a deployment the old job would answer the new
// one's check. A job whose spec asks for it (keyspace.HealthCheck.Socket)
// gets instead a directory of its own from the agent, mounted at MountDir,
// and the path of a Unix socket in it in EnvSocket; the process serves
// HTTP there (Serve) and answers 200 once it says it is ready (Signal's
// Ready), 503 before. The agent's check is a GET over that socket, which
// only this job's process can answer.
package readiness

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"
)

// EnvSocket names the environment variable holding the socket's path in
// the job's container.
const EnvSocket = "GANTRY_READY_SOCKET"

// MountDir is where the agent mounts the job's readiness directory in its
// container; SocketName is the socket's name in it.
const (
	MountDir   = "/run/gantry-ready"
	SocketName = "ready.sock"
)

// Signal is a process's readiness, served on its socket.
type Signal struct {
	ready atomic.Bool
	srv   *http.Server
	done  chan struct{}
}

// FromEnv serves the readiness of this process on the socket named by
// EnvSocket, until Close. Without the variable it returns a Signal that
// serves nothing (Ready and Close still work): the process was started
// without a readiness check of its own.
func FromEnv(log *slog.Logger) (*Signal, error) {
	path := os.Getenv(EnvSocket)
	if path == "" {
		return &Signal{}, nil
	}
	return Serve(path, log)
}

// Serve serves the readiness of this process on a Unix socket at path (a
// file left there is replaced), until Close.
func Serve(path string, log *slog.Logger) (*Signal, error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("readiness socket: %w", err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("readiness socket: %w", err)
	}
	s := &Signal{done: make(chan struct{})}
	s.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !s.ready.Load() {
				http.Error(w, "not ready", http.StatusServiceUnavailable)
				return
			}
			w.Write([]byte("ready\n"))
		}),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Warn("readiness socket stopped", "path", path, "err", err)
		}
	}()
	log.Debug("readiness served on its socket", "path", path)
	return s, nil
}

// Ready marks the process ready: the check passes from now on.
func (s *Signal) Ready() { s.ready.Store(true) }

// Close stops serving the socket (and removes it).
func (s *Signal) Close() {
	if s.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if s.srv.Shutdown(ctx) != nil {
		s.srv.Close()
	}
	<-s.done
}

// Check asks the process serving the socket at path whether it is ready:
// a GET of urlPath ("/" when empty) that must answer 2xx, within ctx.
func Check(ctx context.Context, path, urlPath string) error {
	if urlPath == "" {
		urlPath = "/"
	}
	tr := &http.Transport{
		Proxy:             nil,
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://job"+urlPath, nil)
	if err != nil {
		return fmt.Errorf("readiness check: %w", err)
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return fmt.Errorf("readiness check: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("readiness check: status %d", resp.StatusCode)
	}
	return nil
}
