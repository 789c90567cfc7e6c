package router

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/gantryhq/gantry/router/types"
)

// serve starts a backend with handler, registers it under service and
// routes domain to it, and waits until the router routes there.
func (e *env) serve(tr *testRouter, domain, service string, handler http.Handler) *httptest.Server {
	e.t.Helper()
	srv := httptest.NewServer(handler)
	e.t.Cleanup(srv.Close)
	e.register(service, "job-"+domain, srv.Listener.Addr().String())
	e.putRoute(types.Route{Domain: domain, App: "app", Service: service})
	waitFor(e.t, "route "+domain, 5*time.Second, func() bool {
		tg := tr.table.Load().lookup(domain)
		return tg != nil && len(tg.backends) > 0
	})
	return srv
}

// dialTo returns a DialContext that connects to addr whatever the URL says.
func dialTo(addr string) func(ctx context.Context, network, _ string) (net.Conn, error) {
	var d net.Dialer
	return func(ctx context.Context, network, _ string) (net.Conn, error) {
		return d.DialContext(ctx, network, addr)
	}
}

func TestWebSocket(t *testing.T) {
	e := newEnv(t)
	tr := e.startRouter(nil)
	up := websocket.Upgrader{}
	e.serve(tr, "ws.test", "ws-web", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			typ, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			if err := c.WriteMessage(typ, append([]byte("echo:"), msg...)); err != nil {
				return
			}
		}
	}))
	for _, tc := range []struct{ name, url, addr string }{
		{"ws", "ws://ws.test/socket", tr.httpAddr},
		{"wss", "wss://ws.test/socket", tr.httpsAddr},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := websocket.Dialer{
				NetDialContext:   dialTo(tc.addr),
				TLSClientConfig:  &tls.Config{InsecureSkipVerify: true},
				HandshakeTimeout: 5 * time.Second,
			}
			c, resp, err := d.Dial(tc.url, nil)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer c.Close()
			if resp.Header.Get("X-Request-Id") == "" {
				t.Error("101 response without X-Request-Id")
			}
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			for i, msg := range []string{"hello", strings.Repeat("big", 50000), "bye"} {
				typ := websocket.TextMessage
				if i == 1 {
					typ = websocket.BinaryMessage
				}
				if err := c.WriteMessage(typ, []byte(msg)); err != nil {
					t.Fatal(err)
				}
				gotTyp, got, err := c.ReadMessage()
				if err != nil {
					t.Fatal(err)
				}
				if gotTyp != typ || string(got) != "echo:"+msg {
					t.Fatalf("message %d: type %d, %d bytes; want echo", i, gotTyp, len(got))
				}
			}
			c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
		})
	}
	waitFor(t, "upgraded connections closed", 30*time.Second, func() bool {
		tr.upMu.Lock()
		defer tr.upMu.Unlock()
		return len(tr.upgrades) == 0
	})
}

// repeatReader yields block over and over.
type repeatReader struct {
	block []byte
	off   int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := copy(p, r.block[r.off:])
	r.off = (r.off + n) % len(r.block)
	return n, nil
}

func TestLargeUploadStreamed(t *testing.T) {
	e := newEnv(t)
	tr := e.startRouter(nil)
	e.serve(tr, "up.test", "up-web", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		io.WriteString(w, hex.EncodeToString(h.Sum(nil))+" "+itoa(n))
	}))
	const size = 100 << 20
	block := make([]byte, 1<<20)
	rand.Read(block)
	for _, tc := range []struct {
		name   string
		length int64
	}{{"known length", size}, {"chunked", -1}} {
		t.Run(tc.name, func(t *testing.T) {
			sum := sha256.New()
			body := io.TeeReader(io.LimitReader(&repeatReader{block: block}, size), sum)
			req, _ := http.NewRequest(http.MethodPut, "http://"+tr.httpAddr+"/upload", body)
			req.Host = "up.test"
			req.ContentLength = tc.length
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			resp, err := httpClient(t).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			runtime.ReadMemStats(&after)
			want := hex.EncodeToString(sum.Sum(nil)) + " " + itoa(size)
			if resp.StatusCode != 200 || string(got) != want {
				t.Fatalf("upload: %d %q, want 200 %q", resp.StatusCode, got, want)
			}
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("100 MiB through the router; %d KiB allocated in the whole process meanwhile", alloc>>10)
			if alloc > size/4 {
				t.Errorf("%d MiB allocated while streaming 100 MiB: something buffers bodies", alloc>>20)
			}
		})
	}
}

