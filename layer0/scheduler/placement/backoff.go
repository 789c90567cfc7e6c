package placement

import (
	"errors"
	"fmt"
	"time"
)

// ErrInvalidBackoff is returned by Backoff.Validate.
var ErrInvalidBackoff = errors.New("invalid back-off")

// Default back-off values, used for zero fields of Backoff.
const (
	DefaultFree  = 3
	DefaultBase  = time.Second
	DefaultCap   = 5 * time.Minute
	DefaultReset = time.Minute
)

// Backoff is the delay schedule for replacing crashed jobs. With the
// defaults, the first three restarts of a job index happen at once, the
// following ones after 1 s, 2 s, 4 s, ... up to 5 min.
type Backoff struct {
	// Free is how many restarts happen with no delay; zero means
	// DefaultFree (3), a negative value means none.
	Free int
	// Base is the delay of the first restart after the free ones; each
	// further restart doubles it. Zero means DefaultBase (1 s).
	Base time.Duration
	// Cap bounds the delay. Zero means DefaultCap (5 min).
	Cap time.Duration
	// Reset is how long a job must have been up before it crashed for its
	// restart count to start again from zero. Zero means DefaultReset
	// (60 s).
	Reset time.Duration
}

// Validate reports negative durations and a cap below the base.
func (b Backoff) Validate() error {
	if b.Base < 0 || b.Cap < 0 || b.Reset < 0 {
		return fmt.Errorf("%w: negative duration in %+v", ErrInvalidBackoff, b)
	}
	d := b.WithDefaults()
	if d.Cap < d.Base {
		return fmt.Errorf("%w: cap %s below base %s", ErrInvalidBackoff, d.Cap, d.Base)
	}
	return nil
}

// WithDefaults returns b with its zero fields set to the defaults. A
// negative Free stays negative: no free restarts. WithDefaults of its own
// result changes nothing.
func (b Backoff) WithDefaults() Backoff {
	if b.Free == 0 {
		b.Free = DefaultFree
	}
	if b.Base <= 0 {
		b.Base = DefaultBase
	}
	if b.Cap <= 0 {
		b.Cap = DefaultCap
	}
	if b.Reset <= 0 {
		b.Reset = DefaultReset
	}
	return b
}

// Delay returns how long after a crash a job whose index has already been
// restarted `restarts` times is replaced.
func (b Backoff) Delay(restarts int) time.Duration {
	b = b.WithDefaults()
	free := max(b.Free, 0)
	if restarts < free {
		return 0
	}
	d := b.Base
	for range restarts - free {
		if d >= b.Cap {
			break
		}
		d *= 2
	}
	return min(d, b.Cap)
}
