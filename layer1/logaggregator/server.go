package logaggregator

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/gantryhq/gantry/layer0/reuseport"
	"github.com/gantryhq/gantry/layer1/logaggregator/types"
)

// Timings of the server.
const (
	// flushInterval is how often kept lines are written to the files.
	flushInterval = 200 * time.Millisecond
	// writeTimeout bounds each write of an answer to a reader.
	writeTimeout = 30 * time.Second
	// readHeaderTimeout and idleTimeout protect the listener.
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 2 * time.Minute
	// shutdownGrace bounds the wait for ingest requests at shutdown.
	shutdownGrace = 5 * time.Second
)

// Server is the log aggregator: its HTTP API and the apps' histories.
type Server struct {
	cfg     Config
	log     *slog.Logger
	handler http.Handler
	token   [sha256.Size]byte

	mu   sync.Mutex
	apps map[string]*appLog

	stop      chan struct{}
	flushed   chan struct{}
	closeOnce sync.Once
}

// New loads the apps' histories from cfg.DataDir and returns a Server; the
// caller must Close it. Unreadable lines of a file are skipped (and the
// file rewritten without them); a file that cannot be read fails New.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("log aggregator: data dir: %w", err)
	}
	s := &Server{
		cfg:     cfg,
		log:     cfg.Logger,
		token:   sha256.Sum256([]byte(cfg.Token)),
		apps:    map[string]*appLog{},
		stop:    make(chan struct{}),
		flushed: make(chan struct{}),
	}
	files, err := filepath.Glob(filepath.Join(cfg.DataDir, "*"+fileSuffix))
	if err != nil {
		return nil, fmt.Errorf("log aggregator: %w", err)
	}
	lines := 0
	for _, f := range files {
		app := strings.TrimSuffix(filepath.Base(f), fileSuffix)
		if !types.ValidApp(app) {
			continue
		}
		al := newAppLog(cfg.DataDir, app, cfg.Lines, s.log)
		if err := al.load(); err != nil {
			for _, loaded := range s.apps {
				loaded.close()
			}
			return nil, fmt.Errorf("log aggregator: %w", err)
		}
		s.apps[app] = al
		lines += len(al.lines())
	}
	s.log.Info("log aggregator loaded", "data_dir", cfg.DataDir, "apps", len(s.apps), "lines", lines,
		"lines_per_app", cfg.Lines, "max_body_bytes", cfg.MaxBodyBytes, "idle_timeout", cfg.IdleTimeout)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("POST /v1/ingest", s.ingest)
	mux.HandleFunc("POST /v1/ingest/frames", s.ingestFrames)
	mux.HandleFunc("GET /v1/apps/{app}/log", s.query)
	mux.HandleFunc("DELETE /v1/apps/{app}/log", s.deleteApp)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no endpoint %s %s", r.Method, r.URL.Path))
	})
	s.handler = s.authenticate(mux)
	go s.flushLoop()
	return s, nil
}

// Handler returns the HTTP API.
func (s *Server) Handler() http.Handler { return s.handler }

// Close writes what is buffered to the files and closes them. Lines that
// arrive later are kept in memory only. It is idempotent.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.flushed
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, al := range s.apps {
			al.close()
		}
	})
}

// flushLoop writes the buffered lines of every app to its file every
// flushInterval until Close.
func (s *Server) flushLoop() {
	defer close(s.flushed)
	t := time.NewTicker(flushInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		s.mu.Lock()
		apps := make([]*appLog, 0, len(s.apps))
		for _, al := range s.apps {
			apps = append(apps, al)
		}
		s.mu.Unlock()
		for _, al := range apps {
			al.mu.Lock()
			al.flush()
			al.mu.Unlock()
		}
	}
}

// deleteApp forgets an app's history (DELETE /v1/apps/{app}/log), as when
// the app is deleted, so that a new app of the same name starts with an
// empty log. Followers of the app's log see their stream end.
func (s *Server) deleteApp(w http.ResponseWriter, r *http.Request) {
	app := r.PathValue("app")
	if !types.ValidApp(app) {
		writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("app %q: want an app name", app))
		return
	}
	s.mu.Lock()
	al := s.apps[app]
	delete(s.apps, app)
	s.mu.Unlock()
	if al == nil {
		al = newAppLog(s.cfg.DataDir, app, s.cfg.Lines, s.log)
	}
	if err := al.remove(); err != nil {
		s.log.Error("delete an app's log", "app", app, "err", err)
		writeError(w, http.StatusInternalServerError, "internal", fmt.Sprintf("delete the log of %s: %v", app, err))
		return
	}
	s.log.Info("app log deleted", "app", app)
	w.WriteHeader(http.StatusNoContent)
}

