package acme

import (
	"errors"
	"strings"
	"time"

	"golang.org/x/crypto/acme"
)

// Problem returns the ACME server's own description of what made err:
// the detail of its problem documents, or err's text when err carries
// none (say, the server was unreachable).
func Problem(err error) string {
	var details []string
	var authz *acme.AuthorizationError
	var order *acme.OrderError
	var ae *acme.Error
	switch {
	case errors.As(err, &authz):
		for _, e := range authz.Errors {
			details = append(details, Problem(e))
		}
	case errors.As(err, &order) && order.Problem != nil:
		details = append(details, problemText(order.Problem))
	case errors.As(err, &ae):
		details = append(details, problemText(ae))
	}
	if len(details) == 0 {
		return err.Error()
	}
	return strings.Join(details, "; ")
}

func problemText(e *acme.Error) string {
	typ := e.ProblemType
	if i := strings.LastIndexByte(typ, ':'); i >= 0 {
		typ = typ[i+1:]
	}
	if typ == "" {
		return e.Detail
	}
	return typ + ": " + e.Detail
}

// Backoff bounds the retry delays of failed orders.
const (
	// MinBackoff is the delay after the first failure.
	MinBackoff = time.Minute
	// MaxBackoff is the longest delay between attempts.
	MaxBackoff = 24 * time.Hour
)

// RetryAt returns when to try again after the failures-th failure in a
// row (1 for the first), err being the last one: MinBackoff doubled per
// failure up to MaxBackoff, and never before the Retry-After of a
// rate-limit answer.
func RetryAt(now time.Time, failures int, err error) time.Time {
	d := MinBackoff
	for n := 1; n < failures && d < MaxBackoff; n++ {
		d *= 2
	}
	d = min(d, MaxBackoff)
	var ae *acme.Error
	if errors.As(err, &ae) {
		if ra, ok := acme.RateLimit(ae); ok && ra > d {
			d = ra
		}
	}
	return now.Add(d)
}
