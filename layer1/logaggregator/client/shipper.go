// Package client ships log lines to the log aggregator (see package
// logaggregator): the host agents, the router and the controller each use a
// Shipper.
package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gantryhq/gantry/layer1/logaggregator/types"
)

// Defaults of the ShipperConfig fields whose zero value means a default.
const (
	// DefaultBuffer is ShipperConfig.Buffer when it is 0.
	DefaultBuffer = 10000
	// DefaultCloseTimeout is ShipperConfig.CloseTimeout when it is 0.
	DefaultCloseTimeout = 5 * time.Second
)

// Timings and sizes of the streams.
const (
	// streamIdle ends a stream that had no line for this long, so that
	// what it carried is confirmed soon after a burst.
	streamIdle = time.Second
	// streamAge ends a stream this old; a new one starts for more lines.
	streamAge = 30 * time.Second
	// streamLines ends a stream that carried this many lines.
	streamLines = 5000
	// streamLinger is the pause after each write to a stream, so that the
	// lines of a busy shipper (the router's, one per request) go out in
	// batches rather than one system call each; a line that comes after a
	// quiet spell goes at once.
	streamLinger = 10 * time.Millisecond
	// streamTimeout bounds one stream from its start to its answer.
	streamTimeout = streamAge + 30*time.Second
	// dialTimeout and headerTimeout bound connecting and the answer once
	// the body is sent.
	dialTimeout   = 5 * time.Second
	headerTimeout = 30 * time.Second
	// minBackoff and maxBackoff bound the pause before a new stream after
	// a failed one.
	minBackoff = 100 * time.Millisecond
	maxBackoff = 10 * time.Second
	// dropReportInterval is the least time between two logs of dropped
	// lines.
	dropReportInterval = 10 * time.Second
)

// ShipperConfig configures a Shipper.
type ShipperConfig struct {
	// URL is the log aggregator's base URL, e.g. "http://127.0.0.1:7072";
	// required.
	URL string
	// Token is the platform token the aggregator requires; required.
	Token string
	// Buffer is how many lines the Shipper holds while they are not yet
	// confirmed by the aggregator; Ship drops (and counts) lines beyond
	// it. Zero means DefaultBuffer (10,000).
	Buffer int
	// CloseTimeout bounds how long Close waits for the held lines to be
	// shipped. Zero means DefaultCloseTimeout (5 s).
	CloseTimeout time.Duration
	// Logger receives the Shipper's logs; nil discards them.
	Logger *slog.Logger
}

// Validate reports missing or malformed fields.
func (c ShipperConfig) Validate() error {
	if err := ValidateURL(c.URL); err != nil {
		return err
	}
	switch {
	case c.Token == "":
		return errors.New("log shipper: Token is required")
	case c.Buffer < 0:
		return fmt.Errorf("log shipper: Buffer %d is negative", c.Buffer)
	case c.CloseTimeout < 0:
		return fmt.Errorf("log shipper: CloseTimeout %s is negative", c.CloseTimeout)
	}
	return nil
}

// ValidateURL checks a log aggregator base URL such as
// "http://127.0.0.1:7072".
func ValidateURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.Trim(u.Path, "/") != "" {
		return fmt.Errorf("log aggregator URL %q: want a URL like http://127.0.0.1:7072", s)
	}
	return nil
}

// Shipper sends lines to the log aggregator from a goroutine of its own:
// Ship never blocks. Lines are held as frames (see types.AppendFrame) in
// a buffer that is reused, so shipping a line allocates nothing, and go
// over a streaming POST to /v1/ingest/frames that stays open while lines
// keep coming, a batch of frames per write. The lines of a stream are held
// until the aggregator confirms them, and sent again on a new stream when
// it fails (the aggregator keeps a line once, so nothing doubles). A failed
// stream is retried with a growing pause. An aggregator without the frames
// endpoint (an older version answers 404) gets NDJSON on /v1/ingest
// instead, from then on.
type Shipper struct {
	cfg     ShipperConfig
	log     *slog.Logger
	base    string
	http    *http.Client
	ndjson  bool   // the aggregator has no frames endpoint; owned by the goroutine
	sent    []byte // frames of the current stream; owned by the goroutine
	encoded []byte // NDJSON of a batch; owned by the goroutine

	mu       sync.Mutex
	pending  []byte // frames not yet sent
	npending int    // lines in pending
	spare    []byte // the buffer pending had before the last batch, for reuse
	inflight int    // sent on the current stream, not yet confirmed
	closing  bool

	wake     chan struct{}
	ctx      context.Context
	cancel   context.CancelFunc
	done     chan struct{}
	dropped  atomic.Uint64
	invalid  atomic.Uint64
	reported uint64 // dropped + invalid last logged; owned by the goroutine
	lastLog  time.Time

	closeOnce sync.Once
	closeErr  error
}

