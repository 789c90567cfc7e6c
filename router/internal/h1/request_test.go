package h1

import (
	"net"
	"net/http"
	"strings"
	"testing"
)

// parseConn returns an Conn whose request parser can be called directly.
func parseConn(t testing.TB) *Conn {
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	return newConn(&Server{}, a)
}

func TestParseRequest(t *testing.T) {
	for _, tc := range []struct {
		name, head string
		status     int // 0: accepted
		method     string
		uri, host  string
		length     int64
		close      bool
		expect     bool
		headers    map[string]string
	}{
		{name: "simple get", head: "GET /a?b=1 HTTP/1.1\r\nHost: app.test\r\nUser-Agent: x\r\n\r\n",
			method: "GET", uri: "/a?b=1", host: "app.test", headers: map[string]string{"User-Agent": "x"}},
		{name: "bare line feeds", head: "GET / HTTP/1.1\nHost: app.test\n\n", method: "GET", uri: "/", host: "app.test"},
		{name: "lower-case names are canonical", head: "GET / HTTP/1.1\r\nhost: app.test\r\nx-forwarded-for: 1.2.3.4\r\n\r\n",
			method: "GET", uri: "/", host: "app.test", headers: map[string]string{"X-Forwarded-For": "1.2.3.4"}},
		{name: "repeated header joins", head: "GET / HTTP/1.1\r\nHost: a\r\nAccept: x\r\nAccept: y\r\n\r\n",
			method: "GET", uri: "/", host: "a", headers: map[string]string{"Accept": "x,y"}},
		{name: "value whitespace trimmed", head: "GET / HTTP/1.1\r\nHost: a\r\nX-A: \t v w \t\r\n\r\n",
			method: "GET", uri: "/", host: "a", headers: map[string]string{"X-A": "v w"}},
		{name: "content length", head: "POST /f HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n",
			method: "POST", uri: "/f", host: "a", length: 12},
		{name: "identical content lengths", head: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
			method: "POST", uri: "/", host: "a", length: 3},
		{name: "chunked", head: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n",
			method: "POST", uri: "/", host: "a", length: -1},
		{name: "expect continue", head: "PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-Continue\r\n\r\n",
			method: "PUT", uri: "/", host: "a", length: 5, expect: true},
		{name: "expect continue without body", head: "GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
			method: "GET", uri: "/", host: "a"},
		{name: "connection close", head: "GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, close\r\n\r\n",
			method: "GET", uri: "/", host: "a", close: true},
		{name: "http/1.0 closes", head: "GET / HTTP/1.0\r\n\r\n", method: "GET", uri: "/", close: true},
		{name: "http/1.0 keep-alive", head: "GET / HTTP/1.0\r\nHost: a\r\nConnection: Keep-Alive\r\n\r\n",
			method: "GET", uri: "/", host: "a"},
		{name: "absolute form", head: "GET http://App.test:8080/p?q HTTP/1.1\r\nHost: other\r\n\r\n",
			method: "GET", uri: "/p?q", host: "App.test:8080"},
		{name: "absolute form without path", head: "GET https://app.test?q HTTP/1.1\r\nHost: app.test\r\n\r\n",
			method: "GET", uri: "/?q", host: "app.test"},
		{name: "asterisk", head: "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", method: "OPTIONS", uri: "*", host: "a"},

		{name: "no host", head: "GET / HTTP/1.1\r\n\r\n", status: 400},
		{name: "two hosts", head: "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", status: 400},
		{name: "length and chunked", head: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", status: 400},
		{name: "chunked and length", head: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", status: 400},
		{name: "differing lengths", head: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", status: 400},
		{name: "signed length", head: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\n", status: 400},
		{name: "list length", head: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\n", status: 400},
		{name: "other coding", head: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", status: 501},
		{name: "two codings", head: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", status: 501},
		{name: "chunked in http/1.0", head: "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", status: 400},
		{name: "space before colon", head: "GET / HTTP/1.1\r\nHost : a\r\n\r\n", status: 400},
		{name: "folded line", head: "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n  2\r\n\r\n", status: 400},
		{name: "no colon", head: "GET / HTTP/1.1\r\nHost: a\r\nX-A\r\n\r\n", status: 400},
		{name: "control in value", head: "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\x002\r\n\r\n", status: 400},
		{name: "bare cr in value", head: "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r2\r\n\r\n", status: 400},
		{name: "space in target", head: "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", status: 400},
		{name: "bad method", head: "G(T / HTTP/1.1\r\nHost: a\r\n\r\n", status: 400},
		{name: "http/2 preface", head: "PRI * HTTP/2.0\r\n\r\n", status: 505},
		{name: "not http", head: "GET / FTP/1.0\r\n\r\n", status: 400},
		{name: "connect", head: "CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n", status: 405},
		{name: "asterisk for get", head: "GET * HTTP/1.1\r\nHost: a\r\n\r\n", status: 400},
		{name: "userinfo in target", head: "GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n", status: 400},
		{name: "every field line counts", head: "GET / HTTP/1.1\r\nHost: a\r\n" + strings.Repeat("X-A: 1\r\n", MaxHeaderFields+1) + "\r\n", status: 431},
		{name: "fields up to the limit", head: "GET / HTTP/1.1\r\nHost: a\r\n" + strings.Repeat("X-A: 1\r\n", MaxHeaderFields-1) + "\r\n",
			method: "GET", uri: "/", host: "a"},
		{name: "unknown expectation", head: "PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nExpect: later\r\n\r\n", status: 417},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := parseConn(t)
			status, err := c.parseRequest(tc.head)
			if status != tc.status || (err == nil) != (tc.status == 0) {
				t.Fatalf("status %d, err %v; want %d", status, err, tc.status)
			}
			if tc.status != 0 {
				return
			}
			q := &c.req
			r := &q.r
			if r.Method != tc.method || r.RequestURI != tc.uri || r.Host != tc.host || r.ContentLength != tc.length ||
				q.close != tc.close || q.expect != tc.expect {
				t.Errorf("got %s %q host %q length %d close %v expect %v", r.Method, r.RequestURI, r.Host, r.ContentLength, q.close, q.expect)
			}
			if (r.Body != http.NoBody) != (tc.length != 0) {
				t.Errorf("body %T for length %d", r.Body, tc.length)
			}
			for k, want := range tc.headers {
				if got := strings.Join(r.Header[k], ","); got != want {
					t.Errorf("header %s = %q, want %q", k, got, want)
				}
			}
			for _, k := range []string{"Host", "Transfer-Encoding"} {
				if _, ok := r.Header[k]; ok {
					t.Errorf("header map holds %s", k)
				}
			}
		})
	}
}

func TestParseRequestReusesState(t *testing.T) {
	c := parseConn(t)
	if _, err := c.parseRequest("GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nX-B: 2\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.parseRequest("GET / HTTP/1.1\r\nHost: b\r\nX-C: 3\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if h := c.req.r.Header; len(h) != 1 || h.Get("X-C") != "3" || c.req.r.Host != "b" {
		t.Errorf("second request sees %v host %q", h, c.req.r.Host)
	}
	allocs := testing.AllocsPerRun(100, func() {
		c.parseRequest("GET /x HTTP/1.1\r\nHost: a\r\nUser-Agent: b\r\nAccept: */*\r\n\r\n")
	})
	if allocs > 0 {
		t.Errorf("%v allocations per parsed request, want none beyond the head string", allocs)
	}
}

func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
		"GET http://a:1/b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, head string) {
		c := parseConn(t)
		status, err := c.parseRequest(head)
		if err != nil {
			if status < 400 || status > 599 {
				t.Fatalf("rejected with status %d", status)
			}
			return
		}
		r := &c.req.r
		if uri := r.RequestURI; uri != "*" && !strings.HasPrefix(uri, "/") {
			t.Fatalf("request URI %q", uri)
		}
		if strings.ContainsAny(r.RequestURI+r.Host+r.Method, " \r\n") {
			t.Fatalf("line break or space in %q %q %q", r.Method, r.RequestURI, r.Host)
		}
		for k, vv := range r.Header {
			if !validToken(k) {
				t.Fatalf("header name %q", k)
			}
			for _, v := range vv {
				if strings.ContainsAny(v, "\r\n") {
					t.Fatalf("line break in %s: %q", k, v)
				}
			}
		}
		switch {
		case r.ContentLength == -1:
			if _, ok := r.Header["Content-Length"]; ok {
				t.Fatal("chunked request keeps Content-Length")
			}
		case r.ContentLength < 0:
			t.Fatalf("content length %d", r.ContentLength)
		}
		if (r.Body != http.NoBody) != (r.ContentLength != 0) {
			t.Fatalf("body %T for length %d", r.Body, r.ContentLength)
		}
	})
}
