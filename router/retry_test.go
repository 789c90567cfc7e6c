package router

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gantryhq/gantry/router/types"
)

// rawBackend is a TCP server that reads one request per connection and
// hands it to handle, to script failures net/http would not produce.
type rawBackend struct {
	ln    net.Listener
	count atomic.Int64 // requests whose head was read
}

func newRawBackend(t *testing.T, handle func(c *net.TCPConn, req *http.Request)) *rawBackend {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &rawBackend{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				b.count.Add(1)
				handle(c.(*net.TCPConn), req)
			}()
		}
	}()
	return b
}

func (b *rawBackend) addr() string { return b.ln.Addr().String() }

// reset closes c with a TCP reset, as a crashing process's kernel would.
func reset(c *net.TCPConn) {
	c.SetLinger(0)
	c.Close()
}

// refusedAddr returns a loopback address nobody listens on.
func refusedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestRetryRules(t *testing.T) {
	e := newEnv(t)
	tr := e.startRouter(nil)
	client := httpClient(t)

	// route sends host's requests to the given backend addresses and waits
	// until the router sees all of them.
	n := 0
	route := func(addrs ...string) string {
		n++
		app := fmt.Sprintf("app%d", n)
		for i, a := range addrs {
			e.register(app+"-web", fmt.Sprintf("job%d", i), a)
		}
		e.putRoute(types.Route{Domain: app + ".test", App: app, Service: app + "-web"})
		waitFor(t, "route "+app, 30*time.Second, func() bool {
			tg := tr.table.Load().lookup(app + ".test")
			return tg != nil && len(tg.backends) == len(addrs)
		})
		return app + ".test"
	}
	do := func(method, host string, body io.Reader) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, "http://"+tr.httpAddr+"/", body)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, host, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	t.Run("refused connection goes to another backend", func(t *testing.T) {
		good := newEchoBackend(t, "good")
		host := route(refusedAddr(t), good.addr())
		for i := range 20 {
			if status, body := do(http.MethodPost, host, strings.NewReader("payload")); status != 200 || body != "good" {
				t.Fatalf("POST %d: %d %q", i, status, body)
			}
		}
		if got := good.count.Load(); got != 20 {
			t.Errorf("good backend got %d POSTs, want 20 (each exactly once)", got)
		}
	})

	t.Run("POST not retried once its body reached a backend", func(t *testing.T) {
		dier := newRawBackend(t, func(c *net.TCPConn, req *http.Request) {
			io.Copy(io.Discard, req.Body)
			reset(c)
		})
		good := newEchoBackend(t, "good")
		host := route(dier.addr(), good.addr())
		var ok, bad int64
		for range 100 {
			switch status, _ := do(http.MethodPost, host, strings.NewReader("payload")); status {
			case 200:
				ok++
			case 502:
				bad++
			default:
				t.Fatalf("status %d", status)
			}
			if dier.count.Load() > 0 {
				break
			}
		}
		t.Logf("200: %d, 502: %d, dying backend saw %d, good backend %d", ok, bad, dier.count.Load(), good.count.Load())
		if dier.count.Load() == 0 {
			t.Fatal("the dying backend never got a request")
		}
		if bad != dier.count.Load() || good.count.Load() != ok {
			t.Errorf("a POST that reached the dying backend was sent again")
		}
	})

	t.Run("POST not retried once its streamed body started", func(t *testing.T) {
		dier := newRawBackend(t, func(c *net.TCPConn, req *http.Request) {
			io.CopyN(io.Discard, req.Body, 10<<10)
			reset(c)
		})
		good := newEchoBackend(t, "good")
		host := route(dier.addr(), good.addr())
		var ok, bad int64
		for range 100 {
			// 200 KiB of unknown length: streamed, chunked.
			body := io.MultiReader(bytes.NewReader(make([]byte, 200<<10)))
			switch status, _ := do(http.MethodPost, host, body); status {
			case 200:
				ok++
			case 502:
				bad++
			default:
				t.Fatalf("status %d", status)
			}
			if dier.count.Load() > 0 {
				break
			}
		}
		t.Logf("200: %d, 502: %d, dying backend saw %d, good backend %d", ok, bad, dier.count.Load(), good.count.Load())
		if dier.count.Load() == 0 {
			t.Fatal("the dying backend never got a request")
		}
		if bad != dier.count.Load() || good.count.Load() != ok {
			t.Errorf("a POST whose body started upstream was sent again")
		}
	})

	t.Run("GET retried when the backend died before answering", func(t *testing.T) {
		dier := newRawBackend(t, func(c *net.TCPConn, req *http.Request) { reset(c) })
		good := newEchoBackend(t, "good")
		host := route(dier.addr(), good.addr())
		for i := 0; dier.count.Load() == 0; i++ {
			if i == 100 {
				t.Fatal("the dying backend never got a request")
			}
			if status, body := do(http.MethodGet, host, nil); status != 200 || body != "good" {
				t.Fatalf("GET: %d %q", status, body)
			}
		}
	})

	t.Run("stale pooled connection is not written to", func(t *testing.T) {
		// The backend closes idle keep-alive connections after 50 ms.
		var conns atomic.Int64
		good := newEchoBackend(t, "good", func(s *http.Server) {
			s.IdleTimeout = 50 * time.Millisecond
			s.ConnState = func(_ net.Conn, s http.ConnState) {
				if s == http.StateNew {
					conns.Add(1)
				}
			}
		})
		host := route(good.addr())
		if status, _ := do(http.MethodPost, host, strings.NewReader("one")); status != 200 {
			t.Fatalf("first POST: %d", status)
		}
		b := tr.table.Load().lookup(host).backends[0]
		waitFor(t, "pooled connection closed by the backend", 30*time.Second, func() bool {
			b.mu.Lock()
			defer b.mu.Unlock()
			return len(b.idle) == 1 && !b.idle[0].alive()
		})
		if status, _ := do(http.MethodPost, host, strings.NewReader("two")); status != 200 {
			t.Fatalf("second POST: %d", status)
		}
		if got := good.count.Load(); got != 2 {
			t.Errorf("backend got %d POSTs, want 2", got)
		}
		if got := conns.Load(); got != 2 {
			t.Errorf("backend saw %d connections, want 2", got)
		}
	})

	t.Run("GET over stale pooled connections goes out on a live one", func(t *testing.T) {
		// GETs skip the liveness check of pooled connections: a dead one
		// costs a retry, and the other dead ones are weeded out before it.
		const pooled = 8
		var conns, count atomic.Int64
		release := make(chan struct{})
		good := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if count.Add(1) <= pooled {
				<-release // so that the first GETs take a connection each
			}
			io.WriteString(w, "good")
		}))
		good.Config.IdleTimeout = 50 * time.Millisecond
		good.Config.ConnState = func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				conns.Add(1)
			}
		}
		good.Start()
		t.Cleanup(good.Close)
		host := route(good.Listener.Addr().String())
		done := make(chan int, pooled)
		for range pooled {
			go func() {
				status, _ := do(http.MethodGet, host, nil)
				done <- status
			}()
		}
		waitFor(t, "requests at the backend", 30*time.Second, func() bool { return count.Load() == pooled })
		close(release)
		for range pooled {
			if status := <-done; status != 200 {
				t.Fatalf("GET: %d", status)
			}
		}
		b := tr.table.Load().lookup(host).backends[0]
		waitFor(t, "pooled connections closed by the backend", 30*time.Second, func() bool {
			b.mu.Lock()
			defer b.mu.Unlock()
			for _, c := range b.idle {
				if c.alive() {
					return false
				}
			}
			return len(b.idle) == pooled
		})
		if status, body := do(http.MethodGet, host, nil); status != 200 || body != "good" {
			t.Fatalf("GET: %d %q", status, body)
		}
		if got := count.Load(); got != pooled+1 {
			t.Errorf("backend got %d GETs, want %d", got, pooled+1)
		}
		if got := conns.Load(); got != pooled+1 {
			t.Errorf("backend saw %d connections, want %d: dead pooled ones were tried more than once", got, pooled+1)
		}
	})

	t.Run("all backends refusing is a 502", func(t *testing.T) {
		host := route(refusedAddr(t), refusedAddr(t))
		if status, body := do(http.MethodGet, host, nil); status != 502 || !strings.Contains(body, "did not answer") {
			t.Errorf("GET: %d %q, want 502", status, body)
		}
	})
}
