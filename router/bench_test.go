package router

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"

	"github.com/gantryhq/gantry/deploy/testenv"
	"github.com/gantryhq/gantry/layer0/discovery"
)

// BenchmarkHTTP1Proxy measures one GET through the router over loopback,
// access log on, with a client and a backend that allocate nothing, so
// that allocs/op is the router's: through its own HTTP/1.1 server (the HTTP
// listener) and through net/http's server with the same proxy (as on the
// HTTPS listener, without TLS).
func BenchmarkHTTP1Proxy(b *testing.B) {
	const body = "Hello from the benchmark backend.\n"
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 34\r\n" +
		"Date: Tue, 20 May 2025 10:00:00 GMT\r\n\r\n" + body)
	backendLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer backendLn.Close()
	go func() {
		for {
			c, err := backendLn.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for skipHead(br) == nil {
					if _, err := c.Write(resp); err != nil {
						return
					}
				}
			}()
		}
	}()

	r, err := New(Config{Cluster: "bench", Etcd: testenv.Etcd(b), HTTPAddr: "127.0.0.1:0", AccessLog: io.Discard})
	if err != nil {
		b.Fatal(err)
	}
	ri, err := parseRoute("bench.test", []byte(`{"domain":"bench.test","app":"bench","service":"bench-web"}`), nil)
	if err != nil {
		b.Fatal(err)
	}
	r.apply(map[string]*routeInfo{"bench.test": ri}, map[string][]discovery.Instance{
		"bench-web": {{ID: "1", Addr: backendLn.Addr().String()}},
	})

	for _, tc := range []struct {
		name  string
		serve func(ln net.Listener) httpServer
	}{
		{"router server", func(ln net.Listener) httpServer {
			srv := r.h1Server(r.frontend(ln, false), nil, nil)
			go srv.Serve(ln)
			return srv
		}},
		{"net/http server", func(ln net.Listener) httpServer {
			srv := &http.Server{Handler: r.frontend(ln, false)}
			go srv.Serve(ln)
			return srv
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer tc.serve(ln).Close()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			req := []byte("GET / HTTP/1.1\r\nHost: bench.test\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
			br := bufio.NewReader(c)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Write(req); err != nil {
					b.Fatal(err)
				}
				if err := skipHead(br); err != nil {
					b.Fatal(err)
				}
				if _, err := br.Discard(len(body)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// skipHead reads up to the empty line that ends a request or response head.
func skipHead(br *bufio.Reader) error {
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 && (len(line) == 1 || line[0] == '\r') {
			return nil
		}
	}
}
