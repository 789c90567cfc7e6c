package router

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// slowTimeout is the body, send and tunnel timeout of these tests: short,
// so that the tests are quick, with every wait for its effect polled for up
// to 30 s.
const slowTimeout = 500 * time.Millisecond

// dialFrontEnd opens a raw connection to the HTTP listener, or a TLS one
// speaking HTTP/1.1 to the HTTPS listener.
func dialFrontEnd(t *testing.T, tr *testRouter, https bool) net.Conn {
	t.Helper()
	var c net.Conn
	var err error
	if https {
		c, err = tls.Dial("tcp", tr.httpsAddr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	} else {
		c, err = net.Dial("tcp", tr.httpAddr)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedWithin reports whether reading c ends (EOF, reset: the router
// closed it) within d, draining what the router sent before.
func closedWithin(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// TestSlowRequestBody: a client that sends its head and then its body
// slower than the client body timeout is disconnected, and the backend
// connection its request holds is closed.
func TestSlowRequestBody(t *testing.T) {
	e := newEnv(t)
	tr := e.startRouter(func(c *Config) { c.ClientBodyTimeout = slowTimeout })
	var arrived, cut atomic.Int64
	e.serve(tr, "slowbody.test", "slowbody-web", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived.Add(1)
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			cut.Add(1) // the router closed the connection mid-body
		}
	}))
	backend := func() *backend { return tr.table.Load().lookup("slowbody.test").backends[0] }

	for _, fe := range frontEnds {
		t.Run(fe.name, func(t *testing.T) {
			arrivedBefore, cutBefore := arrived.Load(), cut.Load()
			if fe.h2 {
				slowH2Body(t, tr, &arrived, arrivedBefore+1)
			} else {
				c := dialFrontEnd(t, tr, fe.https)
				// More than the router reads ahead, so the body streams
				// to the backend; the first part comes, then nothing.
				fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: slowbody.test\r\nContent-Length: %d\r\n\r\n", 1<<20)
				c.Write(make([]byte, smallBody+1))
				waitFor(t, "request at the backend", 30*time.Second, func() bool { return arrived.Load() == arrivedBefore+1 })
				if !closedWithin(c, 30*time.Second) {
					t.Fatal("client sending no body still connected after 30 s")
				}
			}
			waitFor(t, "backend connection closed", 30*time.Second, func() bool {
				return cut.Load() == cutBefore+1 && backend().inflight.Load() == 0
			})
		})
	}

	t.Run("body read ahead", func(t *testing.T) {
		c := dialFrontEnd(t, tr, false)
		io.WriteString(c, "POST / HTTP/1.1\r\nHost: slowbody.test\r\nContent-Length: 10\r\n\r\nabc")
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("no response: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestTimeout || !resp.Close {
			t.Errorf("status %d, close %v; want 408 and close", resp.StatusCode, resp.Close)
		}
	})
}

// slowH2Body sends a request over HTTP/2 whose body stops after its first
// part, and waits for the router to give up on it.
func slowH2Body(t *testing.T, tr *testRouter, arrived *atomic.Int64, want int64) {
	client, base := frontEndClient(t, tr, true, true)
	pr, pw := io.Pipe()
	t.Cleanup(func() { pw.Close() })
	go pw.Write(make([]byte, smallBody+1))
	req, _ := http.NewRequest(http.MethodPost, base+"/", pr)
	req.Host = "slowbody.test"
	req.ContentLength = 1 << 20
	done := make(chan error, 1)
	go func() {
		resp, err := client.Do(req)
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		done <- err
	}()
	waitFor(t, "request at the backend", 30*time.Second, func() bool { return arrived.Load() == want })
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("HTTP/2 request sending no body still going after 30 s")
	}
}

// TestClientThatStopsReading: a client that stops reading its response is
// cut off after the send timeout, and the backend connection closed.
func TestClientThatStopsReading(t *testing.T) {
	e := newEnv(t)
	tr := e.startRouter(func(c *Config) { c.SendTimeout = slowTimeout })
	var arrived, cut atomic.Int64
	e.serve(tr, "stuck.test", "stuck-web", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived.Add(1)
		block := []byte(strings.Repeat("x", 32<<10))
		for { // until the router closes the connection
			if _, err := w.Write(block); err != nil {
				cut.Add(1)
				return
			}
		}
	}))
	backend := func() *backend { return tr.table.Load().lookup("stuck.test").backends[0] }
	for _, fe := range frontEnds {
		t.Run(fe.name, func(t *testing.T) {
			arrivedBefore, cutBefore := arrived.Load(), cut.Load()
			var c net.Conn
			if fe.h2 {
				client, base := frontEndClient(t, tr, true, true)
				client.Timeout = 0 // the client just stops reading
				req, _ := http.NewRequest(http.MethodGet, base+"/", nil)
				req.Host = "stuck.test"
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { resp.Body.Close() })
			} else {
				c = dialFrontEnd(t, tr, fe.https)
				io.WriteString(c, "GET / HTTP/1.1\r\nHost: stuck.test\r\n\r\n")
			}
			waitFor(t, "request at the backend", 30*time.Second, func() bool { return arrived.Load() == arrivedBefore+1 })
			waitFor(t, "backend connection closed", 30*time.Second, func() bool {
				return cut.Load() == cutBefore+1 && backend().inflight.Load() == 0
			})
			if c != nil && !closedWithin(c, 30*time.Second) {
				t.Fatal("client connection still open after 30 s")
			}
		})
	}
}

