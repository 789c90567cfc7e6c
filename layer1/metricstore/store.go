// Package metricstore keeps the last 24 hours of each app's key series
// (request rate, error rate, latency percentiles, CPU and memory per
// process type) in bounded memory, so that `gantry metrics` and the
// dashboard need no Prometheus server.
//
// Each series holds two rings: one point per 10 s for the last hour (360
// points) and the mean per minute for the last 24 h (1,440 points). A
// series costs about 20 KiB whatever it receives, and a Store holds at most
// Config.MaxSeries of them, so its memory is bounded. Save and Load write
// and read the whole store, so that the history survives a restart; a
// Prometheus server remains the path to longer retention.
package metricstore

import (
	"cmp"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sync"
	"time"
)

// Resolutions and spans of the two rings.
const (
	FineStep     = 10 * time.Second
	FinePoints   = 360 // one hour
	CoarseStep   = time.Minute
	CoarsePoints = 1440 // one day
	// DefaultMaxSeries is Config.MaxSeries when it is zero.
	DefaultMaxSeries = 2000
)

// ErrTooManySeries means that Add would create a series beyond
// Config.MaxSeries.
var ErrTooManySeries = errors.New("metric store: too many series")

// Key names a series: one figure of an app, optionally of one of its
// process types.
type Key struct {
	App  string
	Name string
	// Type is the process type, or "" for a figure of the whole app.
	Type string
}

// Point is one value of a series at the start of its step.
type Point struct {
	Time  time.Time `json:"t"`
	Value float64   `json:"v"`
}

// fineCell is one 10 s slot: slot is the Unix time divided by 10 (zero
// for a slot never written).
type fineCell struct {
	Slot  uint32
	Value float32
}

// coarseCell is one minute: the sum and count of the values added in it.
type coarseCell struct {
	Minute uint32
	Sum    float32
	N      uint32
}

type series struct {
	Fine   [FinePoints]fineCell
	Coarse [CoarsePoints]coarseCell
}

// Store is a set of series. It is safe for concurrent use.
type Store struct {
	max int

	mu     sync.RWMutex
	series map[Key]*series
}

// New returns an empty store that holds at most maxSeries series; zero
// means DefaultMaxSeries.
func New(maxSeries int) *Store {
	if maxSeries <= 0 {
		maxSeries = DefaultMaxSeries
	}
	return &Store{max: maxSeries, series: map[Key]*series{}}
}

// Add records v for k at t: it replaces the 10 s slot of t and adds to the
// mean of its minute. NaN and infinities are ignored.
func (s *Store) Add(k Key, t time.Time, v float64) error {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sr, ok := s.series[k]
	if !ok {
		if len(s.series) >= s.max {
			return fmt.Errorf("%w: %d (adding %s/%s/%s)", ErrTooManySeries, s.max, k.App, k.Type, k.Name)
		}
		sr = &series{}
		s.series[k] = sr
	}
	slot := uint32(t.Unix() / int64(FineStep/time.Second))
	sr.Fine[slot%FinePoints] = fineCell{Slot: slot, Value: float32(v)}
	minute := uint32(t.Unix() / int64(CoarseStep/time.Second))
	c := &sr.Coarse[minute%CoarsePoints]
	if c.Minute != minute {
		*c = coarseCell{Minute: minute}
	}
	c.Sum += float32(v)
	c.N++
	return nil
}

// Query returns k's points from now-since to now, oldest first: 10 s
// points when since is at most an hour, else per-minute means, at most 24
// hours back. Steps without a value are left out.
func (s *Store) Query(k Key, since time.Duration, now time.Time) []Point {
	s.mu.RLock()
	defer s.mu.RUnlock()
	sr, ok := s.series[k]
	if !ok {
		return nil
	}
	var out []Point
	if since <= FinePoints*FineStep {
		step := int64(FineStep / time.Second)
		last := uint32(now.Unix() / step)
		first := uint32((now.Add(-since).Unix() + step - 1) / step)
		for slot := first; slot <= last; slot++ {
			if c := sr.Fine[slot%FinePoints]; c.Slot == slot {
				out = append(out, Point{Time: time.Unix(int64(slot)*step, 0).UTC(), Value: float64(c.Value)})
			}
		}
		return out
	}
	since = min(since, CoarsePoints*CoarseStep)
	step := int64(CoarseStep / time.Second)
	last := uint32(now.Unix() / step)
	first := uint32((now.Add(-since).Unix() + step - 1) / step)
	for m := first; m <= last; m++ {
		if c := sr.Coarse[m%CoarsePoints]; c.Minute == m && c.N > 0 {
			out = append(out, Point{Time: time.Unix(int64(m)*step, 0).UTC(), Value: float64(c.Sum) / float64(c.N)})
		}
	}
	return out
}

// Keys returns the keys of app's series, sorted.
func (s *Store) Keys(app string) []Key {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var keys []Key
	for k := range s.series {
		if k.App == app {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b Key) int { return cmp.Or(cmp.Compare(a.Type, b.Type), cmp.Compare(a.Name, b.Name)) })
	return keys
}

// Len returns the number of series.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.series)
}

// DeleteApp removes every series of app.
func (s *Store) DeleteApp(app string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.series {
		if k.App == app {
			delete(s.series, k)
		}
	}
}

// Prune removes the series that received nothing in the last 24 hours.
func (s *Store) Prune(now time.Time) {
	oldest := uint32(now.Add(-CoarsePoints*CoarseStep).Unix() / int64(CoarseStep/time.Second))
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, sr := range s.series {
		if !slices.ContainsFunc(sr.Coarse[:], func(c coarseCell) bool { return c.N > 0 && c.Minute > oldest }) {
			delete(s.series, k)
		}
	}
}

// snapshot is what Save writes: a format version and the series.
type snapshot struct {
	Version int
	Series  map[Key]*series
}

const snapshotVersion = 1

// Save writes the whole store to w.
func (s *Store) Save(w io.Writer) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := gob.NewEncoder(w).Encode(snapshot{Version: snapshotVersion, Series: s.series}); err != nil {
		return fmt.Errorf("metric store: save: %w", err)
	}
	return nil
}

// Load replaces the store's series with those Save wrote to r, keeping
// at most the store's maximum.
func (s *Store) Load(r io.Reader) error {
	var snap snapshot
	if err := gob.NewDecoder(r).Decode(&snap); err != nil {
		return fmt.Errorf("metric store: load: %w", err)
	}
	if snap.Version != snapshotVersion {
		return fmt.Errorf("metric store: load: snapshot version %d, want %d", snap.Version, snapshotVersion)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.series = make(map[Key]*series, min(len(snap.Series), s.max))
	for k, sr := range snap.Series {
		if len(s.series) >= s.max {
			break
		}
		if sr != nil {
			s.series[k] = sr
		}
	}
	return nil
}
