package router

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/gantryhq/gantry/router/types"
)

// staleResponse is what the misbehaving backend sends where it should send
// nothing: a whole response, so that a router that reads it as the answer
// to the next request hands a user somebody else's page.
const staleResponse = "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nstale-bytes"

// misbehavingBackend is a keep-alive HTTP/1.1 server that answers
// "own:<path>" and, depending on the path, sends bytes it must not send:
// a body on HEAD, 204 and 304, more than its Content-Length, or a response
// nobody asked for on an idle connection.
type misbehavingBackend struct {
	ln net.Listener
	// late receives a value each time /late has sent its unasked response.
	late chan struct{}
}

func newMisbehavingBackend(t *testing.T) *misbehavingBackend {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &misbehavingBackend{ln: ln, late: make(chan struct{}, 16)}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Go(func() {
				b.serveConn(c)
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
			})
		}
	})
	return b
}

func (b *misbehavingBackend) addr() string { return b.ln.Addr().String() }

func (b *misbehavingBackend) serveConn(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second)) // a bound on a broken test
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		own := "own:" + req.URL.Path
		var resp string
		switch {
		case req.Method == http.MethodHead:
			resp = fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(staleResponse), staleResponse)
		case req.URL.Path == "/no-content":
			resp = "HTTP/1.1 204 No Content\r\n\r\n" + staleResponse
		case req.URL.Path == "/not-modified":
			resp = "HTTP/1.1 304 Not Modified\r\nContent-Length: 3\r\n\r\n" + staleResponse
		case req.URL.Path == "/too-long":
			resp = fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s%s", len(own), own, staleResponse)
		default:
			resp = fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(own), own)
		}
		if _, err := io.WriteString(c, resp); err != nil {
			return
		}
		if req.URL.Path == "/late" {
			// Once the router has had the time to take the response and
			// pool the connection, an answer to nothing arrives.
			time.Sleep(100 * time.Millisecond)
			if _, err := io.WriteString(c, staleResponse); err != nil {
				return
			}
			b.late <- struct{}{}
		}
	}
}

// TestMisbehavingBackendCannotMixResponses: whatever an app sends beyond
// its response, every client gets its own response, on both front ends.
func TestMisbehavingBackendCannotMixResponses(t *testing.T) {
	e := newEnv(t)
	tr := e.startRouter(nil)
	b := newMisbehavingBackend(t)
	e.register("mis-web", "job-mis", b.addr())
	e.putRoute(types.Route{Domain: "mis.test", App: "mis", Service: "mis-web"})
	waitFor(t, "route mis.test", 30*time.Second, func() bool {
		tg := tr.table.Load().lookup("mis.test")
		return tg != nil && len(tg.backends) > 0
	})

	// Each request comes from a client of its own, as if from another
	// user; only the router's backend pool is shared.
	type client struct {
		do func(method, path string) (int, string, error)
	}
	newClient := func(t *testing.T, frontEnd string) client {
		rt := &http.Transport{DisableKeepAlives: true, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
		base := "http://" + tr.httpAddr
		if frontEnd == "https" {
			rt.ForceAttemptHTTP2 = true
			base = "https://" + tr.httpsAddr
		}
		t.Cleanup(rt.CloseIdleConnections)
		hc := &http.Client{Transport: rt, Timeout: 30 * time.Second}
		return client{do: func(method, path string) (int, string, error) {
			req, err := http.NewRequest(method, base+path, nil)
			if err != nil {
				return 0, "", err
			}
			req.Host = "mis.test"
			resp, err := hc.Do(req)
			if err != nil {
				return 0, "", err
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			return resp.StatusCode, string(body), err
		}}
	}
	misdeeds := []struct {
		name, method, path string
		status             int
		body               string
	}{
		{"body on HEAD", http.MethodHead, "/head", 200, ""},
		{"body on 204", http.MethodGet, "/no-content", 204, ""},
		{"body on 304", http.MethodGet, "/not-modified", 304, ""},
		{"more than Content-Length", http.MethodGet, "/too-long", 200, "own:/too-long"},
	}

	for _, frontEnd := range []string{"http", "https"} {
		t.Run(frontEnd, func(t *testing.T) {
			for _, m := range misdeeds {
				t.Run(m.name, func(t *testing.T) {
					for i := range 3 {
						status, body, err := newClient(t, frontEnd).do(m.method, m.path)
						if err != nil || status != m.status || body != m.body {
							t.Fatalf("misbehaving request: %d %q %v; want %d %q", status, body, err, m.status, m.body)
						}
						victim := fmt.Sprintf("/victim-%d", i)
						status, body, err = newClient(t, frontEnd).do(http.MethodGet, victim)
						if err != nil || status != 200 || body != "own:"+victim {
							t.Fatalf("next user's request: %d %q %v; want 200 %q", status, body, err, "own:"+victim)
						}
					}
				})
			}

			t.Run("data on an idle pooled connection", func(t *testing.T) {
				for i := range 3 {
					if status, body, err := newClient(t, frontEnd).do(http.MethodGet, "/late"); err != nil || status != 200 || body != "own:/late" {
						t.Fatalf("request: %d %q %v", status, body, err)
					}
					select {
					case <-b.late:
					case <-time.After(30 * time.Second):
						t.Fatal("backend sent no late response")
					}
					victim := fmt.Sprintf("/after-late-%d", i)
					if status, body, err := newClient(t, frontEnd).do(http.MethodGet, victim); err != nil || status != 200 || body != "own:"+victim {
						t.Fatalf("next user's request: %d %q %v; want 200 %q", status, body, err, "own:"+victim)
					}
				}
			})

			t.Run("interleaved clients", func(t *testing.T) {
				var wg sync.WaitGroup
				errs := make(chan error, 64)
				for g := range 6 {
					wg.Go(func() {
						c := newClient(t, frontEnd)
						for i := range 15 {
							m := misdeeds[(g+i)%len(misdeeds)]
							if status, body, err := c.do(m.method, m.path); err != nil || status != m.status || body != m.body {
								errs <- fmt.Errorf("client %d %s: %d %q %v", g, m.name, status, body, err)
								return
							}
							own := fmt.Sprintf("/c%d-%d", g, i)
							if status, body, err := c.do(http.MethodGet, own); err != nil || status != 200 || body != "own:"+own {
								errs <- fmt.Errorf("client %d asked for %s: %d %q %v", g, own, status, body, err)
								return
							}
						}
					})
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					t.Error(err)
				}
			})
		})
	}
}