// NewShipper starts a Shipper; the caller must Close it.
func NewShipper(cfg ShipperConfig) (*Shipper, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Buffer == 0 {
		cfg.Buffer = DefaultBuffer
	}
	if cfg.CloseTimeout == 0 {
		cfg.CloseTimeout = DefaultCloseTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	tr := &http.Transport{
		DialContext:           (&net.Dialer{Timeout: dialTimeout}).DialContext,
		ResponseHeaderTimeout: headerTimeout,
		MaxIdleConnsPerHost:   1,
		IdleConnTimeout:       time.Minute,
		WriteBufferSize:       64 << 10,
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Shipper{
		cfg:    cfg,
		log:    cfg.Logger,
		base:   strings.TrimRight(cfg.URL, "/"),
		http:   &http.Client{Transport: tr},
		wake:   make(chan struct{}, 1),
		ctx:    ctx,
		cancel: cancel,
		done:   make(chan struct{}),
	}
	go s.run()
	return s, nil
}

// Ship queues l without blocking. A line is dropped (and counted) when the
// buffer is full, when l is invalid (see types.Line.Validate) or after
// Close.
func (s *Shipper) Ship(l types.Line) {
	if err := l.Validate(); err != nil {
		s.invalid.Add(1)
		return
	}
	s.queue(&l, nil)
}

// shipMsg queues l with msg as its text, which must be a valid Msg (see
// types.ValidMsg); l.Msg is ignored. l's other fields must be valid.
func (s *Shipper) shipMsg(l types.Line, msg []byte) {
	s.queue(&l, msg)
}

// queue appends the frame of l (with msg as its text when msg is not nil)
// to the pending lines, or drops it when the buffer is full or the Shipper
// closed. It wakes the goroutine when the line is the first pending one.
func (s *Shipper) queue(l *types.Line, msg []byte) {
	s.mu.Lock()
	if s.closing || s.npending+s.inflight >= s.cfg.Buffer {
		s.mu.Unlock()
		s.dropped.Add(1)
		return
	}
	if msg != nil {
		s.pending = types.AppendFrameMsg(s.pending, *l, msg)
	} else {
		s.pending = types.AppendFrame(s.pending, *l)
	}
	s.npending++
	first := s.npending == 1
	s.mu.Unlock()
	if first {
		s.signal()
	}
}

// signal wakes the goroutine without blocking.
func (s *Shipper) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Dropped returns how many lines were dropped because the buffer was full
// or the Shipper closed, and how many because they were invalid.
func (s *Shipper) Dropped() (full, invalid uint64) {
	return s.dropped.Load(), s.invalid.Load()
}

// Close ships the held lines, waiting up to CloseTimeout, then stops. It
// returns an error saying how many lines were lost when some could not be
// shipped. It is idempotent.
func (s *Shipper) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closing = true
		s.mu.Unlock()
		select {
		case s.wake <- struct{}{}:
		default:
		}
		timer := time.NewTimer(s.cfg.CloseTimeout)
		defer timer.Stop()
		select {
		case <-s.done:
		case <-timer.C:
			s.cancel()
			<-s.done
		}
		s.cancel()
		s.mu.Lock()
		lost := len(s.pending) + s.inflight
		s.mu.Unlock()
		s.reportDrops(true)
		if lost > 0 {
			s.closeErr = fmt.Errorf("log shipper: %d lines not shipped to %s before the close timeout", lost, s.cfg.URL)
		}
	})
	return s.closeErr
}

