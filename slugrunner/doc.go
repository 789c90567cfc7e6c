// Package slugrunner is the entrypoint of app containers: it unpacks a
// slug (a gzip tarball of /app built by the slug builder) safely, reads the
// process types of its Procfile, and runs one of them (or an explicit
// command) with the Heroku runtime conventions: HOME and PORT set,
// .profile.d scripts sourced, signals forwarded to the process group and,
// when it runs as PID 1, orphaned processes reaped. It also serves static
// sites built by the static buildpack.
//
// The gantryd binary exposes it as `gantryd slugrunner start TYPE` (Start)
// and `gantryd slugrunner static` (ServeStatic).
package slugrunner

import "errors"

var (
	// ErrUnsafeEntry is wrapped by errors about archive entries that would
	// escape the extraction directory or create special files.
	ErrUnsafeEntry = errors.New("unsafe archive entry")
	// ErrLimitExceeded is wrapped by errors about archives larger than the
	// extraction limits.
	ErrLimitExceeded = errors.New("archive exceeds extraction limit")
	// ErrProcfile is wrapped by errors about malformed Procfiles.
	ErrProcfile = errors.New("invalid Procfile")
	// ErrUnknownType is wrapped by the error for a process type that the
	// Procfile does not define.
	ErrUnknownType = errors.New("unknown process type")
	// ErrDigestMismatch is wrapped by the error for a slug whose sha256
	// differs from the expected digest.
	ErrDigestMismatch = errors.New("slug digest mismatch")
	// ErrFetch is wrapped by errors from fetching a slug over HTTP.
	ErrFetch = errors.New("fetch slug")
)
