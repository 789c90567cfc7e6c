package controller

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gantryhq/gantry/layer1/controller/types"
	logtypes "github.com/gantryhq/gantry/layer1/logaggregator/types"
)

const (
	// maxLogLines caps the lines of one log query; the aggregator cuts it
	// further to the history it keeps.
	maxLogLines = 1000000
	// logQueryTimeout bounds a log query that does not follow.
	logQueryTimeout = 30 * time.Second
)

// logClient sends the log queries to the aggregator. A followed log lasts
// as long as its reader, so only connecting and the answer's head are
// bounded; the reader's leaving cancels the query.
var logClient = &http.Client{
	Transport: &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		ResponseHeaderTimeout: 30 * time.Second,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
	},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// appLog answers an app's log (GET /v1/apps/{app}/log) from the log
// aggregator, with the platform token: the query's parameters are checked
// here and passed on, and the NDJSON answer is streamed back a line at a
// time, for as long as the client stays when it follows.
func (s *Server) appLog(w http.ResponseWriter, r *http.Request) {
	app := r.PathValue("app")
	if _, err := s.store.GetApp(r.Context(), app); err != nil {
		s.fail(w, r, err)
		return
	}
	q, err := logtypes.ParseQuery(r.URL.Query(), maxLogLines)
	if err != nil {
		writeError(w, types.ErrBadRequest.WithMessage("%s", err.Error()))
		return
	}
	if s.cfg.LogURL == "" {
		writeError(w, types.ErrUnavailable.WithMessage("this controller has no log aggregator configured"))
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	if !q.Follow {
		ctx, cancel = context.WithTimeout(ctx, logQueryTimeout)
		defer cancel()
	}
	// A shutdown ends the answer cleanly rather than wait for the reader.
	defer context.AfterFunc(s.logs.context(), cancel)()
	upstream := strings.TrimRight(s.cfg.LogURL, "/") + "/v1/apps/" + url.PathEscape(app) + "/log?" + q.Values().Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, upstream, nil)
	if err != nil {
		s.fail(w, r, fmt.Errorf("log query: %w", err))
		return
	}
	req.Header.Set("Authorization", "Bearer "+s.cfg.HostToken)
	resp, err := logClient.Do(req)
	if err != nil {
		if r.Context().Err() != nil {
			return // the client went away
		}
		s.log.Warn("log aggregator unreachable", "url", s.cfg.LogURL, "app", app, "err", err)
		writeError(w, types.ErrUnavailable.WithMessage("the log aggregator is unreachable; try again shortly"))
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		s.log.Warn("log aggregator refused a query", "url", s.cfg.LogURL, "app", app, "status", resp.Status, "body", strings.TrimSpace(string(body)))
		writeError(w, types.ErrUnavailable.WithMessage("the log aggregator answered %s", resp.Status))
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	if err := rc.Flush(); err != nil {
		return
	}
	// The aggregator flushes after each line; pass each piece on at once.
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			if rc.Flush() != nil {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && ctx.Err() == nil {
				s.log.Warn("log stream from the aggregator broke off", "app", app, "err", err)
			}
			return
		}
	}
}

// deleteAppLog asks the log aggregator to forget app's log, when the app
// is deleted. Without an aggregator there is nothing to do.
func (s *Server) deleteAppLog(ctx context.Context, app string) error {
	if s.cfg.LogURL == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, logQueryTimeout)
	defer cancel()
	upstream := strings.TrimRight(s.cfg.LogURL, "/") + "/v1/apps/" + url.PathEscape(app) + "/log"
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, upstream, nil)
	if err != nil {
		return fmt.Errorf("delete the log of %s: %w", app, err)
	}
	req.Header.Set("Authorization", "Bearer "+s.cfg.HostToken)
	resp, err := logClient.Do(req)
	if err != nil {
		return fmt.Errorf("delete the log of %s: %w", app, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return fmt.Errorf("delete the log of %s: the log aggregator answered %s: %s", app, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// logStreams ends the answers of followed logs when the server shuts
// down. Its zero value is ready.
type logStreams struct {
	once   sync.Once
	ctx    context.Context
	cancel context.CancelFunc
}

func (l *logStreams) init() {
	l.once.Do(func() { l.ctx, l.cancel = context.WithCancel(context.Background()) })
}

// context returns a context that ends with end.
func (l *logStreams) context() context.Context {
	l.init()
	return l.ctx
}

// end ends every followed log.
func (l *logStreams) end() {
	l.init()
	l.cancel()
}

// scaleEvent is the app's log event of a scale: "scaled web=3 worker=1".
func scaleEvent(counts map[string]int) string {
	parts := make([]string, 0, len(counts))
	for _, typ := range slices.Sorted(maps.Keys(counts)) {
		parts = append(parts, fmt.Sprintf("%s=%d", typ, counts[typ]))
	}
	return "scaled " + strings.Join(parts, " ")
}

// restartEvent is the app's log event of a rolling restart of one process
// type ("" for all).
func restartEvent(typ string) string {
	if typ == "" {
		return "restarting all processes"
	}
	return "restarting " + typ
}