// run sends streams until the Shipper closes and has nothing left.
func (s *Shipper) run() {
	defer close(s.done)
	backoff := minBackoff
	for {
		s.mu.Lock()
		empty, closing := s.npending == 0, s.closing
		s.mu.Unlock()
		s.reportDrops(false)
		if empty {
			if closing {
				return
			}
			select {
			case <-s.wake:
			case <-s.ctx.Done():
				return
			}
			continue
		}
		sent, err := s.stream()
		switch {
		case err == nil:
			backoff = minBackoff
			continue
		case s.ctx.Err() != nil:
			return
		case errors.Is(err, errNoFrames) && !s.ndjson:
			s.log.Info("the log aggregator has no frames endpoint; shipping NDJSON", "url", s.cfg.URL)
			s.ndjson = true
			continue
		}
		s.log.Warn("cannot ship log lines; retrying", "url", s.cfg.URL, "lines", sent, "err", err, "in", backoff)
		select {
		case <-time.After(backoff):
		case <-s.ctx.Done():
			return
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// take moves the pending lines to the end of s.sent and returns them.
// The pending buffer and a spare one take turns, so that neither is
// allocated again.
func (s *Shipper) take() (batch []byte, lines int, closing bool) {
	s.mu.Lock()
	batch, lines, closing = s.pending, s.npending, s.closing
	s.pending, s.npending, s.spare = s.spare[:0], 0, nil
	s.inflight += lines
	s.mu.Unlock()
	s.sent = append(s.sent, batch...)
	s.mu.Lock()
	s.spare = batch[:0]
	s.mu.Unlock()
	return s.sent[len(s.sent)-len(batch):], lines, closing
}

// stream sends the pending lines, and those that come while it is open,
// on one POST, and waits for the answer. Sent lines are forgotten when the
// aggregator confirms them, and put back in front of the pending ones when
// the stream fails.
func (s *Shipper) stream() (int, error) {
	ctx, cancel := context.WithTimeout(s.ctx, streamTimeout)
	defer cancel()
	pr, pw := io.Pipe()
	url, contentType := s.base+"/v1/ingest/frames", types.FrameContentType
	if s.ndjson {
		url, contentType = s.base+"/v1/ingest", "application/x-ndjson"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, pr)
	if err != nil {
		return 0, fmt.Errorf("ingest request: %w", err)
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Authorization", "Bearer "+s.cfg.Token)
	answer := make(chan error, 1)
	go func() {
		resp, err := s.http.Do(req)
		if err != nil {
			pr.CloseWithError(err)
			answer <- err
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		switch {
		case resp.StatusCode == http.StatusNotFound && !s.ndjson:
			err = errNoFrames
		case resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusRequestEntityTooLarge:
			err = &rejectedError{fmt.Sprintf("aggregator refused the lines: %s: %s", resp.Status, strings.TrimSpace(string(body)))}
		case resp.StatusCode != http.StatusOK:
			err = fmt.Errorf("aggregator answered %s: %s", resp.Status, strings.TrimSpace(string(body)))
		}
		pr.CloseWithError(errors.New("answered"))
		answer <- err
	}()

	s.sent = s.sent[:0]
	sent := 0
	started := time.Now()
	idle := time.NewTimer(streamIdle)
	defer idle.Stop()
	werr := s.write(pw, []byte(types.FrameMagic))
	for werr == nil && sent < streamLines && time.Since(started) < streamAge {
		batch, lines, closing := s.take()
		if lines > 0 {
			sent += lines
			if werr = s.write(pw, batch); werr != nil {
				break
			}
			idle.Reset(streamIdle)
			select {
			case <-time.After(streamLinger):
			case <-ctx.Done():
			}
			continue
		}
		if closing {
			break
		}
		select {
		case <-s.wake:
		case <-idle.C:
			werr = errIdle
		case <-ctx.Done():
			werr = ctx.Err()
		}
	}
	pw.Close()
	err = <-answer
	if err == nil && werr != nil && !errors.Is(werr, errIdle) {
		err = werr
	}
	s.mu.Lock()
	s.inflight -= sent
	var rejected *rejectedError
	switch {
	case errors.As(err, &rejected):
		// Sending them again would fail again: the stream is lost.
		s.invalid.Add(uint64(sent))
	case err != nil:
		// Put the sent lines back first, dropping the oldest past the
		// buffer's bound.
		requeued := append(s.sent, s.pending...)
		n := sent + s.npending
		if over := n - s.cfg.Buffer; over > 0 {
			requeued = types.SkipFrames(requeued, over)
			n -= over
			s.dropped.Add(uint64(over))
		}
		s.sent, s.pending, s.npending = s.pending[:0], requeued, n
	}
	s.mu.Unlock()
	return sent, err
}

// write writes frames to the stream: as they are, or, to an aggregator
// without the frames endpoint, as NDJSON (the magic is left out then).
func (s *Shipper) write(w io.Writer, frames []byte) error {
	if !s.ndjson {
		_, err := w.Write(frames)
		return err
	}
	if string(frames) == types.FrameMagic {
		return nil
	}
	s.encoded = s.encoded[:0]
	err := types.Frames(frames, func(f *types.Frame) error {
		b, err := types.AppendJSON(s.encoded, f.Line())
		s.encoded = append(b, '\n')
		return err
	})
	if err != nil {
		return fmt.Errorf("encode lines: %w", err)
	}
	_, err = w.Write(s.encoded)
	return err
}

// rejectedError is an answer that refused a stream's lines as invalid.
type rejectedError struct{ msg string }

func (e *rejectedError) Error() string { return e.msg }

var (
	// errIdle ends a stream that had no line for streamIdle.
	errIdle = errors.New("stream idle")
	// errNoFrames is the answer of an aggregator without the frames
	// endpoint.
	errNoFrames = errors.New("the aggregator has no frames endpoint")
)

// reportDrops logs the lines dropped since the last report, at most every
// dropReportInterval unless final.
func (s *Shipper) reportDrops(final bool) {
	full, invalid := s.dropped.Load(), s.invalid.Load()
	if full+invalid == s.reported || (!final && time.Since(s.lastLog) < dropReportInterval) {
		return
	}
	s.log.Warn("log lines dropped", "buffer_full_or_closed", full, "invalid", invalid,
		"since_last_report", full+invalid-s.reported, "buffer", s.cfg.Buffer, "url", s.cfg.URL)
	s.reported, s.lastLog = full+invalid, time.Now()
}
