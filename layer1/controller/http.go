package controller

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantryhq/gantry/layer1/controller/etcdkv"
	"github.com/gantryhq/gantry/layer1/controller/store"
	"github.com/gantryhq/gantry/layer1/controller/types"
)

// MaxBodyBytes is the largest request body the API reads.
const MaxBodyBytes = 1 << 20

// writeJSON answers status with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	// An error here means the client went away; nothing left to do.
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, e *types.Error) {
	writeJSON(w, e.Status, types.ErrorBody{Error: e})
}

// storeErrors maps the store's errors to API errors; the message comes from
// the request (see fail).
var storeErrors = []struct {
	err error
	api *types.Error
}{
	{store.ErrAppNotFound, types.ErrAppNotFound},
	{store.ErrReleaseNotFound, types.ErrReleaseNotFound},
	{store.ErrKeyNotFound, types.ErrKeyNotFound},
	{store.ErrRouteNotFound, types.ErrRouteNotFound},
	{store.ErrDeploymentNotFound, types.ErrDeploymentNotFound},
	{store.ErrNoRelease, types.ErrNoRelease},
	{store.ErrConflict, types.ErrConflict},
	{store.ErrUnavailable, types.ErrUnavailable},
}

// fail answers err: an *types.Error as it is, a store error as its API
// error, a failed etcd request as 503, and anything else as a 500 whose
// details go only to the log.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var apiErr *types.Error
	if errors.As(err, &apiErr) {
		writeError(w, apiErr)
		return
	}
	var typeErr *store.ProcessTypeError
	if errors.As(err, &typeErr) {
		writeError(w, types.ErrInvalid.WithMessage("%s", typeErr.Error()))
		return
	}
	var taken *store.DomainTakenError
	if errors.As(err, &taken) {
		writeError(w, types.ErrConflict.WithMessage("the domain is taken: %s", taken.Error()))
		return
	}
	if errors.Is(err, etcdkv.ErrUnreachable) {
		s.log.Warn("etcd unreachable", "method", r.Method, "path", r.URL.Path, "err", err)
		writeError(w, types.ErrUnavailable.WithMessage("etcd is unreachable; the controller answers again when it is back"))
		return
	}
	for _, m := range storeErrors {
		if errors.Is(err, m.err) {
			if m.api == types.ErrUnavailable {
				s.log.Warn("PostgreSQL unreachable", "method", r.Method, "path", r.URL.Path, "err", err)
			}
			writeError(w, m.api.WithMessage("%s", describe(m.api, r)))
			return
		}
	}
	s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	writeError(w, types.ErrInternal)
}

// describe returns the message of an API error about the objects that r
// names in its path.
func describe(e *types.Error, r *http.Request) string {
	switch e {
	case types.ErrAppNotFound:
		return fmt.Sprintf("no app named %q", r.PathValue("app"))
	case types.ErrReleaseNotFound:
		return fmt.Sprintf("app %q has no release %s", r.PathValue("app"), r.PathValue("version"))
	case types.ErrKeyNotFound:
		return fmt.Sprintf("no SSH key with fingerprint %q", r.PathValue("fingerprint"))
	case types.ErrRouteNotFound:
		return fmt.Sprintf("app %q has no route %q", r.PathValue("app"), r.PathValue("domain"))
	case types.ErrDeploymentNotFound:
		return fmt.Sprintf("app %q has no deployment %q", r.PathValue("app"), r.PathValue("id"))
	case types.ErrHostNotFound:
		return fmt.Sprintf("no host %q in the cluster; gantry hosts lists them", r.PathValue("host"))
	case types.ErrNoRelease:
		return fmt.Sprintf("app %q has no release yet; deploy one first (git push, or gantry release create --image)", r.PathValue("app"))
	case types.ErrUnavailable:
		return "PostgreSQL is unreachable; the controller answers again when it is back"
	}
	return e.Message
}

// decodeJSON reads the JSON body of r into v. An empty body leaves v alone
// when allowEmpty is set.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any, allowEmpty bool) *types.Error {
	body := &errReader{r: http.MaxBytesReader(w, r.Body, MaxBodyBytes)}
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		// Only white space may follow the value.
		if err = dec.Decode(&json.RawMessage{}); errors.Is(err, io.EOF) {
			return nil
		}
		if err == nil {
			return types.ErrBadRequest.WithMessage("the body holds more than one JSON value")
		}
	}
	var tooLarge *http.MaxBytesError
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &tooLarge):
		return types.ErrTooLarge.WithMessage("the request body is larger than %d bytes", MaxBodyBytes)
	case body.err != nil:
		// Not a JSON problem: reading the body failed (a broken chunked
		// encoding, a connection cut).
		return types.ErrBadRequest.WithMessage("could not read the request body: %v", body.err)
	case errors.Is(err, io.EOF) && allowEmpty:
		return nil
	case errors.Is(err, io.EOF):
		return types.ErrBadRequest.WithMessage("the request body is empty; send JSON")
	case errors.As(err, &typeErr) && typeErr.Field != "":
		return types.ErrBadRequest.WithMessage("field %q: got a JSON %s, want %s", typeErr.Field, jsonValue(typeErr.Value), jsonType(typeErr.Type))
	case errors.As(err, &typeErr):
		return types.ErrBadRequest.WithMessage("got a JSON %s, want %s", jsonValue(typeErr.Value), jsonType(typeErr.Type))
	}
	return types.ErrBadRequest.WithMessage("malformed JSON body: %s", strings.TrimPrefix(err.Error(), "json: "))
}

