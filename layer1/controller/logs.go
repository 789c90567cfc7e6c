package controller

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/gantryhq/gantry/layer1/controller/logread"
	"github.com/gantryhq/gantry/layer1/controller/store"
	"github.com/gantryhq/gantry/layer1/controller/types"
	logtypes "github.com/gantryhq/gantry/layer1/logaggregator/types"
)

// maxLogLines caps the lines of one log query; the aggregators cut it
// further to the history they keep.
const maxLogLines = 1000000

// appLog answers an app's log (GET /v1/apps/{app}/log) from the log
// aggregators of all the hosts (package logread), with the platform
// token: the query's parameters are checked here and passed on, and the
// NDJSON answer is streamed back a batch of lines at a time, for as long
// as the client stays when it follows. An aggregator that does not answer
// is left out (and logged); the answer is 503 only when none does.
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
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	// A shutdown ends the answer cleanly rather than wait for the reader.
	defer context.AfterFunc(s.logs.context(), cancel)()
	rc := http.NewResponseController(w)
	started := false
	var buf []byte
	emit := func(lines [][]byte) error {
		if !started {
			started = true
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.Header().Set("Cache-Control", "no-store")
			w.Header().Set("X-Content-Type-Options", "nosniff")
			w.WriteHeader(http.StatusOK)
		}
		buf = buf[:0]
		for i, l := range lines {
			buf = append(append(buf, l...), '\n')
			if len(buf) >= 64<<10 || i == len(lines)-1 {
				if _, err := w.Write(buf); err != nil {
					return err
				}
				buf = buf[:0]
			}
		}
		return rc.Flush()
	}
	if q.Follow {
		gone := func(ctx context.Context) bool {
			_, err := s.store.GetApp(ctx, app)
			return errors.Is(err, store.ErrAppNotFound)
		}
		err = s.logReader.Follow(ctx, app, q, gone, emit)
	} else {
		var lines [][]byte
		if lines, err = s.logReader.History(ctx, app, q); err == nil {
			err = emit(lines)
		}
	}
	switch {
	case err == nil || started || r.Context().Err() != nil:
		// Done, or the answer has started (the client went away or the
		// shutdown ended it): nothing more to say.
	case errors.Is(err, logread.ErrNoAggregator):
		writeError(w, types.ErrUnavailable.WithMessage("this controller has no log aggregator configured"))
	default:
		s.log.Warn("no log aggregator answered", "app", app, "err", err)
		writeError(w, types.ErrUnavailable.WithMessage("the log aggregator is unreachable; try again shortly"))
	}
}

// deleteAppLog asks the log aggregators to forget app's log, when the app
// is deleted. Without an aggregator there is nothing to do.
func (s *Server) deleteAppLog(ctx context.Context, app string) error {
	return s.logReader.Delete(ctx, app)
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
