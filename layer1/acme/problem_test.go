package acme

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"golang.org/x/crypto/acme"
)

func TestRetryAt(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	rateLimited := func(retryAfter string) error {
		h := http.Header{}
		if retryAfter != "" {
			h.Set("Retry-After", retryAfter)
		}
		return fmt.Errorf("new order: %w", &acme.Error{StatusCode: 429, ProblemType: "urn:ietf:params:acme:error:rateLimited", Detail: "too many", Header: h})
	}
	tests := []struct {
		name     string
		failures int
		err      error
		want     time.Duration
	}{
		{"first failure", 1, errors.New("x"), MinBackoff},
		{"third failure doubles twice", 3, errors.New("x"), 4 * MinBackoff},
		{"capped", 40, errors.New("x"), MaxBackoff},
		{"rate limit later than back-off", 1, rateLimited("7200"), 2 * time.Hour},
		{"rate limit earlier than back-off", 5, rateLimited("60"), 16 * MinBackoff},
		{"rate limit without Retry-After", 1, rateLimited(""), MinBackoff},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := RetryAt(now, tt.failures, tt.err); !got.Equal(now.Add(tt.want)) {
				t.Errorf("RetryAt = %v, want now+%v", got.Sub(now), tt.want)
			}
		})
	}
}

func TestProblem(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"plain", errors.New("dial tcp: refused"), "dial tcp: refused"},
		{"acme error", fmt.Errorf("order: %w", &acme.Error{ProblemType: "urn:ietf:params:acme:error:rejectedIdentifier", Detail: "no"}), "rejectedIdentifier: no"},
		{"authorization", fmt.Errorf("authorize: %w", &acme.AuthorizationError{Errors: []error{&acme.Error{ProblemType: "urn:ietf:params:acme:error:connection", Detail: "refused"}}}), "connection: refused"},
		{"order", &acme.OrderError{Status: "invalid", Problem: &acme.Error{ProblemType: "urn:ietf:params:acme:error:unauthorized", Detail: "bad"}}, "unauthorized: bad"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Problem(tt.err); got != tt.want {
				t.Errorf("Problem = %q, want %q", got, tt.want)
			}
		})
	}
}
