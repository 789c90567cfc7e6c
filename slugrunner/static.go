package slugrunner

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// Defaults for StaticConfig fields left zero.
const (
	DefaultStaticShutdownTimeout = 10 * time.Second
	// minGzipSize is the smallest file worth compressing, in bytes.
	minGzipSize = 1024
)

// Cache-Control values of the static server.
const (
	cacheAssets     = "public, max-age=3600"
	cacheRevalidate = "no-cache"
)

// StaticConfig configures the static-site server.
type StaticConfig struct {
	// Dir is the directory served. Empty means AppDir's "public"
	// directory when it exists, else the app directory itself
	// (DefaultAppDir).
	Dir string
	// Addr is the TCP address listened on. Empty means ":$PORT", or
	// ":"+DefaultPort when PORT is not set. Ignored when Listener is set.
	Addr string
	// Listener, when set, is used instead of listening on Addr; ServeStatic
	// closes it.
	Listener net.Listener
	// ShutdownTimeout bounds the draining of requests in flight once ctx
	// is cancelled. Zero means DefaultStaticShutdownTimeout (10 seconds).
	ShutdownTimeout time.Duration
	// Logger receives the server's messages. Nil discards them.
	Logger *slog.Logger
}

// Validate reports whether the configuration is usable.
func (c StaticConfig) Validate() error {
	if c.ShutdownTimeout < 0 {
		return fmt.Errorf("shutdown timeout %v is negative", c.ShutdownTimeout)
	}
	return nil
}

