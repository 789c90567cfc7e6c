package slugrunner

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

// startStatic serves dir on a loopback port and returns its base URL. The
// server stops, and must stop cleanly, when the test ends.
func startStatic(t *testing.T, dir string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeStatic(ctx, StaticConfig{Dir: dir, Listener: ln}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeStatic: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

func staticSite(t *testing.T) (site string, bigJS string) {
	t.Helper()
	base := t.TempDir()
	site = filepath.Join(base, "site")
	bigJS = strings.Repeat("console.log('hello');\n", 200)
	writeFiles(t, site, map[string]string{
		"index.html":                "<h1>home</h1>",
		"about.html":                "<h1>about</h1>",
		"404.html":                  "<h1>lost</h1>",
		"assets/app.css":            "body{}",
		"app.3f2a9c1b7e.js":         bigJS,
		"robots.txt":                "User-agent: *",
		"docs/index.html":           "<h1>docs</h1>",
		"empty/readme.txt":          "no index here",
		".env":                      "SECRET=1",
		".well-known/security.txt":  "Contact: x",
		"inside-link-target/a.html": "<h1>a</h1>",
	})
	writeFiles(t, base, map[string]string{"secret.txt": "outside"})
	mustSymlink(t, "../secret.txt", filepath.Join(site, "escape.txt"))
	mustSymlink(t, "inside-link-target", filepath.Join(site, "linked"))
	return site, bigJS
}

func TestServeStatic(t *testing.T) {
	site, bigJS := staticSite(t)
	base := startStatic(t, site)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	tests := []struct {
		name     string
		method   string
		path     string // sent as is
		header   map[string]string
		status   int
		body     string // exact body; "" = not checked
		cache    string // Cache-Control; "" = not checked
		location string
		encoding string
	}{
		{name: "index", path: "/", status: 200, body: "<h1>home</h1>", cache: "no-cache"},
		{name: "index by name", path: "/index.html", status: 200, body: "<h1>home</h1>"},
		{name: "html without extension", path: "/about", status: 200, body: "<h1>about</h1>", cache: "no-cache"},
		{name: "asset directory", path: "/assets/app.css", status: 200, body: "body{}", cache: "public, max-age=3600"},
		{name: "hashed name", path: "/app.3f2a9c1b7e.js", status: 200, body: bigJS, cache: "public, max-age=3600"},
		{name: "plain file", path: "/robots.txt", status: 200, body: "User-agent: *", cache: "no-cache"},
		{name: "directory redirect", path: "/docs?x=1", status: 301, location: "/docs/?x=1"},
		{name: "directory index", path: "/docs/", status: 200, body: "<h1>docs</h1>"},
		{name: "no listing", path: "/empty/", status: 404, body: "<h1>lost</h1>"},
		{name: "missing", path: "/nope.png", status: 404, body: "<h1>lost</h1>", cache: "no-cache"},
		{name: "dotfile", path: "/.env", status: 404},
		{name: "well-known", path: "/.well-known/security.txt", status: 200, body: "Contact: x"},
		{name: "dot-dot", path: "/../secret.txt", status: 404},
		{name: "encoded dot-dot", path: "/%2e%2e/secret.txt", status: 404},
		{name: "encoded slash dot-dot", path: "/docs%2f..%2f..%2fsecret.txt", status: 404},
		{name: "symlink leaving the site", path: "/escape.txt", status: 404},
		{name: "symlink inside the site", path: "/linked/a.html", status: 200, body: "<h1>a</h1>"},
		{name: "head", method: http.MethodHead, path: "/", status: 200, body: ""},
		{name: "post", method: http.MethodPost, path: "/", status: 405},
		{name: "gzip", path: "/app.3f2a9c1b7e.js", header: map[string]string{"Accept-Encoding": "gzip"}, status: 200, body: bigJS, encoding: "gzip"},
		{name: "gzip refused", path: "/app.3f2a9c1b7e.js", header: map[string]string{"Accept-Encoding": "gzip;q=0"}, status: 200, body: bigJS},
		{name: "small file not compressed", path: "/robots.txt", header: map[string]string{"Accept-Encoding": "gzip"}, status: 200, body: "User-agent: *"},
		{name: "range", path: "/robots.txt", header: map[string]string{"Range": "bytes=0-9"}, status: 206, body: "User-agent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := tt.method
			if method == "" {
				method = http.MethodGet
			}
			req, err := http.NewRequestWithContext(t.Context(), method, base, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.URL.Opaque = tt.path // sent verbatim, no client-side cleaning
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body := readBody(t, resp)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d; body %q", resp.StatusCode, tt.status, body)
			}
			if (tt.body != "" || method == http.MethodHead) && body != tt.body {
				t.Errorf("body %q, want %q", body, tt.body)
			}
			if tt.cache != "" && resp.Header.Get("Cache-Control") != tt.cache {
				t.Errorf("Cache-Control %q, want %q", resp.Header.Get("Cache-Control"), tt.cache)
			}
			if tt.location != "" && resp.Header.Get("Location") != tt.location {
				t.Errorf("Location %q, want %q", resp.Header.Get("Location"), tt.location)
			}
			if got := resp.Header.Get("Content-Encoding"); got != tt.encoding {
				t.Errorf("Content-Encoding %q, want %q", got, tt.encoding)
			}
			if strings.Contains(body, "outside") || strings.Contains(body, "SECRET") {
				t.Errorf("served a file it must not: %q", body)
			}
		})
	}
}

func TestServeStaticConditional(t *testing.T) {
	site, _ := staticSite(t)
	base := startStatic(t, site)
	for _, enc := range []string{"", "gzip"} {
		t.Run("encoding="+enc, func(t *testing.T) {
			get := func(h map[string]string) *http.Response {
				req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/app.3f2a9c1b7e.js", nil)
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Accept-Encoding", enc)
				for k, v := range h {
					req.Header.Set(k, v)
				}
				resp, err := http.DefaultTransport.RoundTrip(req)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				return resp
			}
			first := get(nil)
			etag, modified := first.Header.Get("ETag"), first.Header.Get("Last-Modified")
			if first.StatusCode != 200 || etag == "" || modified == "" {
				t.Fatalf("status %d, ETag %q, Last-Modified %q", first.StatusCode, etag, modified)
			}
			if resp := get(map[string]string{"If-None-Match": etag}); resp.StatusCode != http.StatusNotModified {
				t.Errorf("If-None-Match: status %d, want 304", resp.StatusCode)
			}
			if resp := get(map[string]string{"If-Modified-Since": modified}); resp.StatusCode != http.StatusNotModified {
				t.Errorf("If-Modified-Since: status %d, want 304", resp.StatusCode)
			}
			if resp := get(map[string]string{"If-None-Match": `"other"`}); resp.StatusCode != 200 {
				t.Errorf("stale If-None-Match: status %d, want 200", resp.StatusCode)
			}
		})
	}
}

func TestServeStaticMissingDir(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	err = ServeStatic(t.Context(), StaticConfig{Dir: filepath.Join(t.TempDir(), "missing"), Listener: ln})
	if err == nil {
		t.Fatal("ServeStatic of a missing directory succeeded")
	}
	if _, err := ln.Accept(); err == nil {
		t.Error("listener left open")
	}
}

func TestHashedName(t *testing.T) {
	tests := map[string]bool{
		"app.3f2a9c1b.js":       true,
		"index-BxK3f9aQ.css":    true,
		"chunk_a1b2c3d4e5f6.js": true,
		"bootstrap.min.css":     false,
		"jquery-3.6.0.js":       false,
		"20240101.log":          false,
		"background.png":        false,
		"3f2a9c1b.js":           false,
	}
	for name, want := range tests {
		t.Run(name, func(t *testing.T) {
			if got := hashedName(name); got != want {
				t.Errorf("hashedName(%q) = %v, want %v", name, got, want)
			}
		})
	}
}

func readBody(t *testing.T, resp *http.Response) string {
	t.Helper()
	var r io.Reader = resp.Body
	if resp.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(resp.Body)
		if err != nil {
			t.Fatalf("gzip body: %v", err)
		}
		r = zr
	}
	var b bytes.Buffer
	if _, err := io.Copy(&b, r); err != nil {
		t.Fatalf("read body: %v", err)
	}
	return b.String()
}
