package router

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gantryhq/gantry/router/internal/h1"
)

// conformance is the table of requests the router must refuse, or accept
// only in a normalised form, whichever front end they arrive on: request
// smuggling (framing the router and an app could read differently), bad
// targets, header limits and timeouts. Every row runs against the HTTP
// listener and against HTTP/1.1 over TLS on the HTTPS listener; the HTTP/2
// rows (h2Conformance) run against the HTTPS listener.
var conformance = []struct {
	name string
	req  string
	// status is the status the router answers with; 0 means it closes the
	// connection without an answer.
	status int
	// seen is, for an accepted request, what the app saw (see
	// conformanceBackend); "" means the app must not see the request.
	seen string
}{
	// Framing.
	{"content-length and chunked", "POST / HTTP/1.1\r\nHost: conf.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, ""},
	{"chunked and content-length", "POST / HTTP/1.1\r\nHost: conf.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n", 400, ""},
	{"differing content-lengths", "POST / HTTP/1.1\r\nHost: conf.test\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400, ""},
	{"content-length list", "POST / HTTP/1.1\r\nHost: conf.test\r\nContent-Length: 3, 3\r\n\r\nabc", 400, ""},
	{"signed content-length", "POST / HTTP/1.1\r\nHost: conf.test\r\nContent-Length: +3\r\n\r\nabc", 400, ""},
	{"hex content-length", "POST / HTTP/1.1\r\nHost: conf.test\r\nContent-Length: 0x3\r\n\r\nabc", 400, ""},
	{"content-length overflow", "POST / HTTP/1.1\r\nHost: conf.test\r\nContent-Length: 99999999999999999999\r\n\r\nabc", 400, ""},
	{"identical content-lengths are one", "POST / HTTP/1.1\r\nHost: conf.test\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 200, "POST / 3 cl=3"},
	{"coding other than chunked", "POST / HTTP/1.1\r\nHost: conf.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501, ""},
	{"chunked twice", "POST / HTTP/1.1\r\nHost: conf.test\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501, ""},
	{"chunked misspelt", "POST / HTTP/1.1\r\nHost: conf.test\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 501, ""},
	{"chunked in http/1.0", "POST / HTTP/1.0\r\nHost: conf.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, ""},
	{"chunked body is re-framed", "POST / HTTP/1.1\r\nHost: conf.test\r\nTransfer-Encoding: Chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nX-T: 1\r\n\r\n", 200, "POST / 5 te=chunked"},
	{"chunk size not hex", "POST / HTTP/1.1\r\nHost: conf.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", 400, ""},
	{"chunk size overflow", "POST / HTTP/1.1\r\nHost: conf.test\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\nabc\r\n0\r\n\r\n", 400, ""},
	{"chunk without its line end", "POST / HTTP/1.1\r\nHost: conf.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXX0\r\n\r\n", 400, ""},

	// Header lines.
	{"obs-fold", "GET / HTTP/1.1\r\nHost: conf.test\r\nX-A: 1\r\n 2\r\n\r\n", 400, ""},
	{"space before colon", "GET / HTTP/1.1\r\nHost: conf.test\r\nContent-Length : 0\r\n\r\n", 400, ""},
	{"bad name", "GET / HTTP/1.1\r\nHost: conf.test\r\nX(A): 1\r\n\r\n", 400, ""},
	{"no colon", "GET / HTTP/1.1\r\nHost: conf.test\r\nX-A\r\n\r\n", 400, ""},
	{"nul in value", "GET / HTTP/1.1\r\nHost: conf.test\r\nX-A: 1\x002\r\n\r\n", 400, ""},
	{"bare cr in value", "GET / HTTP/1.1\r\nHost: conf.test\r\nX-A: 1\r2\r\n\r\n", 400, ""},
	{"no host", "GET / HTTP/1.1\r\n\r\n", 400, ""},
	{"two hosts", "GET / HTTP/1.1\r\nHost: conf.test\r\nHost: other.test\r\n\r\n", 400, ""},
	{"host with a space", "GET / HTTP/1.1\r\nHost: conf.test x\r\n\r\n", 400, ""},
	{"unknown expectation", "POST / HTTP/1.1\r\nHost: conf.test\r\nContent-Length: 1\r\nExpect: later\r\n\r\nx", 417, ""},

	// Targets and versions.
	{"space in target", "GET /a b HTTP/1.1\r\nHost: conf.test\r\n\r\n", 400, ""},
	{"request line in target", "GET /admin HTTP/1.0 HTTP/1.1\r\nHost: conf.test\r\n\r\n", 505, ""},
	{"control in target", "GET /a\x7fb HTTP/1.1\r\nHost: conf.test\r\n\r\n", 400, ""},
	{"not origin form", "GET a HTTP/1.1\r\nHost: conf.test\r\n\r\n", 400, ""},
	{"asterisk for get", "GET * HTTP/1.1\r\nHost: conf.test\r\n\r\n", 400, ""},
	{"userinfo", "GET http://u@conf.test/ HTTP/1.1\r\nHost: conf.test\r\n\r\n", 400, ""},
	{"other scheme", "GET ftp://conf.test/ HTTP/1.1\r\nHost: conf.test\r\n\r\n", 400, ""},
	{"connect", "CONNECT conf.test:443 HTTP/1.1\r\nHost: conf.test:443\r\n\r\n", 405, ""},
	{"absolute form is origin form upstream", "GET http://conf.test/p?q=1 HTTP/1.1\r\nHost: other.test\r\n\r\n", 200, "GET /p?q=1 0"},
	{"bad method", "G(T / HTTP/1.1\r\nHost: conf.test\r\n\r\n", 400, ""},
	{"http/2 on http/1", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, ""},
	{"http/1.2", "GET / HTTP/1.2\r\nHost: conf.test\r\n\r\n", 505, ""},
	{"not http", "GET / FTP/1.0\r\nHost: conf.test\r\n\r\n", 400, ""},

	// Limits.
	{"head too large", "GET / HTTP/1.1\r\nHost: conf.test\r\nX-Big: " + strings.Repeat("a", h1.MaxHeadBytes) + "\r\n\r\n", 431, ""},
	{"too many fields of one name", "GET / HTTP/1.1\r\nHost: conf.test\r\n" + strings.Repeat("X-A: 1\r\n", h1.MaxHeaderFields) + "\r\n", 431, ""},
	{"too many fields", "GET / HTTP/1.1\r\nHost: conf.test\r\n" + manyFields(h1.MaxHeaderFields) + "\r\n", 431, ""},
	{"most fields allowed", "GET / HTTP/1.1\r\nHost: conf.test\r\n" + manyFields(h1.MaxHeaderFields-1) + "\r\n", 200, "GET / 0"},

	// Timeouts (conformanceTimeout).
	{"head never finished", "GET / HTTP/1.1\r\nHost: conf", 0, ""},
	{"body never finished", "POST / HTTP/1.1\r\nHost: conf.test\r\nContent-Length: 10\r\n\r\nabc", 408, ""},
}

// conformanceTimeout is the read header and client body timeout of the
// conformance router.
const conformanceTimeout = 500 * time.Millisecond

func manyFields(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "X-F%d: %d\r\n", i, i)
	}
	return b.String()
}

// conformanceBackend answers "<method> <target> <body length>", then the
// framing headers it got and the Host when it is not conf.test. It counts
// the requests it got whole in seen: a refused body may have begun to
// stream to the app, but the app must find it cut short.
func conformanceBackend(seen *atomic.Int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		seen.Add(1)
		s := fmt.Sprintf("%s %s %d", r.Method, r.RequestURI, n)
		if v := r.Header["Content-Length"]; len(v) > 0 {
			s += " cl=" + strings.Join(v, ",")
		}
		if len(r.TransferEncoding) > 0 {
			s += " te=" + strings.Join(r.TransferEncoding, ",")
		}
		if r.Host != "conf.test" {
			s += " host=" + r.Host
		}
		io.WriteString(w, s)
	})
}

func TestConformance(t *testing.T) {
	e := newEnv(t)
	tr := e.startRouter(func(c *Config) {
		c.ReadHeaderTimeout = conformanceTimeout
		c.ClientBodyTimeout = conformanceTimeout
	})
	var seen atomic.Int64
	e.serve(tr, "conf.test", "conf-web", conformanceBackend(&seen))

	for _, fe := range []struct {
		name  string
		https bool
	}{{"http", false}, {"https http/1.1", true}} {
		t.Run(fe.name, func(t *testing.T) {
			for _, tc := range conformance {
				t.Run(tc.name, func(t *testing.T) {
					c := dialFrontEnd(t, tr, fe.https)
					c.SetDeadline(time.Now().Add(30 * time.Second)) // a bound on a broken router
					before := seen.Load()
					go io.WriteString(c, tc.req) // the router may answer before reading it all
					br := bufio.NewReader(c)
					resp, err := http.ReadResponse(br, nil)
					if tc.status == 0 {
						if err == nil {
							t.Fatalf("got %d, want the connection closed without an answer", resp.StatusCode)
						}
						return
					}
					if err != nil {
						t.Fatalf("no response: %v", err)
					}
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != tc.status {
						t.Fatalf("status %d (%q), want %d", resp.StatusCode, body, tc.status)
					}
					if tc.seen == "" {
						if n := seen.Load() - before; n != 0 {
							t.Errorf("the app saw %d requests, want none", n)
						}
						if resp.StatusCode >= 400 {
							if _, err := br.ReadByte(); err == nil {
								t.Error("connection still open after a refusal")
							}
						}
						return
					}
					if string(body) != tc.seen {
						t.Errorf("the app saw %q, want %q", body, tc.seen)
					}
				})
			}
		})
	}

	t.Run("h2", func(t *testing.T) {
		req := func(method, path string, extra ...[2]string) [][2]string {
			return append([][2]string{{":method", method}, {":scheme", "https"}, {":authority", "conf.test"}, {":path", path}}, extra...)
		}
		var many [][2]string
		for i := range h1.MaxHeaderFields + 1 {
			many = append(many, [2]string{"x-a", fmt.Sprint(i)})
		}
		for _, tc := range []struct {
			name   string
			fields [][2]string
			status int // 0: a reset stream or 400
		}{
			{"valid", req("GET", "/ok"), 200},
			{"space in path", req("GET", "/admin HTTP/1.0"), 0},
			{"tab in path", req("GET", "/a\tb"), 0},
			{"delete in path", req("GET", "/a\x7fb"), 0},
			{"path not origin form", req("GET", "admin"), 0},
			{"asterisk for get", req("GET", "*"), 0},
			{"bad method", req("G(T", "/"), 0},
			{"too many fields", req("GET", "/", many...), 431},
			{"upper-case name", req("GET", "/", [2]string{"X-Upper", "1"}), 0},
			{"connection header", req("GET", "/", [2]string{"connection", "close"}), 0},
			{"nul in value", req("GET", "/", [2]string{"x-a", "1\x002"}), 0},
		} {
			t.Run(tc.name, func(t *testing.T) {
				before := seen.Load()
				status := h2Request(t, tr.httpsAddr, tc.fields)
				switch {
				case tc.status == 200:
					if status != 200 || seen.Load() != before+1 {
						t.Errorf("status %d; want 200 from the app", status)
					}
				case tc.status == 0 && status != 0 && status != http.StatusBadRequest,
					tc.status != 0 && status != tc.status:
					t.Errorf("status %d, want %d", status, tc.status)
				case seen.Load() != before:
					t.Error("the app saw the request")
				}
			})
		}
	})
}
