package logread

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/gantryhq/gantry/layer0/etcdwatch"
	"github.com/gantryhq/gantry/layer1/logaggregator/types"
)

// maxBatch is the most lines handed to emit at once.
const maxBatch = 512

// Follow answers a followed query about app. It opens the live stream of
// every aggregator, then calls emit once with no lines (the answer has
// started), once with the last q.Lines lines as History gives them, and
// then with the lines of the streams as they come, in the order they
// come, until ctx ends (nil), emit fails (its error), or a stream ends
// and gone reports that the app no longer exists (nil).
//
// A stream that breaks, or cannot be opened, is opened again after a
// pause (0.5 s, doubling to 10 s) for as long as a host names its
// aggregator, asking for the lines since the last one it gave (or since
// Follow started), so lines written meanwhile are not lost; the
// aggregator of a host that registers later is read from the lines since
// Follow started. It returns an error before calling emit when no stream
// could be opened: ErrNoAggregator, or one wrapping ErrUnavailable.
func (r *Reader) Follow(ctx context.Context, app string, q types.Query, gone func(context.Context) bool, emit func([][]byte) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	snaps, err := etcdwatch.Watch(ctx, etcdwatch.Config{Client: r.cfg.Etcd, Prefix: r.cfg.Space.Hosts(),
		RequestTimeout: etcdTimeout, Logger: r.log})
	if err != nil {
		return fmt.Errorf("watch the hosts: %w", err)
	}
	f := &follow{r: r, ctx: ctx, app: app, q: q, start: time.Now(), gone: gone, snaps: snaps,
		hosts: hostURLs{}, sources: map[string]*source{}, events: make(chan event, maxBatch), retry: make(chan string)}
	defer f.wg.Wait()
	defer cancel()
	defer f.stopTimers()
	select {
	case snap := <-snaps:
		f.hosts = r.hostsOf(snap)
	case <-time.After(etcdTimeout):
		if r.cfg.Fallback == "" {
			return fmt.Errorf("read the hosts: no answer from etcd within %s", etcdTimeout)
		}
		r.log.Warn("cannot read the hosts' log aggregators; reading the controller's own until etcd answers", "url", r.cfg.Fallback)
	case <-ctx.Done():
		return ctx.Err()
	}
	if f.current = r.urls(f.hosts); len(f.current) == 0 {
		return ErrNoAggregator
	}
	if err := f.openAll(); err != nil {
		return err
	}
	if err := emit(nil); err != nil {
		return err
	}
	if err := f.history(emit); err != nil {
		return err
	}
	return f.loop(emit)
}

// follow is the state of one Follow.
type follow struct {
	r     *Reader
	ctx   context.Context
	app   string
	q     types.Query
	start time.Time
	gone  func(context.Context) bool

	snaps   <-chan etcdwatch.Snapshot // the host records
	sources map[string]*source        // by URL, kept once a source is no longer read
	hosts   hostURLs                  // the registered hosts
	current []string                  // the URLs to read: r.urls(hosts)
	// histSeen holds the lines of the history, which the streams opened
	// before it may give again (those the aggregators kept between the
	// opening and the history query), and histNewest the time of its
	// newest line: a line of the streams newer than it is not in it. A
	// line equal to a line of the history is that line: an aggregator
	// keeps a line once, and no line is shipped to two.
	histSeen   map[string]struct{}
	histNewest time.Time

	events chan event
	retry  chan string // a source's pause is over
	wg     sync.WaitGroup
}

// source is one aggregator of a Follow.
type source struct {
	url     string
	running bool // its stream is open or being opened
	failing bool // its last stream failed; warned about
	fails   int  // streams in a row that could not be opened
	// since is the time of the newest line it gave (the start of Follow
	// before), and seen the lines of that time, which a stream opened
	// again gives again.
	since time.Time
	seen  []string
	timer *time.Timer // sends on retry; nil when none is pending
}

// event is a line of a stream, or news of its state.
type event struct {
	url    string
	line   line
	kind   eventKind
	opened bool  // eventEnd: the stream had opened
	err    error // eventEnd: why it ended; nil for the end of its answer
}

type eventKind int

const (
	eventLine eventKind = iota
	eventOpened
	eventEnd
)

// openAll opens the live stream of every current source at once, and
// fails when none opens.
func (f *follow) openAll() error {
	live := f.q
	live.Follow, live.Lines = true, 0
	resps := make([]*http.Response, len(f.current))
	errs := make([]error, len(f.current))
	var wg sync.WaitGroup
	for i, u := range f.current {
		wg.Go(func() { resps[i], errs[i] = f.r.open(f.ctx, u, f.app, live) })
	}
	wg.Wait()
	if !slices.ContainsFunc(errs, func(e error) bool { return e == nil }) {
		return fmt.Errorf("%w: %w", ErrUnavailable, errors.Join(errs...))
	}
	for i, u := range f.current {
		s := &source{url: u, since: f.start}
		f.sources[u] = s
		if errs[i] != nil {
			f.ended(s, false, errs[i])
			continue
		}
		s.running = true
		f.wg.Go(func() { f.stream(u, live, resps[i]) })
	}
	return nil
}

