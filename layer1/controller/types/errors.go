package types

import (
	"fmt"
	"net/http"
)

// Error is an API error: the status of the answer and the body
// {"error": {"code": ..., "message": ...}}. Two Errors match under errors.Is
// when their codes are equal, so errors.Is(err, ErrAppNotFound) holds for any
// app_not_found answer whatever its message.
type Error struct {
	// Status is the HTTP status; it is not part of the JSON body.
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// ErrorBody is the JSON body of every error answer.
type ErrorBody struct {
	Error *Error `json:"error"`
}

func (e *Error) Error() string {
	if e.Message == "" {
		return e.Code
	}
	return e.Code + ": " + e.Message
}

// Is reports whether target is an *Error with the same code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// WithMessage returns a copy of e with the message formatted from format and
// args.
func (e *Error) WithMessage(format string, args ...any) *Error {
	c := *e
	c.Message = fmt.Sprintf(format, args...)
	return &c
}

// The API errors. Each sentinel carries its code, its status and a default
// message; answers use copies (WithMessage) and match them with errors.Is.
var (
	ErrBadRequest       = &Error{Status: http.StatusBadRequest, Code: "bad_request", Message: "malformed request"}
	ErrUnauthorized     = &Error{Status: http.StatusUnauthorized, Code: "unauthorized", Message: "missing or wrong API token"}
	ErrForbidden        = &Error{Status: http.StatusForbidden, Code: "forbidden", Message: "this token may not do that"}
	ErrNotFound         = &Error{Status: http.StatusNotFound, Code: "not_found", Message: "no such endpoint"}
	ErrAppNotFound      = &Error{Status: http.StatusNotFound, Code: "app_not_found", Message: "no such app"}
	ErrKeyNotFound      = &Error{Status: http.StatusNotFound, Code: "key_not_found", Message: "no such SSH key"}
	ErrReleaseNotFound  = &Error{Status: http.StatusNotFound, Code: "release_not_found", Message: "no such release"}
	ErrJobNotFound      = &Error{Status: http.StatusNotFound, Code: "job_not_found", Message: "no such job"}
	ErrRouteNotFound    = &Error{Status: http.StatusNotFound, Code: "route_not_found", Message: "no such route"}
	ErrHostNotFound     = &Error{Status: http.StatusNotFound, Code: "host_not_found", Message: "no such host"}
	ErrMethodNotAllowed = &Error{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed", Message: "method not allowed"}
	ErrConflict         = &Error{Status: http.StatusConflict, Code: "conflict", Message: "already exists"}
	ErrTooLarge         = &Error{Status: http.StatusRequestEntityTooLarge, Code: "too_large", Message: "request body too large"}
	ErrInvalid          = &Error{Status: http.StatusUnprocessableEntity, Code: "invalid", Message: "invalid value"}
	ErrNoRelease        = &Error{Status: http.StatusUnprocessableEntity, Code: "no_release", Message: "the app has no release yet"}
	// ErrBlobNotFound and ErrDigestMismatch are the blob endpoints'
	// (layer1/blobstore).
	ErrBlobNotFound   = &Error{Status: http.StatusNotFound, Code: "blob_not_found", Message: "no such blob"}
	ErrDigestMismatch = &Error{Status: http.StatusUnprocessableEntity, Code: "digest_mismatch", Message: "the content does not match its digest"}
	// ErrBuildFailed and ErrDeployFailed are the outcomes of a failed
	// build (types.Build.Error); they end a build stream that was
	// answered 200, so their status is only nominal.
	ErrBuildFailed  = &Error{Status: http.StatusUnprocessableEntity, Code: "build_failed", Message: "the build failed"}
	ErrDeployFailed = &Error{Status: http.StatusUnprocessableEntity, Code: "deploy_failed", Message: "the release did not come up"}
	ErrInternal     = &Error{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error"}
	ErrUnavailable  = &Error{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "a dependency is unreachable"}
)

// errorTable is the one table of error codes, statuses and sentinels. For
// each status, the first entry is the generic error of that status.
var errorTable = []*Error{
	ErrBadRequest,
	ErrUnauthorized,
	ErrForbidden,
	ErrNotFound,
	ErrAppNotFound,
	ErrKeyNotFound,
	ErrReleaseNotFound,
	ErrJobNotFound,
	ErrRouteNotFound,
	ErrHostNotFound,
	ErrDeploymentNotFound,
	ErrMethodNotAllowed,
	ErrConflict,
	ErrTooLarge,
	ErrInvalid,
	ErrNoRelease,
	ErrBlobNotFound,
	ErrDigestMismatch,
	ErrBuildFailed,
	ErrDeployFailed,
	ErrInternal,
	ErrUnavailable,
}

// ErrorForCode returns the sentinel of code, or nil for an unknown code.
func ErrorForCode(code string) *Error {
	for _, e := range errorTable {
		if e.Code == code {
			return e
		}
	}
	return nil
}

// ErrorForStatus returns the generic sentinel of an HTTP error status, for
// answers that carry no error body (e.g. from a proxy): the table's first
// entry with that status, else ErrInternal for 5xx and ErrBadRequest for the
// rest.
func ErrorForStatus(status int) *Error {
	for _, e := range errorTable {
		if e.Status == status {
			return e
		}
	}
	if status >= 500 {
		return ErrInternal
	}
	return ErrBadRequest
}