func itoa(n int64) string { return big.NewInt(n).String() }

func TestServerSentEventsNotBuffered(t *testing.T) {
	e := newEnv(t)
	tr := e.startRouter(nil)
	gotFirst := make(chan struct{}, 1)
	buffered := make(chan bool, 1)
	e.serve(tr, "sse.test", "sse-web", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-gotFirst:
			buffered <- false
		case <-time.After(10 * time.Second):
			buffered <- true
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, "data: two\n\n")
	}))
	for _, tc := range []struct {
		name, url, addr string
		h2              bool
	}{
		{"http/1.1", "http://sse.test/events", tr.httpAddr, false},
		{"h2", "https://sse.test/events", tr.httpsAddr, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := &http.Client{Transport: &http.Transport{
				DialContext:       dialTo(tc.addr),
				TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
				ForceAttemptHTTP2: tc.h2,
			}}
			resp, err := client.Get(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if tc.h2 && resp.ProtoMajor != 2 {
				t.Errorf("proto %s, want HTTP/2", resp.Proto)
			}
			br := bufio.NewReader(resp.Body)
			line, err := br.ReadString('\n')
			if err != nil || line != "data: one\n" {
				t.Fatalf("first event: %q, %v", line, err)
			}
			gotFirst <- struct{}{}
			rest, _ := io.ReadAll(br)
			if <-buffered {
				t.Fatal("the first event only arrived with the second: the router buffered the stream")
			}
			if string(rest) != "\ndata: two\n\n" {
				t.Errorf("rest of stream: %q", rest)
			}
		})
	}
}

func TestChunkedResponseWithTrailers(t *testing.T) {
	e := newEnv(t)
	tr := e.startRouter(nil)
	e.serve(tr, "chunk.test", "chunk-web", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Checksum")
		for range 3 {
			io.WriteString(w, strings.Repeat("z", 10000))
			w.(http.Flusher).Flush()
		}
		w.Header().Set("X-Checksum", "abc")
	}))
	client := httpClient(t)
	for range 2 { // the second one reuses the pooled backend connection
		req, _ := http.NewRequest(http.MethodGet, "http://"+tr.httpAddr+"/", nil)
		req.Host = "chunk.test"
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if len(body) != 30000 || resp.Trailer.Get("X-Checksum") != "abc" {
			t.Fatalf("got %d bytes, trailer %v", len(body), resp.Trailer)
		}
	}
	req, _ := http.NewRequest(http.MethodHead, "http://"+tr.httpAddr+"/", nil)
	req.Host = "chunk.test"
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("HEAD: %d", resp.StatusCode)
	}
}

// testCert makes a self-signed certificate for names and returns it as PEM
// and parsed.
func testCert(t *testing.T, names ...string) (certPEM, keyPEM string, cert *x509.Certificate) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(mrand.Int64()),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ = x509.ParseCertificate(der)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})), cert
}

