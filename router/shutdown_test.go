package router

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

func TestShutdownDrains(t *testing.T) {
	e := newEnv(t)
	tr := e.startRouter(func(c *Config) {
		// Long enough that a loaded machine still gets requests in
		// during the delay.
		c.ShutdownDelay = 5 * time.Second
		c.ShutdownGrace = 10 * time.Second
	})
	release := make(chan struct{})
	var releaseOnce sync.Once
	releaseSlow := func() { releaseOnce.Do(func() { close(release) }) }
	started := make(chan struct{}, 1)
	e.serve(tr, "slow.test", "slow-web", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			started <- struct{}{}
			<-release
		}
		io.WriteString(w, "done")
	}))
	// Registered after the backend's cleanup, so it runs first: the
	// backend's Close waits for the slow handler, which must never be left
	// blocked when the test ends early.
	t.Cleanup(releaseSlow)
	client := httpClient(t)
	slow := make(chan string, 1)
	go func() {
		status, body, _, err := tr.get(t, client, "slow.test", "/slow")
		if err != nil {
			slow <- err.Error()
			return
		}
		slow <- http.StatusText(status) + " " + body
	}()
	select {
	case <-started:
	case msg := <-slow:
		t.Fatalf("slow request ended before its handler ran: %s", msg)
	case <-time.After(30 * time.Second):
		t.Fatal("slow request did not reach its backend within 30s")
	}

	stopped := make(chan error, 1)
	go func() { stopped <- tr.stop() }()

	// During the delay new connections are still served, with keep-alive
	// off so clients move on.
	d := waitFor(t, "responses with Connection: close", 30*time.Second, func() bool {
		req, _ := http.NewRequest(http.MethodGet, "http://"+tr.httpAddr+"/", nil)
		req.Host = "slow.test"
		// A new connection each time: a pooled one may be an idle
		// connection the router closed when the stop began, which says
		// nothing about new connections.
		fresh := &http.Transport{}
		defer fresh.CloseIdleConnections()
		resp, err := fresh.RoundTrip(req)
		if err != nil {
			t.Fatalf("request during the shutdown delay: %v", err)
		}
		resp.Body.Close()
		return resp.StatusCode == 200 && resp.Close
	})
	t.Logf("keep-alive off %v after the stop", d)

	// Then the listener closes...
	d = waitFor(t, "listener closed", 30*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", tr.httpAddr, time.Second)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
	t.Logf("listener closed %v later", d)
	select {
	case err := <-stopped:
		t.Fatalf("Serve returned (%v) while a request was in flight", err)
	default:
	}

	// ... and the in-flight request still finishes.
	releaseSlow()
	if got := <-slow; got != "OK done" {
		t.Errorf("in-flight request: %q", got)
	}
	if err := <-stopped; err != nil {
		t.Errorf("Serve: %v", err)
	}
}

func TestShutdownGraceClosesUpgrades(t *testing.T) {
	e := newEnv(t)
	tr := e.startRouter(func(c *Config) {
		c.ShutdownDelay = -1
		c.ShutdownGrace = 200 * time.Millisecond
	})
	up := websocket.Upgrader{}
	e.serve(tr, "ws.test", "ws-web", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				return
			}
		}
	}))
	d := websocket.Dialer{NetDialContext: dialTo(tr.httpAddr), HandshakeTimeout: 5 * time.Second}
	c, _, err := d.Dial("ws://ws.test/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	done := make(chan error, 1)
	go func() { done <- tr.stop() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after the grace period with a websocket open")
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := c.ReadMessage(); err == nil {
		t.Error("websocket still open after shutdown")
	}
}

// TestShutdownServesOpenedConnection: a connection opened before the
// listener closed, whose request comes only after the shutdown began, is
// answered, not closed unanswered.
func TestShutdownServesOpenedConnection(t *testing.T) {
	e := newEnv(t)
	tr := e.startRouter(nil) // no shutdown delay
	e.serve(tr, "app.test", "app-web", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "done")
	}))
	c, err := net.DialTimeout("tcp", tr.httpAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	stopped := make(chan error, 1)
	go func() { stopped <- tr.stop() }()
	waitFor(t, "listener closed", 30*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", tr.httpAddr, time.Second)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: app.test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("request on a connection opened before the shutdown: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "done" || !resp.Close {
		t.Errorf("got %d %q (close %v), want 200 done with Connection: close", resp.StatusCode, body, resp.Close)
	}
	if err := <-stopped; err != nil {
		t.Errorf("Serve: %v", err)
	}
}