// TestTunnelIdleTimeout: an upgraded connection stays open while bytes go
// either way, and closes once none has for the tunnel idle timeout.
func TestTunnelIdleTimeout(t *testing.T) {
	const idle = 2 * time.Second
	e := newEnv(t)
	tr := e.startRouter(func(c *Config) { c.TunnelIdleTimeout = idle })
	up := websocket.Upgrader{}
	e.serve(tr, "tunnel.test", "tunnel-web", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for { // an echo that only ever answers
			typ, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			if err := c.WriteMessage(typ, msg); err != nil {
				return
			}
		}
	}))
	for _, tc := range []struct{ name, url, addr string }{
		{"ws", "ws://tunnel.test/", tr.httpAddr},
		{"wss", "wss://tunnel.test/", tr.httpsAddr},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := websocket.Dialer{NetDialContext: dialTo(tc.addr), TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, HandshakeTimeout: 10 * time.Second}
			c, _, err := d.Dial(tc.url, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			// Busy for well over the idle timeout: the tunnel stays.
			for start := time.Now(); time.Since(start) < 2*idle; time.Sleep(idle / 20) {
				c.SetReadDeadline(time.Now().Add(30 * time.Second))
				if err := c.WriteMessage(websocket.TextMessage, []byte("ping")); err != nil {
					t.Fatalf("busy tunnel closed: %v", err)
				}
				if _, msg, err := c.ReadMessage(); err != nil || string(msg) != "ping" {
					t.Fatalf("busy tunnel: %q %v", msg, err)
				}
			}
			// Then quiet: the router closes it.
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			_, _, err = c.ReadMessage()
			var ne net.Error
			if err == nil || errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("idle tunnel still open after 30 s (read: %v)", err)
			}
		})
	}
	waitFor(t, "upgraded connections closed", 30*time.Second, func() bool {
		tr.upMu.Lock()
		defer tr.upMu.Unlock()
		return len(tr.upgrades) == 0
	})
}

// TestConnectionCap: beyond MaxConns a new connection is refused (an HTTP
// one with a 503) and counted, and one is accepted again once one closes.
func TestConnectionCap(t *testing.T) {
	e := newEnv(t)
	tr := e.startRouter(func(c *Config) { c.MaxConns = 2 })
	e.serve(tr, "cap.test", "cap-web", describeBackend)
	held := []net.Conn{dialFrontEnd(t, tr, false), dialFrontEnd(t, tr, true)}
	waitFor(t, "two connections counted", 30*time.Second, func() bool { return tr.conns.open.Load() == 2 })

	for _, https := range []bool{false, true} {
		c, err := net.Dial("tcp", map[bool]string{false: tr.httpAddr, true: tr.httpsAddr}[https])
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		got, _ := io.ReadAll(c) // a 503, or a close (reset) for HTTPS or a lost race
		if len(got) > 0 && !strings.HasPrefix(string(got), "HTTP/1.1 503 ") {
			t.Errorf("connection beyond the cap got %q", got)
		}
		if !https && !strings.HasPrefix(string(got), "HTTP/1.1 503 ") {
			t.Logf("HTTP connection beyond the cap closed without its 503 (%q)", got)
		}
	}
	if n := tr.conns.refused.Load(); n != 2 {
		t.Errorf("%d refusals counted, want 2", n)
	}

	held[0].Close()
	waitFor(t, "closed connection counted out", 30*time.Second, func() bool { return tr.conns.open.Load() == 1 })
	rc := dialRaw(t, tr.httpAddr)
	rc.send("GET /again HTTP/1.1\r\nHost: cap.test\r\n\r\n")
	if resp, body := rc.read("GET"); resp.StatusCode != 200 || body != "GET /again 0" {
		t.Errorf("below the cap again: %d %q", resp.StatusCode, body)
	}
}
