package readiness

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"
)

// TestSignal serves a readiness socket: the check fails before Ready and
// passes after; a closed socket, or none, fails it.
func TestSignal(t *testing.T) {
	path := filepath.Join(t.TempDir(), SocketName)
	check := func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		return Check(ctx, path, "/healthz")
	}
	if err := check(); err == nil {
		t.Fatal("check passed with no socket")
	}
	s, err := Serve(path, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := check(); err == nil {
		t.Error("check passed before Ready")
	}
	s.Ready()
	if err := check(); err != nil {
		t.Errorf("check after Ready: %v", err)
	}
	s.Close()
	if err := check(); err == nil {
		t.Error("check passed after Close")
	}
	// A socket file left by a killed process is replaced.
	again, err := Serve(path, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("serve over a left socket: %v", err)
	}
	again.Ready()
	if err := check(); err != nil {
		t.Errorf("check of the second signal: %v", err)
	}
	again.Close()
}

// TestFromEnvWithout returns a signal that serves nothing when the job has
// no readiness socket.
func TestFromEnvWithout(t *testing.T) {
	t.Setenv(EnvSocket, "")
	s, err := FromEnv(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	s.Ready()
	s.Close()
}
