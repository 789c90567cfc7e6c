package router

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/router/internal/h1"
)

// rawConn is a client connection to the router's HTTP listener that writes
// bytes as given and reads responses one by one.
type rawConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	// A bound on a broken router, not a measurement.
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return &rawConn{t: t, c: c, br: bufio.NewReader(c)}
}

func (rc *rawConn) send(s string) {
	rc.t.Helper()
	if _, err := io.WriteString(rc.c, s); err != nil {
		rc.t.Fatal(err)
	}
}

// read reads one response to a request of method, body included.
func (rc *rawConn) read(method string) (*http.Response, string) {
	rc.t.Helper()
	resp, err := http.ReadResponse(rc.br, &http.Request{Method: method})
	if err != nil {
		rc.t.Fatalf("read response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		rc.t.Fatalf("read body: %v", err)
	}
	return resp, string(body)
}

// closed reports whether the router closed the connection.
func (rc *rawConn) closed() bool {
	_, err := rc.br.ReadByte()
	return err == io.EOF
}

// describeBackend answers with the method, path, body length and chosen
// request headers, and sets the response headers asked for in the query.
var describeBackend = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	n, err := io.Copy(io.Discard, r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	for k, v := range r.URL.Query() {
		w.Header().Set(k, v[0])
	}
	if r.URL.Query().Has("stream") {
		w.WriteHeader(200)
		for i := range 3 {
			fmt.Fprintf(w, "part%d;", i)
			w.(http.Flusher).Flush()
		}
		return
	}
	fmt.Fprintf(w, "%s %s %d", r.Method, r.URL.Path, n)
})

