package router

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gantryhq/gantry/router/types"
)

func TestResponseHeaderTimeout(t *testing.T) {
	e := newEnv(t)
	tr := e.startRouter(func(c *Config) { c.ResponseHeaderTimeout = 300 * time.Millisecond })
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	e.serve(tr, "slow.test", "slow-web", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	status, body, _, err := tr.get(t, httpClient(t), "slow.test", "/")
	if err != nil || status != http.StatusGatewayTimeout || !strings.Contains(body, "took too long") {
		t.Errorf("got %d %q %v, want 504", status, body, err)
	}
}

func TestClientGoneReleasesBackend(t *testing.T) {
	e := newEnv(t)
	tr := e.startRouter(nil)
	var arrived, closed atomic.Int64
	e.serve(tr, "hang.test", "hang-web", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived.Add(1)
		<-r.Context().Done() // the router closed the connection
		closed.Add(1)
	}))
	b := func() *backend { return tr.table.Load().lookup("hang.test").backends[0] }
	tlsConf := &tls.Config{InsecureSkipVerify: true}
	// The router's own HTTP/1.1 server watches the client's socket,
	// net/http's (HTTPS) its request context.
	for i, tc := range []struct {
		name, url string
		rt        *http.Transport
	}{
		{"http", "http://" + tr.httpAddr + "/", &http.Transport{}},
		{"https http/1.1", "https://" + tr.httpsAddr + "/", &http.Transport{TLSClientConfig: tlsConf}},
		{"https http/2", "https://" + tr.httpsAddr + "/", &http.Transport{TLSClientConfig: tlsConf, ForceAttemptHTTP2: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer tc.rt.CloseIdleConnections()
			ctx, cancel := context.WithCancel(context.Background())
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, tc.url, nil)
			req.Host = "hang.test"
			done := make(chan struct{})
			go func() {
				defer close(done)
				if resp, err := tc.rt.RoundTrip(req); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}()
			waitFor(t, "request at the backend", 30*time.Second, func() bool { return arrived.Load() == int64(i+1) })
			cancel()
			<-done
			d := waitFor(t, "backend connection released", 30*time.Second, func() bool {
				return closed.Load() == int64(i+1) && b().inflight.Load() == 0
			})
			t.Logf("backend released %v after the client left", d)
		})
	}
}

func TestStaleIdleDeadlineDoesNotDropConnection(t *testing.T) {
	// A pooled connection keeps the last request's read deadline; once it
	// has passed, reusing the connection must still work.
	e := newEnv(t)
	tr := e.startRouter(nil)
	var conns atomic.Int64
	b := newEchoBackend(t, "b", func(s *http.Server) {
		s.ConnState = func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				conns.Add(1)
			}
		}
	})
	e.register("idle-web", "j", b.addr())
	e.putRoute(types.Route{Domain: "idle.test", App: "idle", Service: "idle-web"})
	client := httpClient(t)
	waitFor(t, "route", 30*time.Second, func() bool {
		status, _, _, _ := tr.get(t, client, "idle.test", "/")
		return status == 200
	})
	be := tr.table.Load().lookup("idle.test").backends[0]
	waitFor(t, "pooled connection's deadline passed", 30*time.Second, func() bool {
		be.mu.Lock()
		defer be.mu.Unlock()
		return len(be.idle) == 1 && tr.now()-be.idle[0].idleAt > int64(cancelCheck+100*time.Millisecond)
	})
	if status, _, _, _ := tr.get(t, client, "idle.test", "/"); status != 200 {
		t.Fatalf("status %d", status)
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("backend saw %d connections, want the pooled one reused", n)
	}
}

// rawRequest writes head (and then body from a goroutine, when not nil) on
// a new connection to addr and reads the response.
func rawRequest(t *testing.T, addr, head string, body io.Reader) *http.Response {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	if body != nil {
		go io.Copy(c, body) // ends with an error once the router closes
	}
	// A bound on a broken router, not a measurement.
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	return resp
}

func TestStreamedBodyFailures(t *testing.T) {
	e := newEnv(t)
	tr := e.startRouter(func(c *Config) { c.ResponseHeaderTimeout = 300 * time.Millisecond })

	t.Run("malformed chunked body from the client is a 400", func(t *testing.T) {
		bodyErr := make(chan error, 1)
		e.serve(tr, "badbody.test", "badbody-web", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, err := io.Copy(io.Discard, r.Body)
			bodyErr <- err
		}))
		resp := rawRequest(t, tr.httpAddr, "POST / HTTP/1.1\r\nHost: badbody.test\r\nTransfer-Encoding: chunked\r\n\r\n"+
			"5\r\nhello\r\nnot-hex\r\n", nil)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("status %d, want 400", resp.StatusCode)
		}
		if err := <-bodyErr; err == nil {
			t.Error("the backend read the cut body as complete")
		}
	})

	t.Run("backend that stops reading the body is a 504", func(t *testing.T) {
		release := make(chan struct{})
		t.Cleanup(func() { close(release) })
		stuck := newRawBackend(t, func(c *net.TCPConn, req *http.Request) { <-release })
		e.register("stuck-web", "job-stuck", stuck.addr())
		e.putRoute(types.Route{Domain: "stuck.test", App: "stuck", Service: "stuck-web"})
		waitFor(t, "route stuck.test", 30*time.Second, func() bool {
			tg := tr.table.Load().lookup("stuck.test")
			return tg != nil && len(tg.backends) > 0
		})
		const size = 1 << 30 // more than any socket buffers hold
		resp := rawRequest(t, tr.httpAddr, fmt.Sprintf("PUT / HTTP/1.1\r\nHost: stuck.test\r\nContent-Length: %d\r\n\r\n", size),
			io.LimitReader(zeroReader{}, size))
		resp.Body.Close()
		if resp.StatusCode != http.StatusGatewayTimeout {
			t.Errorf("status %d, want 504", resp.StatusCode)
		}
	})
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