// appLog returns app's history, made empty when it has none.
func (s *Server) appLog(app string) *appLog {
	s.mu.Lock()
	defer s.mu.Unlock()
	al := s.apps[app]
	if al == nil {
		al = newAppLog(s.cfg.DataDir, app, s.cfg.Lines, s.log)
		s.apps[app] = al
	}
	return al
}

// Serve serves the API on ln until ctx ends, then stops following readers
// at once, gives ingest requests up to 5 seconds to end, and returns nil.
// It closes ln but not s.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	base, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return base },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	s.log.Info("log aggregator listening", "addr", ln.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("log aggregator: serve on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	cancel() // ends the followers
	sctx, stop := context.WithTimeout(context.Background(), shutdownGrace)
	defer stop()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	<-errc
	s.log.Info("log aggregator stopped")
	return nil
}

// Run serves cfg.Addr until ctx ends, then shuts down as Serve does and
// closes the files.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Addr == "" {
		return errors.New("log aggregator config: Addr is required")
	}
	s, err := New(cfg)
	if err != nil {
		return err
	}
	defer s.Close()
	ln, err := reuseport.Listen(ctx, cfg.Addr, cfg.ReusePort)
	if err != nil {
		return fmt.Errorf("log aggregator: listen on %s: %w", cfg.Addr, err)
	}
	if cfg.Ready != nil {
		cfg.Ready()
	}
	return s.Serve(ctx, ln)
}