// errReader records the first error of its reader other than io.EOF, so
// that a failure to read a body is told apart from a body that is not
// JSON.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	var tooLarge *http.MaxBytesError
	if err != nil && err != io.EOF && e.err == nil && !errors.As(err, &tooLarge) {
		e.err = err
	}
	return n, err
}

// jsonValue describes a JSON value of an *json.UnmarshalTypeError: "number
// 1e2" becomes "number 100", so that a user who did not write the number
// that way sees its value.
func jsonValue(v string) string {
	lit, ok := strings.CutPrefix(v, "number ")
	if !ok {
		return v
	}
	f, err := strconv.ParseFloat(lit, 64)
	if err != nil {
		return v
	}
	return "number " + strconv.FormatFloat(f, 'f', -1, 64)
}

// jsonType names a Go type of the wire types the way a JSON user would.
func jsonType(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "true or false"
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.Slice, reflect.Array:
		return "an array"
	}
	return t.String()
}

// statusWriter records the status of an answer for the request log.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// logRequests logs one line per request and turns a panic into a 500.
func (s *Server) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("panic serving request", "method", r.Method, "path", r.URL.Path, "panic", v)
				if sw.status == 0 {
					writeError(sw, types.ErrInternal)
				}
			}
			// The host agent's health check asks for /healthz every
			// second: a successful one is logged at debug level only.
			level := slog.LevelInfo
			if r.URL.Path == "/healthz" && sw.status == http.StatusOK {
				level = slog.LevelDebug
			}
			s.log.Log(r.Context(), level, "request", "method", r.Method, "path", r.URL.Path, "status", sw.status,
				"duration", time.Since(start))
		}()
		next.ServeHTTP(sw, r)
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
	})
}

// principal is who a request authenticated as.
type principal int

const (
	// principalAdmin holds an API token (the CLI): every endpoint.
	principalAdmin principal = iota + 1
	// principalPlatform holds the platform's host token (host agents, the
	// git receiver): only the endpoints marked for it (see routes).
	principalPlatform
)

type principalKey struct{}

// authenticate lets /v1/ requests through only with a known API token or
// the host token, or (without an Authorization header) the dashboard's
// session cookie, and records which in the request's context.
func (s *Server) authenticate(next http.Handler) http.Handler {
	hostSum := sha256.Sum256([]byte(s.cfg.HostToken))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/v1/") && r.URL.Path != "/metrics" {
			next.ServeHTTP(w, r)
			return
		}
		token, ok := bearerToken(r)
		if !ok && r.Header.Get("Authorization") == "" && s.dash.HasSession(r) {
			// The web dashboard's session cookie (layer1/dashboard), with
			// its CSRF token on changes.
			if err := s.dash.Authenticate(r); err != nil {
				s.fail(w, r, err)
				return
			}
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, principalAdmin)))
			return
		}
		if !ok {
			unauthorized(w, "missing API token: send the header \"Authorization: Bearer <token>\"")
			return
		}
		if strings.ContainsFunc(token, func(c rune) bool { return c <= ' ' || c > '~' }) {
			unauthorized(w, "malformed API token: it holds a space, a control character or a byte outside ASCII, which no token has")
			return
		}
		sum := sha256.Sum256([]byte(token))
		if subtle.ConstantTimeCompare(sum[:], hostSum[:]) == 1 {
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, principalPlatform)))
			return
		}
		hashes, err := s.store.TokenHashes(r.Context())
		if err != nil {
			s.fail(w, r, err)
			return
		}
		match := 0
		for _, h := range hashes {
			match |= subtle.ConstantTimeCompare(sum[:], h)
		}
		if match != 1 {
			unauthorized(w, "the API token was rejected")
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, principalAdmin)))
	})
}

// adminOnly refuses the requests made with the platform's token.
func adminOnly(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if p, _ := r.Context().Value(principalKey{}).(principal); p != principalAdmin {
			writeError(w, types.ErrForbidden.WithMessage("the platform token may not %s %s; use an API token", r.Method, r.URL.Path))
			return
		}
		next(w, r)
	}
}

func unauthorized(w http.ResponseWriter, msg string) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="gantry"`)
	writeError(w, types.ErrUnauthorized.WithMessage("%s", msg))
}

// bearerToken returns the token of an "Authorization: Bearer <token>"
// header.
func bearerToken(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// logger returns l, or a logger that discards everything when l is nil.
func logger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}

// quorumTimeout bounds requireEtcd's read.
const quorumTimeout = 3 * time.Second

// requireEtcd answers 503 at once, before next changes anything, when
// etcd cannot serve a linearizable read (it has lost its quorum): a
// change of an app reaches the hosts through etcd, so it would otherwise
// be stored and then wait there. The apps keep serving meanwhile.
func (s *Server) requireEtcd(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), quorumTimeout)
		_, err := s.cfg.Etcd.Get(ctx, s.space.Root(), clientv3.WithCountOnly())
		cancel()
		if err != nil && r.Context().Err() == nil {
			s.log.Warn("refused a change: etcd does not answer", "method", r.Method, "path", r.URL.Path, "err", err)
			writeError(w, types.ErrUnavailable.WithMessage("etcd does not answer (%v): it has lost its quorum or is unreachable; the apps keep serving, and changes work again once a majority of etcd's members run", err))
			return
		}
		next(w, r)
	}
}
