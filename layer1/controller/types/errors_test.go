package types

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"testing"
)

func TestErrorTable(t *testing.T) {
	seen := map[string]bool{}
	for _, e := range errorTable {
		t.Run(e.Code, func(t *testing.T) {
			if seen[e.Code] {
				t.Fatalf("code %s listed twice", e.Code)
			}
			seen[e.Code] = true
			if got := ErrorForCode(e.Code); got != e {
				t.Errorf("ErrorForCode(%q) = %v, want the sentinel", e.Code, got)
			}
			if http.StatusText(e.Status) == "" || e.Status < 400 {
				t.Errorf("status %d is not an HTTP error status", e.Status)
			}
			if g := ErrorForStatus(e.Status); g.Status != e.Status {
				t.Errorf("ErrorForStatus(%d) = %v, another status", e.Status, g)
			}
		})
	}
	if ErrorForCode("no_such_code") != nil {
		t.Error("ErrorForCode of an unknown code is not nil")
	}
}

func TestErrorForStatus(t *testing.T) {
	tests := []struct {
		status int
		want   *Error
	}{
		{400, ErrBadRequest},
		{401, ErrUnauthorized},
		{403, ErrForbidden},
		{404, ErrNotFound}, // the generic one, not app_not_found
		{405, ErrMethodNotAllowed},
		{409, ErrConflict},
		{413, ErrTooLarge},
		{422, ErrInvalid},
		{500, ErrInternal},
		{503, ErrUnavailable},
		{502, ErrInternal},
		{418, ErrBadRequest},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.status), func(t *testing.T) {
			if got := ErrorForStatus(tt.status); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestErrorIsAndJSON(t *testing.T) {
	err := fmt.Errorf("get app: %w", ErrAppNotFound.WithMessage("no app named %q", "demo"))
	if !errors.Is(err, ErrAppNotFound) {
		t.Error("errors.Is(app_not_found copy, ErrAppNotFound) = false")
	}
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrKeyNotFound) {
		t.Error("an app_not_found error matches another code")
	}
	if ErrAppNotFound.Message != "no such app" {
		t.Errorf("WithMessage changed the sentinel: %q", ErrAppNotFound.Message)
	}
	var e *Error
	if !errors.As(err, &e) || e.Status != 404 || e.Error() != `app_not_found: no app named "demo"` {
		t.Errorf("got %#v", e)
	}
	b, _ := json.Marshal(ErrorBody{Error: e})
	if string(b) != `{"error":{"code":"app_not_found","message":"no app named \"demo\""}}` {
		t.Errorf("JSON %s", b)
	}
}