// authenticate lets /v1/ requests through only with the token.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v1/") {
			scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
			sum := sha256.Sum256([]byte(strings.TrimSpace(token)))
			if !ok || !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare(sum[:], s.token[:]) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="gantry-logs"`)
				writeError(w, http.StatusUnauthorized, "unauthorized", "send the platform token: \"Authorization: Bearer <token>\"")
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// ingestResult is the answer to an ingest request.
type ingestResult struct {
	// Accepted counts the new lines kept.
	Accepted int `json:"accepted"`
	// Duplicates counts the lines already kept, or older than a full
	// history, which were not kept again.
	Duplicates int `json:"duplicates"`
}

// ingest keeps the NDJSON lines of the body (POST /v1/ingest) as they
// arrive, so one request can stay open for as long as a shipper has lines.
// A bad line ends the request with a 400 or 413 that names it; the lines
// before it are kept.
func (s *Server) ingest(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	br := bufio.NewReaderSize(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes), 64<<10)
	var res ingestResult
	var buf []byte
	kept := func() string {
		if n := res.Accepted + res.Duplicates; n > 0 {
			return fmt.Sprintf("; the %d lines before it were kept", n)
		}
		return ""
	}
	for n := 1; ; n++ {
		_ = rc.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout))
		b, err := readLine(br, buf, types.MaxWireLine)
		buf = b[:0]
		var tooLarge *http.MaxBytesError
		var netErr net.Error
		switch {
		case errors.Is(err, errLineTooLong):
			writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("line %d is longer than %d bytes%s", n, types.MaxWireLine, kept()))
			return
		case errors.As(err, &tooLarge):
			writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("the body is larger than %d bytes; start a new request%s", s.cfg.MaxBodyBytes, kept()))
			return
		case errors.As(err, &netErr) && netErr.Timeout():
			s.log.Debug("ingest request idle; ended", "remote", r.RemoteAddr, "idle", s.cfg.IdleTimeout)
			writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("no line came for %s%s", s.cfg.IdleTimeout, kept()))
			return
		case err != nil && !errors.Is(err, io.EOF):
			s.log.Debug("ingest request broken off", "remote", r.RemoteAddr, "err", err, "accepted", res.Accepted)
			return
		case err != nil && len(b) == 0:
			writeJSON(w, http.StatusOK, res)
			return
		}
		if len(bytes.TrimSpace(b)) > 0 {
			line, perr := ParseLine(b)
			if perr != nil {
				writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("line %d: %v%s", n, perr, kept()))
				return
			}
			if s.appLog(line.App).insert(line) {
				res.Accepted++
			} else {
				res.Duplicates++
			}
		}
	}
}

// frameReadBuffer is the read buffer of a frames ingest request: room for
// the largest frame and more.
const frameReadBuffer = 128 << 10

// ingestFrames keeps the lines of a frames body (POST /v1/ingest/frames;
// see types.FrameMagic) as they arrive, a read's worth at a time: each
// app's lines of one read are kept under one lock, and the bytes are
// decoded in place, with the app, type and job of a line shared with the
// line before when they are the same, so a line costs one allocation (its
// text). It answers as ingest does.
func (s *Server) ingestFrames(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	body := http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
	var res ingestResult
	kept := func() string {
		if n := res.Accepted + res.Duplicates; n > 0 {
			return fmt.Sprintf("; the %d lines before it were kept", n)
		}
		return ""
	}
	buf := make([]byte, 0, frameReadBuffer)
	var lines []types.Line
	var f types.Frame
	var prev types.Line
	magic := false
	frames := 0
	for {
		_ = rc.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout))
		n, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		p := buf
		if !magic && len(p) >= len(types.FrameMagic) {
			if string(p[:len(types.FrameMagic)]) != types.FrameMagic {
				writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("the body does not start with %q: not frames of this version", types.FrameMagic))
				return
			}
			p, magic = p[len(types.FrameMagic):], true
		}
		var derr error
		for magic && len(p) > 0 {
			m, e := types.DecodeFrame(p, &f)
			if e != nil {
				if !errors.Is(e, types.ErrShortFrame) {
					derr = fmt.Errorf("line %d: %w", frames+1, e)
				}
				break
			}
			frames++
			prev = frameLine(&f, &prev)
			lines = append(lines, prev)
			p = p[m:]
		}
		s.keep(lines, &res)
		clear(lines)
		lines = lines[:0]
		buf = buf[:copy(buf, p)]
		var tooLarge *http.MaxBytesError
		var netErr net.Error
		switch {
		case derr != nil:
			writeError(w, http.StatusBadRequest, "bad_request", derr.Error()+kept())
			return
		case errors.As(err, &tooLarge):
			writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("the body is larger than %d bytes; start a new request%s", s.cfg.MaxBodyBytes, kept()))
			return
		case errors.As(err, &netErr) && netErr.Timeout():
			s.log.Debug("ingest request idle; ended", "remote", r.RemoteAddr, "idle", s.cfg.IdleTimeout)
			writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("no line came for %s%s", s.cfg.IdleTimeout, kept()))
			return
		case err != nil && !errors.Is(err, io.EOF):
			s.log.Debug("ingest request broken off", "remote", r.RemoteAddr, "err", err, "accepted", res.Accepted)
			return
		case err != nil && len(buf) > 0 && !magic:
			writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("the body does not start with %q: not frames of this version", types.FrameMagic))
			return
		case err != nil && len(buf) > 0:
			writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("line %d: the body ends inside it%s", frames+1, kept()))
			return
		case err != nil:
			writeJSON(w, http.StatusOK, res)
			return
		}
	}
}

// frameLine returns f as a Line, with the strings of prev where f has the
// same app, type or job.
func frameLine(f *types.Frame, prev *types.Line) types.Line {
	l := types.Line{App: prev.App, Source: f.Source, Type: prev.Type, Job: prev.Job, Index: f.Index, Time: f.Time, Msg: string(f.Msg)}
	if string(f.App) != l.App {
		l.App = string(f.App)
	}
	if string(f.Type) != l.Type {
		l.Type = string(f.Type)
	}
	if string(f.Job) != l.Job {
		l.Job = string(f.Job)
	}
	return l
}

// keep keeps lines, each run of lines of one app under one lock of its
// history, and counts them in res.
func (s *Server) keep(lines []types.Line, res *ingestResult) {
	for len(lines) > 0 {
		n := 1
		for n < len(lines) && lines[n].App == lines[0].App {
			n++
		}
		accepted := s.appLog(lines[0].App).insertAll(lines[:n])
		res.Accepted += accepted
		res.Duplicates += n - accepted
		lines = lines[n:]
	}
}

// query answers the lines of one app (GET /v1/apps/{app}/log) as NDJSON in
// time order, and with follow=1 keeps sending the new ones until the reader
// goes.
func (s *Server) query(w http.ResponseWriter, r *http.Request) {
	app := r.PathValue("app")
	if !types.ValidApp(app) {
		writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("app %q: want an app name", app))
		return
	}
	q, err := types.ParseQuery(r.URL.Query(), s.cfg.Lines)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	al := s.appLog(app)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	send := func(lines []types.Line) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(writeTimeout))
		for _, l := range lines {
			if err := enc.Encode(l); err != nil {
				return false
			}
		}
		return rc.Flush() == nil
	}
	if !q.Follow {
		w.WriteHeader(http.StatusOK)
		send(al.tail(q))
		return
	}
	lines, f := al.follow(q)
	defer al.unfollow(f)
	w.WriteHeader(http.StatusOK)
	if !send(lines) {
		return
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case l, ok := <-f.ch:
			if !ok {
				return // the app's log was deleted
			}
			batch := []types.Line{l}
			if n := f.dropped.Swap(0); n > 0 {
				batch = append([]types.Line{{
					App: app, Source: types.SourceGantry, Time: l.Time,
					Msg: fmt.Sprintf("%d lines were dropped from this stream because it fell behind", n),
				}}, batch...)
			}
			if !send(batch) {
				return
			}
		}
	}
}

// errorBody is the API's error answer.
type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	var b errorBody
	b.Error.Code, b.Error.Message = code, msg
	writeJSON(w, status, b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v) // an error means the client went away
}