func (c StaticConfig) withDefaults() StaticConfig {
	if c.Dir == "" {
		c.Dir = DefaultAppDir
		public := filepath.Join(DefaultAppDir, "public")
		if fi, err := os.Stat(public); err == nil && fi.IsDir() {
			c.Dir = public
		}
	}
	if c.Addr == "" {
		port := os.Getenv("PORT")
		if port == "" {
			port = DefaultPort
		}
		c.Addr = ":" + port
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = DefaultStaticShutdownTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// ServeStatic serves the static site in cfg.Dir over HTTP until ctx is
// cancelled, then drains requests in flight for up to ShutdownTimeout.
//
// It answers GET and HEAD only. A directory is served by its index.html
// (a request without the trailing slash is redirected), "/name" falls
// back to "name.html", and there are no directory listings. Names with a
// segment starting with "." (except ".well-known") and paths leading
// outside Dir, also through symlinks, are not found. Missing files get
// Dir/404.html, when it exists, with status 404. Responses carry ETag and
// Last-Modified and honour conditional and range requests; HTML and most
// files get "Cache-Control: no-cache", files under assets/ or with a
// content hash in their name get "public, max-age=3600". Text files are
// gzip-compressed for clients that accept it.
func ServeStatic(ctx context.Context, cfg StaticConfig) error {
	if err := cfg.Validate(); err != nil {
		if cfg.Listener != nil {
			cfg.Listener.Close()
		}
		return fmt.Errorf("static server: %w", err)
	}
	cfg = cfg.withDefaults()
	log := cfg.Logger
	root, err := os.OpenRoot(cfg.Dir)
	if err != nil {
		if cfg.Listener != nil {
			cfg.Listener.Close()
		}
		return fmt.Errorf("static server: %w", err)
	}
	defer root.Close()
	ln := cfg.Listener
	if ln == nil {
		var lc net.ListenConfig
		if ln, err = lc.Listen(ctx, "tcp", cfg.Addr); err != nil {
			return fmt.Errorf("static server: %w", err)
		}
	}
	srv := &http.Server{
		Handler:           &staticHandler{root: root, log: log},
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	log.Info("static server listening", "addr", ln.Addr().String(), "dir", cfg.Dir)

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("static server: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	err = srv.Shutdown(shutdownCtx)
	<-served
	if err != nil {
		srv.Close()
		return fmt.Errorf("static server: shutdown: %w", err)
	}
	log.Info("static server stopped")
	return nil
}

type staticHandler struct {
	root *os.Root
	log  *slog.Logger
}

var _ http.Handler = (*staticHandler)(nil)

func (h *staticHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("X-Content-Type-Options", "nosniff")
	urlPath := r.URL.Path
	if !strings.HasPrefix(urlPath, "/") {
		urlPath = "/" + urlPath
	}
	name, ok := staticName(urlPath)
	if !ok {
		h.notFound(w, r)
		return
	}
	f, fi, err := h.open(name)
	if err != nil {
		h.notFound(w, r)
		return
	}
	if fi.IsDir() {
		f.Close()
		if !strings.HasSuffix(urlPath, "/") {
			target := path.Base(urlPath) + "/"
			if r.URL.RawQuery != "" {
				target += "?" + r.URL.RawQuery
			}
			http.Redirect(w, r, target, http.StatusMovedPermanently)
			return
		}
		if f, fi, err = h.open(path.Join(name, "index.html")); err != nil || fi.IsDir() {
			if err == nil {
				f.Close()
			}
			h.notFound(w, r)
			return
		}
		name = path.Join(name, "index.html")
	}
	defer f.Close()
	h.serveFile(w, r, name, f, fi, http.StatusOK)
}

// staticName maps a URL path to a name inside the root, refusing hidden
// segments and anything that does not stay inside.
func staticName(urlPath string) (string, bool) {
	if strings.ContainsAny(urlPath, "\x00\\") {
		return "", false
	}
	for seg := range strings.SplitSeq(urlPath, "/") {
		if seg == ".." {
			return "", false
		}
		if strings.HasPrefix(seg, ".") && seg != "." && seg != ".well-known" {
			return "", false
		}
	}
	name := strings.TrimPrefix(path.Clean(urlPath), "/")
	if name == "" {
		name = "."
	}
	return name, true
}

// open opens name, falling back to name.html for extension-less names.
func (h *staticHandler) open(name string) (*os.File, fs.FileInfo, error) {
	f, fi, err := h.openOne(name)
	if errors.Is(err, fs.ErrNotExist) && path.Ext(name) == "" && name != "." {
		return h.openOne(name + ".html")
	}
	return f, fi, err
}

func (h *staticHandler) openOne(name string) (*os.File, fs.FileInfo, error) {
	// Stat first: opening a fifo would block.
	if fi, err := h.root.Stat(name); err != nil {
		return nil, nil, err
	} else if !fi.IsDir() && !fi.Mode().IsRegular() {
		return nil, nil, fs.ErrNotExist
	}
	f, err := h.root.Open(name)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if !fi.IsDir() && !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, fs.ErrNotExist
	}
	return f, fi, nil
}

func (h *staticHandler) notFound(w http.ResponseWriter, r *http.Request) {
	f, fi, err := h.openOne("404.html")
	if err != nil || fi.IsDir() {
		if err == nil {
			f.Close()
		}
		w.Header().Set("Cache-Control", cacheRevalidate)
		http.Error(w, "404 page not found", http.StatusNotFound)
		return
	}
	defer f.Close()
	h.serveFile(w, r, "404.html", f, fi, http.StatusNotFound)
}

// serveFile writes f with caching headers. A status other than 200 skips
// conditional and range handling.
func (h *staticHandler) serveFile(w http.ResponseWriter, r *http.Request, name string, f *os.File, fi fs.FileInfo, status int) {
	ctype := mime.TypeByExtension(path.Ext(name))
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	hdr := w.Header()
	hdr.Set("Content-Type", ctype)
	hdr.Set("Cache-Control", cacheControl(name, ctype))
	hdr.Add("Vary", "Accept-Encoding")
	etag := fmt.Sprintf(`"%x-%x`, fi.ModTime().UnixNano(), fi.Size())

	compress := compressible(ctype) && fi.Size() >= minGzipSize &&
		r.Header.Get("Range") == "" && acceptsGzip(r)
	if compress {
		etag += `-gz`
	}
	etag += `"`

	if status != http.StatusOK {
		var body io.Writer = w
		if compress {
			hdr.Set("Content-Encoding", "gzip")
			zw := gzip.NewWriter(w)
			defer zw.Close()
			body = zw
		} else {
			hdr.Set("Content-Length", fmt.Sprint(fi.Size()))
		}
		w.WriteHeader(status)
		if r.Method != http.MethodHead {
			io.Copy(body, f)
		}
		return
	}
	hdr.Set("ETag", etag)
	if compress {
		gw := &gzipResponse{ResponseWriter: w}
		defer gw.close()
		w = gw
	}
	http.ServeContent(w, r, name, fi.ModTime(), f)
}

// cacheControl picks the Cache-Control value for a file.
func cacheControl(name, ctype string) string {
	if strings.HasPrefix(ctype, "text/html") {
		return cacheRevalidate
	}
	if strings.HasPrefix(name, "assets/") || strings.Contains(name, "/assets/") || hashedName(path.Base(name)) {
		return cacheAssets
	}
	return cacheRevalidate
}

// hashedName reports whether a file name carries a content hash, as in
// "app.3f2a9c1b.js" or "index-BxK3f9aQ.css": a dot-, dash- or
// underscore-separated part (not the first) of 8 or more letters and
// digits that contains both.
func hashedName(base string) bool {
	parts := strings.FieldsFunc(base, func(r rune) bool { return r == '.' || r == '-' || r == '_' })
	for i, part := range parts {
		if i > 0 && len(part) >= 8 && isHashLike(part) {
			return true
		}
	}
	return false
}

// isHashLike reports whether s has only ASCII letters and digits, and both.
func isHashLike(s string) bool {
	digits, letters := false, false
	for _, c := range s {
		switch {
		case c >= '0' && c <= '9':
			digits = true
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			letters = true
		default:
			return false
		}
	}
	return digits && letters
}

func compressible(ctype string) bool {
	mediaType, _, _ := strings.Cut(ctype, ";")
	switch {
	case strings.HasPrefix(mediaType, "text/"):
		return true
	case strings.HasSuffix(mediaType, "+json"), strings.HasSuffix(mediaType, "+xml"):
		return true
	}
	switch mediaType {
	case "application/javascript", "application/json", "application/xml", "application/wasm", "image/svg+xml":
		return true
	}
	return false
}

// acceptsGzip reports whether the request's Accept-Encoding allows gzip.
func acceptsGzip(r *http.Request) bool {
	for _, field := range r.Header.Values("Accept-Encoding") {
		for part := range strings.SplitSeq(field, ",") {
			coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			if !strings.EqualFold(strings.TrimSpace(coding), "gzip") {
				continue
			}
			q := strings.ReplaceAll(strings.TrimSpace(params), " ", "")
			return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
		}
	}
	return false
}

// gzipResponse compresses a 200 response body written by
// http.ServeContent; other statuses (304, 412, ...) pass through.
type gzipResponse struct {
	http.ResponseWriter
	zw          *gzip.Writer // created on the first body write
	wroteHeader bool
	compress    bool
}

func (g *gzipResponse) WriteHeader(status int) {
	if g.wroteHeader {
		return
	}
	g.wroteHeader = true
	if status == http.StatusOK {
		h := g.Header()
		h.Del("Content-Length")
		h.Set("Content-Encoding", "gzip")
		g.compress = true
	}
	g.ResponseWriter.WriteHeader(status)
}

func (g *gzipResponse) Write(p []byte) (int, error) {
	if !g.wroteHeader {
		g.WriteHeader(http.StatusOK)
	}
	if !g.compress {
		return g.ResponseWriter.Write(p)
	}
	if g.zw == nil {
		g.zw = gzip.NewWriter(g.ResponseWriter)
	}
	return g.zw.Write(p)
}

// close ends the gzip stream, if a body was written.
func (g *gzipResponse) close() {
	if g.zw != nil {
		g.zw.Close()
	}
}