// history emits the last q.Lines lines of the sources whose streams are
// open and keeps them to drop from the streams.
func (f *follow) history(emit func([][]byte) error) error {
	if f.q.Lines <= 0 {
		return nil
	}
	var urls []string
	for _, u := range f.current {
		if f.sources[u].running {
			urls = append(urls, u)
		}
	}
	hq := f.q
	hq.Follow = false
	ctx, cancel := context.WithTimeout(f.ctx, QueryTimeout)
	lines, _, _ := f.r.histories(ctx, urls, f.app, hq)
	cancel()
	if len(lines) == 0 {
		return nil
	}
	f.histSeen = make(map[string]struct{}, len(lines))
	f.histNewest = lines[len(lines)-1].time
	out := make([][]byte, len(lines))
	for i, l := range lines {
		f.histSeen[string(l.raw)] = struct{}{}
		out[i] = l.raw
	}
	return emit(out)
}

// stream reads one aggregator's stream of q (resp, its answer, or one it
// opens) into f.events until it ends, then says so.
func (f *follow) stream(u string, q types.Query, resp *http.Response) {
	var err error
	if resp == nil {
		resp, err = f.r.open(f.ctx, u, f.app, q)
		if err != nil {
			send(f.ctx, f.events, event{url: u, kind: eventEnd, err: err})
			return
		}
		send(f.ctx, f.events, event{url: u, kind: eventOpened})
	}
	defer resp.Body.Close()
	err = readLines(resp.Body, func(l line) error {
		if !send(f.ctx, f.events, event{url: u, line: l}) {
			return f.ctx.Err()
		}
		return nil
	})
	send(f.ctx, f.events, event{url: u, kind: eventEnd, opened: true, err: err})
}

// send sends v on ch unless ctx ends first; it reports whether it sent.
func send[T any](ctx context.Context, ch chan<- T, v T) bool {
	select {
	case ch <- v:
		return true
	case <-ctx.Done():
		return false
	}
}

// loop hands the streams' lines to emit and keeps the streams open, until
// the follow ends.
func (f *follow) loop(emit func([][]byte) error) error {
	var batch [][]byte
	for {
		select {
		case <-f.ctx.Done():
			return nil
		case ev := <-f.events:
			batch = batch[:0]
			for {
				raw, ended := f.handle(ev)
				if ended {
					return nil
				}
				if raw != nil {
					batch = append(batch, raw)
				}
				if len(batch) >= maxBatch {
					break
				}
				var more bool
				select {
				case ev = <-f.events:
					more = true
				default:
				}
				if !more {
					break
				}
			}
			if len(batch) > 0 {
				if err := emit(batch); err != nil {
					return err
				}
			}
		case u := <-f.retry:
			s := f.sources[u]
			s.timer = nil
			if !s.running && slices.Contains(f.current, u) {
				f.reopen(s)
			}
		case snap, ok := <-f.snaps:
			if !ok {
				return nil // ctx ended
			}
			f.hosts = f.r.hostsOf(snap)
			f.reconcile()
		}
	}
}

// handle takes in one event and returns the line to emit, if any, and
// whether the follow is over (the app is gone).
func (f *follow) handle(ev event) (raw []byte, over bool) {
	s := f.sources[ev.url]
	switch ev.kind {
	case eventOpened:
		if s.failing {
			f.r.log.Info("log aggregator answers again", "url", s.url, "app", f.app)
		}
		s.failing, s.fails = false, 0
		return nil, false
	case eventEnd:
		s.running = false
		if f.ctx.Err() != nil {
			return nil, false
		}
		if f.gone != nil && f.gone(f.ctx) {
			return nil, true
		}
		f.ended(s, ev.opened, ev.err)
		return nil, false
	}
	l := ev.line
	if !l.time.After(f.histNewest) {
		if _, dup := f.histSeen[string(l.raw)]; dup {
			return nil, false
		}
	}
	switch {
	case l.time.After(s.since):
		s.since, s.seen = l.time, append(s.seen[:0], string(l.raw))
	case l.time.Equal(s.since):
		if slices.Contains(s.seen, string(l.raw)) {
			return nil, false // given again by a stream opened again
		}
		s.seen = append(s.seen, string(l.raw))
	}
	return l.raw, false
}

// ended notes that the stream of s ended (opened: after it had opened) or
// could not be opened, and opens it again after a pause while a host
// names its aggregator.
func (f *follow) ended(s *source, opened bool, err error) {
	if opened {
		s.fails = 0
	}
	if !s.failing || opened {
		msg := "log aggregator unreachable; its lines are left out of the followed log until it answers"
		if opened {
			msg = "log stream from an aggregator ended; opening it again"
		}
		f.r.log.Warn(msg, "url", s.url, "app", f.app, "err", err)
	}
	s.failing = !opened
	s.fails++
	if slices.Contains(f.current, s.url) {
		pause := min(retryMin<<min(s.fails-1, 8), retryMax)
		s.timer = time.AfterFunc(pause, func() { send(f.ctx, f.retry, s.url) })
	}
}

// reopen opens the stream of s again, from the lines since its last one.
func (f *follow) reopen(s *source) {
	q := f.q
	q.Follow, q.Lines = true, maxResumeLines
	if s.since.After(q.Since) {
		q.Since = s.since
	}
	s.running = true
	f.wg.Go(func() { f.stream(s.url, q, nil) })
}

// reconcile reads the aggregators of the hosts now registered: a new one
// from the start of the follow, one whose stream ended at once.
func (f *follow) reconcile() {
	f.current = f.r.urls(f.hosts)
	for _, u := range f.current {
		s := f.sources[u]
		if s == nil {
			s = &source{url: u, since: f.start}
			f.sources[u] = s
		}
		if !s.running && s.timer == nil {
			f.reopen(s)
		}
	}
}

// stopTimers stops the pending pauses.
func (f *follow) stopTimers() {
	for _, s := range f.sources {
		if s.timer != nil {
			s.timer.Stop()
		}
	}
}
