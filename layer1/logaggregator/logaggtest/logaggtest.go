// Package logaggtest runs a real log aggregator for the tests of the
// packages that talk to one (the controller, the CLI).
package logaggtest

import (
	"context"
	"net"
	"testing"

	"github.com/gantryhq/gantry/layer1/logaggregator"
)

// Start serves a log aggregator that accepts token on a loopback port,
// with its data in a temporary directory, until the test ends, and returns
// its URL.
func Start(t testing.TB, token string) string {
	t.Helper()
	srv, err := logaggregator.New(logaggregator.Config{DataDir: t.TempDir(), Token: token})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		srv.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("log aggregator: %v", err)
		}
		srv.Close()
	})
	return "http://" + ln.Addr().String()
}
