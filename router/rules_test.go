package router

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/gantryhq/gantry/router/internal/h1"
)

// frontEnds are the ways a client reaches the router, each with a client
// that sends one request on a connection of its own.
var frontEnds = []struct {
	name  string
	https bool
	h2    bool
}{
	{"http", false, false},
	{"https http/1.1", true, false},
	{"https h2", true, true},
}

// frontEndClient returns a client for the front end of tr named by
// https and h2, and the base URL to send to.
func frontEndClient(t *testing.T, tr *testRouter, https, h2 bool) (*http.Client, string) {
	rt := &http.Transport{DisableKeepAlives: true, DisableCompression: true, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	base := "http://" + tr.httpAddr
	if https {
		base = "https://" + tr.httpsAddr
		rt.ForceAttemptHTTP2 = h2
		if !h2 {
			rt.TLSClientConfig.NextProtos = []string{"http/1.1"}
		}
	}
	t.Cleanup(rt.CloseIdleConnections)
	return &http.Client{Transport: rt, Timeout: 30 * time.Second}, base
}

// countingBackend serves describeBackend and counts its requests.
func (e *env) countingBackend(tr *testRouter, domain string) *atomic.Int64 {
	var n atomic.Int64
	e.serve(tr, domain, domain+"-web", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		describeBackend(w, r)
	}))
	return &n
}

func TestEveryHeaderFieldLineCounts(t *testing.T) {
	e := newEnv(t)
	tr := e.startRouter(nil)
	seen := e.countingBackend(tr, "fields.test")
	for _, fe := range frontEnds {
		t.Run(fe.name, func(t *testing.T) {
			client, base := frontEndClient(t, tr, fe.https, fe.h2)
			req, _ := http.NewRequest(http.MethodGet, base+"/", nil)
			req.Host = "fields.test"
			for range h1.MaxHeaderFields + 1 {
				req.Header.Add("X-A", "1")
			}
			before := seen.Load()
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge || seen.Load() != before {
				t.Errorf("status %d, backend saw %d requests; want 431 and none", resp.StatusCode, seen.Load()-before)
			}
		})
	}
}

// h2Request sends one request with the given pseudo-header and header
// fields, exactly as given, over a new HTTP/2 connection to addr, and
// returns the response status.
func h2Request(t *testing.T, addr string, fields [][2]string) int {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second)) // a bound on a broken router
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	for _, f := range fields {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	dec := hpack.NewDecoder(4096, nil)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("read frame: %v", err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck()
			}
		case *http2.RSTStreamFrame:
			return 0
		case *http2.HeadersFrame:
			hf, err := dec.DecodeFull(f.HeaderBlockFragment())
			if err != nil {
				t.Fatal(err)
			}
			for _, h := range hf {
				if h.Name == ":status" {
					n, _ := strconv.Atoi(h.Value)
					return n
				}
			}
		}
	}
}

func TestHTTP2TargetFollowsHTTP1Rules(t *testing.T) {
	e := newEnv(t)
	tr := e.startRouter(nil)
	seen := e.countingBackend(tr, "path.test")
	fields := func(method, path string) [][2]string {
		return [][2]string{{":method", method}, {":scheme", "https"}, {":authority", "path.test"}, {":path", path}}
	}
	if status := h2Request(t, tr.httpsAddr, fields("GET", "/ok?a=b")); status != 200 {
		t.Fatalf("valid request: %d", status)
	}
	for _, tc := range []struct{ name, method, path string }{
		{"space", "GET", "/admin HTTP/1.0"},
		{"tab", "GET", "/a\tb"},
		{"delete", "GET", "/a\x7fb"},
		{"asterisk for get", "GET", "*"},
		{"not origin form", "GET", "admin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := seen.Load()
			status := h2Request(t, tr.httpsAddr, fields(tc.method, tc.path))
			if status != http.StatusBadRequest && status != 0 || seen.Load() != before {
				t.Errorf(":path %q: status %d, backend saw %d requests; want 400 (or a reset stream) and none", tc.path, status, seen.Load()-before)
			}
		})
	}
}

// TestForwardingHeadersAreTheRouters: what an app reads in the forwarding
// headers comes from the router, whatever the client sent.
func TestForwardingHeadersAreTheRouters(t *testing.T) {
	e := newEnv(t)
	tr := e.startRouter(nil)
	seen := make(chan http.Header, 1)
	e.serve(tr, "fwd.test", "fwd-web", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Clone()
	}))
	for _, fe := range frontEnds {
		t.Run(fe.name, func(t *testing.T) {
			client, base := frontEndClient(t, tr, fe.https, fe.h2)
			req, _ := http.NewRequest(http.MethodGet, base+"/", nil)
			req.Host = "fwd.test"
			for k, v := range map[string]string{
				"Forwarded":          "for=203.0.113.7;proto=https;host=evil.test",
				"X-Forwarded-For":    "203.0.113.7",
				"X-Forwarded-Proto":  "https",
				"X-Forwarded-Port":   "443",
				"X-Forwarded-Host":   "evil.test",
				"X-Forwarded-Ssl":    "on",
				"X-Forwarded-Scheme": "https",
				"X-Real-Ip":          "203.0.113.7",
			} {
				req.Header.Set(k, v)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			var h http.Header
			select {
			case h = <-seen:
			case <-time.After(30 * time.Second):
				t.Fatalf("no request at the backend (status %d)", resp.StatusCode)
			}
			proto, addr := "http", tr.httpAddr
			if fe.https {
				proto, addr = "https", tr.httpsAddr
			}
			_, port, _ := net.SplitHostPort(addr)
			for k, want := range map[string]string{
				"X-Forwarded-For":    "127.0.0.1",
				"X-Forwarded-Proto":  proto,
				"X-Forwarded-Port":   port,
				"Forwarded":          "",
				"X-Forwarded-Host":   "",
				"X-Forwarded-Ssl":    "",
				"X-Forwarded-Scheme": "",
				"X-Real-Ip":          "",
			} {
				if got := strings.Join(h[k], ","); got != want {
					t.Errorf("app saw %s = %q, want %q", k, got, want)
				}
			}
		})
	}
}