func TestTLSBySNIAndHTTP2(t *testing.T) {
	e := newEnv(t)
	tr := e.startRouter(nil)
	seenProto := make(chan string, 8)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case seenProto <- r.Header.Get("X-Forwarded-Proto") + " " + r.Header.Get("X-Forwarded-Port"):
		default:
		}
		io.WriteString(w, "tls-ok")
	}))
	t.Cleanup(srv.Close)
	e.register("tls-web", "job1", srv.Listener.Addr().String())
	aCert, aKey, aX509 := testCert(t, "a.test")
	wCert, wKey, wX509 := testCert(t, "*.wild.test")
	e.putRoute(types.Route{Domain: "a.test", App: "a", Service: "tls-web", TLSCert: aCert, TLSKey: aKey})
	e.putRoute(types.Route{Domain: "*.wild.test", App: "w", Service: "tls-web", TLSCert: wCert, TLSKey: wKey})
	e.putRoute(types.Route{Domain: "plain.test", App: "p", Service: "tls-web"})
	e.putRoute(types.Route{Domain: "secure.test", App: "s", Service: "tls-web", HTTPSOnly: true})
	waitFor(t, "routes and their backend", 30*time.Second, func() bool {
		tb := tr.table.Load()
		for _, host := range []string{"secure.test", "x.wild.test", "a.test", "plain.test"} {
			if tg := tb.lookup(host); tg == nil || len(tg.backends) == 0 {
				return false
			}
		}
		return true
	})

	roots := x509.NewCertPool()
	roots.AddCert(aX509)
	roots.AddCert(wX509)
	for _, tc := range []struct {
		sni      string
		wantCN   string
		verified bool
	}{
		{"a.test", "a.test", true},
		{"A.TEST", "a.test", true},
		{"x.wild.test", "*.wild.test", true},
		{"x.y.wild.test", "Gantry router default certificate", false},
		{"plain.test", "Gantry router default certificate", false},
		{"unknown.test", "Gantry router default certificate", false},
		{"", "Gantry router default certificate", false},
	} {
		t.Run("sni "+tc.sni, func(t *testing.T) {
			c, err := tls.Dial("tcp", tr.httpsAddr, &tls.Config{ServerName: tc.sni, InsecureSkipVerify: true, NextProtos: []string{"h2", "http/1.1"}})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			st := c.ConnectionState()
			if cn := st.PeerCertificates[0].Subject.CommonName; cn != tc.wantCN {
				t.Errorf("certificate %q, want %q", cn, tc.wantCN)
			}
			if st.NegotiatedProtocol != "h2" {
				t.Errorf("ALPN %q, want h2", st.NegotiatedProtocol)
			}
			if tc.verified {
				if _, err := st.PeerCertificates[0].Verify(x509.VerifyOptions{DNSName: strings.ToLower(tc.sni), Roots: roots}); err != nil {
					t.Errorf("certificate does not verify for %s: %v", tc.sni, err)
				}
			}
		})
	}

	t.Run("http2 request", func(t *testing.T) {
		client := &http.Client{Transport: &http.Transport{
			DialContext:       dialTo(tr.httpsAddr),
			TLSClientConfig:   &tls.Config{RootCAs: roots},
			ForceAttemptHTTP2: true,
		}}
		resp, err := client.Get("https://a.test/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.Proto != "HTTP/2.0" || string(body) != "tls-ok" {
			t.Fatalf("got %s %q, want HTTP/2.0 tls-ok", resp.Proto, body)
		}
		_, port, _ := net.SplitHostPort(tr.httpsAddr)
		if got := <-seenProto; got != "https "+port {
			t.Errorf("backend saw X-Forwarded-Proto/Port %q", got)
		}
	})

	t.Run("https_only redirects", func(t *testing.T) {
		status, _, h, err := tr.get(t, httpClient(t), "Secure.test:80", "/p/a?q=1")
		if err != nil {
			t.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(tr.httpsAddr)
		if want := "https://secure.test:" + port + "/p/a?q=1"; status != http.StatusPermanentRedirect || h.Get("Location") != want {
			t.Errorf("got %d %q, want 308 %q", status, h.Get("Location"), want)
		}
		client := &http.Client{Transport: &http.Transport{DialContext: dialTo(tr.httpsAddr), TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
		resp, err := client.Get("https://secure.test/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("https_only route over HTTPS: %d", resp.StatusCode)
		}
	})
}
