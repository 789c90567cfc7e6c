// Package client ships log lines to the log aggregator (see package
// logaggregator): the host agents, the router and the controller each use a
// Shipper.
package client

import (
	"bytes"
	"context"
	"encoding/json"
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
// Ship never blocks. Lines go over a streaming POST that stays open while
// lines keep coming; the lines of a stream are held until the aggregator
// confirms it, and sent again on a new stream when it fails (the
// aggregator keeps a line once, so nothing doubles). A failed stream is
// retried with a growing pause.
type Shipper struct {
	cfg    ShipperConfig
	log    *slog.Logger
	ingest string
	http   *http.Client

	mu       sync.Mutex
	pending  []types.Line // not yet sent
	inflight int          // sent on the current stream, not yet confirmed
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
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Shipper{
		cfg:    cfg,
		log:    cfg.Logger,
		ingest: strings.TrimRight(cfg.URL, "/") + "/v1/ingest",
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
	s.mu.Lock()
	if s.closing || len(s.pending)+s.inflight >= s.cfg.Buffer {
		s.mu.Unlock()
		s.dropped.Add(1)
		return
	}
	s.pending = append(s.pending, l)
	s.mu.Unlock()
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
		empty, closing := len(s.pending) == 0, s.closing
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
		if err == nil {
			backoff = minBackoff
			continue
		}
		if s.ctx.Err() != nil {
			return
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

// stream sends the pending lines, and those that come while it is open,
// on one POST, and waits for the answer. Sent lines are forgotten when the
// aggregator confirms them, and put back in front of the pending ones when
// the stream fails.
func (s *Shipper) stream() (int, error) {
	ctx, cancel := context.WithTimeout(s.ctx, streamTimeout)
	defer cancel()
	pr, pw := io.Pipe()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.ingest, pr)
	if err != nil {
		return 0, fmt.Errorf("ingest request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
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
		case resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusRequestEntityTooLarge:
			err = &rejectedError{fmt.Sprintf("aggregator refused the lines: %s: %s", resp.Status, strings.TrimSpace(string(body)))}
		case resp.StatusCode != http.StatusOK:
			err = fmt.Errorf("aggregator answered %s: %s", resp.Status, strings.TrimSpace(string(body)))
		}
		pr.CloseWithError(errors.New("answered"))
		answer <- err
	}()

	var sent []types.Line
	var buf bytes.Buffer
	started := time.Now()
	idle := time.NewTimer(streamIdle)
	defer idle.Stop()
	var werr error
	for werr == nil && len(sent) < streamLines && time.Since(started) < streamAge {
		s.mu.Lock()
		batch := s.pending
		s.pending = nil
		s.inflight += len(batch)
		closing := s.closing
		s.mu.Unlock()
		if len(batch) > 0 {
			sent = append(sent, batch...)
			buf.Reset()
			for _, l := range batch {
				b, _ := json.Marshal(l) // a valid Line always encodes
				buf.Write(b)
				buf.WriteByte('\n')
			}
			if _, werr = pw.Write(buf.Bytes()); werr != nil {
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
	s.inflight -= len(sent)
	var rejected *rejectedError
	switch {
	case errors.As(err, &rejected):
		// Sending them again would fail again: the stream is lost.
		s.invalid.Add(uint64(len(sent)))
	case err != nil:
		// Put the sent lines back first, dropping the oldest past the
		// buffer's bound.
		requeued := append(sent, s.pending...)
		if over := len(requeued) - s.cfg.Buffer; over > 0 {
			requeued = requeued[over:]
			s.dropped.Add(uint64(over))
		}
		s.pending = requeued
	}
	s.mu.Unlock()
	return len(sent), err
}

// rejectedError is an answer that refused a stream's lines as invalid.
type rejectedError struct{ msg string }

func (e *rejectedError) Error() string { return e.msg }

// errIdle ends a stream that had no line for streamIdle.
var errIdle = errors.New("stream idle")

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