func TestHTTP1Server(t *testing.T) {
	e := newEnv(t)
	tr := e.startRouter(func(c *Config) { c.ReadHeaderTimeout = 200 * time.Millisecond })
	e.serve(tr, "h1.test", "h1-web", describeBackend)

	t.Run("pipelined requests answered in order", func(t *testing.T) {
		rc := dialRaw(t, tr.httpAddr)
		rc.send("GET /one HTTP/1.1\r\nHost: h1.test\r\n\r\n" +
			"POST /two HTTP/1.1\r\nHost: h1.test\r\nContent-Length: 3\r\n\r\nabc" +
			"HEAD /three HTTP/1.1\r\nHost: h1.test\r\n\r\n" +
			"GET /four HTTP/1.1\r\nHost: h1.test\r\n\r\n")
		for _, want := range []struct{ method, body string }{
			{"GET", "GET /one 0"}, {"POST", "POST /two 3"}, {"HEAD", ""}, {"GET", "GET /four 0"},
		} {
			resp, body := rc.read(want.method)
			if resp.StatusCode != 200 || body != want.body {
				t.Errorf("%s: %d %q, want 200 %q", want.method, resp.StatusCode, body, want.body)
			}
		}
	})

	t.Run("chunked request body", func(t *testing.T) {
		rc := dialRaw(t, tr.httpAddr)
		rc.send("PUT /c HTTP/1.1\r\nHost: h1.test\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\nX-Trailer: t\r\n\r\n" +
			"GET /after HTTP/1.1\r\nHost: h1.test\r\n\r\n")
		if resp, body := rc.read("PUT"); resp.StatusCode != 200 || body != "PUT /c 7" {
			t.Errorf("chunked PUT: %d %q", resp.StatusCode, body)
		}
		if resp, body := rc.read("GET"); resp.StatusCode != 200 || body != "GET /after 0" {
			t.Errorf("GET after the chunked body: %d %q", resp.StatusCode, body)
		}
	})

	t.Run("streamed response is chunked and flushed", func(t *testing.T) {
		rc := dialRaw(t, tr.httpAddr)
		rc.send("GET /s?stream=1 HTTP/1.1\r\nHost: h1.test\r\n\r\n")
		resp, body := rc.read("GET")
		if len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" || body != "part0;part1;part2;" {
			t.Errorf("got %v %q", resp.TransferEncoding, body)
		}
	})

	t.Run("http/1.0", func(t *testing.T) {
		rc := dialRaw(t, tr.httpAddr)
		rc.send("GET /ka HTTP/1.0\r\nHost: h1.test\r\nConnection: keep-alive\r\n\r\n")
		resp, body := rc.read("GET")
		if resp.StatusCode != 200 || body != "GET /ka 0" || resp.Header.Get("Connection") != "keep-alive" {
			t.Errorf("keep-alive request: %d %q Connection %q", resp.StatusCode, body, resp.Header.Get("Connection"))
		}
		rc.send("GET /s?stream=1 HTTP/1.0\r\nHost: h1.test\r\nConnection: keep-alive\r\n\r\n")
		resp, body = rc.read("GET")
		if resp.ContentLength != -1 || len(resp.TransferEncoding) != 0 || body != "part0;part1;part2;" || !resp.Close {
			t.Errorf("body of unknown length: length %d %v %q close %v; want it ended by closing", resp.ContentLength, resp.TransferEncoding, body, resp.Close)
		}
		rc = dialRaw(t, tr.httpAddr)
		rc.send("GET /close HTTP/1.0\r\nHost: h1.test\r\n\r\n")
		if resp, _ := rc.read("GET"); resp.StatusCode != 200 || !resp.Close || !rc.closed() {
			t.Errorf("HTTP/1.0 without keep-alive: %d, close %v; want the connection closed", resp.StatusCode, resp.Close)
		}
	})

	t.Run("expect 100-continue", func(t *testing.T) {
		rc := dialRaw(t, tr.httpAddr)
		rc.send("POST /e HTTP/1.1\r\nHost: h1.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
		if resp, _ := rc.read("POST"); resp.StatusCode != http.StatusContinue {
			t.Fatalf("got %d before the body, want 100", resp.StatusCode)
		}
		rc.send("hello")
		if resp, body := rc.read("POST"); resp.StatusCode != 200 || body != "POST /e 5" {
			t.Errorf("got %d %q", resp.StatusCode, body)
		}
	})

	t.Run("answer without reading the body keeps the connection", func(t *testing.T) {
		rc := dialRaw(t, tr.httpAddr)
		rc.send("POST / HTTP/1.1\r\nHost: nowhere.test\r\nContent-Length: 4\r\n\r\nbody" +
			"GET /next HTTP/1.1\r\nHost: h1.test\r\n\r\n")
		if resp, _ := rc.read("POST"); resp.StatusCode != 404 {
			t.Errorf("unknown host: %d", resp.StatusCode)
		}
		if resp, body := rc.read("GET"); resp.StatusCode != 200 || body != "GET /next 0" {
			t.Errorf("next request: %d %q", resp.StatusCode, body)
		}
	})

	t.Run("body too large to drop still gets its response", func(t *testing.T) {
		rc := dialRaw(t, tr.httpAddr)
		const size = 16 << 20
		rc.send(fmt.Sprintf("PUT / HTTP/1.1\r\nHost: nowhere.test\r\nContent-Length: %d\r\n\r\n", size))
		go io.Copy(rc.c, io.LimitReader(zeroReader{}, size)) // fails once the router closes
		if resp, _ := rc.read("PUT"); resp.StatusCode != 404 {
			t.Errorf("got %d, want 404", resp.StatusCode)
		}
	})

	t.Run("ambiguous framing is refused", func(t *testing.T) {
		rc := dialRaw(t, tr.httpAddr)
		rc.send("POST / HTTP/1.1\r\nHost: h1.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: h1.test\r\n\r\n")
		if resp, _ := rc.read("POST"); resp.StatusCode != 400 || !rc.closed() {
			t.Errorf("got %d, want 400 and the connection closed", resp.StatusCode)
		}
	})

	t.Run("head larger than the limit", func(t *testing.T) {
		rc := dialRaw(t, tr.httpAddr)
		rc.send("GET / HTTP/1.1\r\nHost: h1.test\r\nX-Big: " + strings.Repeat("a", h1.MaxHeadBytes) + "\r\n\r\n")
		if resp, _ := rc.read("GET"); resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("got %d, want 431", resp.StatusCode)
		}
	})

	t.Run("head larger than the read buffer", func(t *testing.T) {
		rc := dialRaw(t, tr.httpAddr)
		big := strings.Repeat("b", 3*h1.ReadBufferSize)
		rc.send("POST / HTTP/1.1\r\nHost: h1.test\r\nX-Big: " + big + "\r\nContent-Length: 2\r\n\r\nhi")
		if resp, body := rc.read("POST"); resp.StatusCode != 200 || body != "POST / 2" {
			t.Errorf("got %d %q", resp.StatusCode, body)
		}
	})

	t.Run("slow head times out", func(t *testing.T) {
		rc := dialRaw(t, tr.httpAddr)
		rc.send("GET / HTTP/1.1\r\nHost: h1")
		if !rc.closed() {
			t.Error("connection with an unfinished head still open")
		}
	})

	t.Run("response headers in and out", func(t *testing.T) {
		rc := dialRaw(t, tr.httpAddr)
		rc.send("GET /h?X-Out=v1&Content-Type=text/x HTTP/1.1\r\nHost: h1.test\r\n\r\n")
		resp, _ := rc.read("GET")
		if resp.Header.Get("X-Out") != "v1" || resp.Header.Get("Content-Type") != "text/x" ||
			resp.Header.Get("Date") == "" || resp.Header.Get("X-Request-Id") == "" || resp.ContentLength != int64(len("GET /h 0")) {
			t.Errorf("response headers %v, length %d", resp.Header, resp.ContentLength)
		}
	})
}

func TestHTTP1ServerIdleTimeout(t *testing.T) {
	e := newEnv(t)
	tr := e.startRouter(func(c *Config) { c.ClientIdleTimeout = 100 * time.Millisecond })
	e.serve(tr, "idle.test", "idle-web", describeBackend)
	rc := dialRaw(t, tr.httpAddr)
	rc.send("GET / HTTP/1.1\r\nHost: idle.test\r\n\r\n")
	if resp, _ := rc.read("GET"); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if !rc.closed() {
		t.Error("idle connection not closed")
	}
}

func TestHTTP1ServerShutdownClosesIdle(t *testing.T) {
	e := newEnv(t)
	tr := e.startRouter(func(c *Config) { c.ShutdownDelay = -1 })
	e.serve(tr, "bye.test", "bye-web", describeBackend)
	rc := dialRaw(t, tr.httpAddr)
	rc.send("GET / HTTP/1.1\r\nHost: bye.test\r\n\r\n")
	if resp, _ := rc.read("GET"); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- tr.stop() }()
	if !rc.closed() {
		t.Error("idle keep-alive connection not closed by the shutdown")
	}
	if err := <-stopped; err != nil {
		t.Errorf("Serve: %v", err)
	}
}
