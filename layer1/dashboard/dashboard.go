package dashboard

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/gantryhq/gantry/layer1/controller/types"
)

// Defaults of the Config fields whose zero value means a default.
const (
	// DefaultSessionIdle is Config.SessionIdle when it is zero.
	DefaultSessionIdle = time.Hour
	// DefaultSessionMaxAge is Config.SessionMaxAge when it is zero.
	DefaultSessionMaxAge = 12 * time.Hour
	// DefaultMaxSessions is Config.MaxSessions when it is zero.
	DefaultMaxSessions = 10000
)

const (
	// CookieName is the name of the session cookie.
	CookieName = "gantry_session"
	// CSRFHeader is the request header that carries the session's CSRF
	// token on every change made with the session cookie.
	CSRFHeader = "Gantry-CSRF-Token"
	// tokenCheckTimeout bounds the check of an API token against the
	// database.
	tokenCheckTimeout = 10 * time.Second
	// maxLoginBytes bounds the body of a sign-in.
	maxLoginBytes = 4 << 10
)

// ErrConfig is wrapped by the errors of Config.Validate.
var ErrConfig = errors.New("invalid dashboard config")

// Tokens lists the API tokens that exist.
type Tokens interface {
	// TokenHashes returns the SHA-256 of every API token.
	TokenHashes(ctx context.Context) ([][]byte, error)
}

// Config configures New.
type Config struct {
	// Tokens are the API tokens a user may sign in with; required. Each
	// request made with a session checks that its token still exists, so
	// removing a token ends its sessions.
	Tokens Tokens
	// SessionIdle is how long a session lasts without a request; zero
	// means DefaultSessionIdle (1 h).
	SessionIdle time.Duration
	// SessionMaxAge is how long a session lasts at most after sign-in,
	// however busy; zero means DefaultSessionMaxAge (12 h).
	SessionMaxAge time.Duration
	// MaxSessions bounds the sessions kept in memory: beyond it, the one
	// used least recently ends. Zero means DefaultMaxSessions (10,000).
	MaxSessions int
	// Logger receives sign-ins, sign-outs and failures; nil discards them.
	Logger *slog.Logger
}

// Validate reports missing required fields and values out of range.
func (c Config) Validate() error {
	var errs []error
	if c.Tokens == nil {
		errs = append(errs, errors.New("Tokens is required"))
	}
	if c.SessionIdle < 0 || c.SessionMaxAge < 0 || c.MaxSessions < 0 {
		errs = append(errs, errors.New("SessionIdle, SessionMaxAge and MaxSessions must not be negative"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return nil
}

//go:embed assets
var assets embed.FS

// Dashboard serves the web dashboard and its sessions.
type Dashboard struct {
	tokens   Tokens
	sessions *sessions
	log      *slog.Logger
	static   http.Handler
	index    []byte
}

// New returns the dashboard of cfg.
func New(cfg Config) (*Dashboard, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	idle, maxAge, max := cfg.SessionIdle, cfg.SessionMaxAge, cfg.MaxSessions
	if idle == 0 {
		idle = DefaultSessionIdle
	}
	if maxAge == 0 {
		maxAge = DefaultSessionMaxAge
	}
	if max == 0 {
		max = DefaultMaxSessions
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		return nil, fmt.Errorf("dashboard: assets: %w", err)
	}
	index, err := fs.ReadFile(sub, "index.html")
	if err != nil {
		return nil, fmt.Errorf("dashboard: assets: %w", err)
	}
	return &Dashboard{
		tokens:   cfg.Tokens,
		sessions: newSessions(idle, maxAge, max),
		log:      log,
		static:   http.StripPrefix("/assets/", http.FileServerFS(sub)),
		index:    index,
	}, nil
}

// Register adds the dashboard's paths to mux: the pages (/, /login,
// /apps/{app}, /hosts), their assets (/assets/) and the session (/session). Any
// other path is left to mux.
func (d *Dashboard) Register(mux *http.ServeMux) {
	for _, p := range []string{"GET /{$}", "GET /login", "GET /apps/{app}", "GET /hosts"} {
		mux.HandleFunc(p, d.page)
	}
	mux.HandleFunc("GET /assets/", d.asset)
	mux.HandleFunc("GET /session", d.getSession)
	mux.HandleFunc("POST /session", d.signIn)
	mux.HandleFunc("DELETE /session", d.signOut)
}

// securityHeaders keep the dashboard out of other sites' frames and its
// pages to their own scripts and styles.
func securityHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; object-src 'none'; "+
		"base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
}

// page answers every page with the same HTML: the script draws the page
// that the path names.
func (d *Dashboard) page(w http.ResponseWriter, _ *http.Request) {
	securityHeaders(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(d.index)
}

func (d *Dashboard) asset(w http.ResponseWriter, r *http.Request) {
	securityHeaders(w)
	w.Header().Set("Cache-Control", "no-cache")
	d.static.ServeHTTP(w, r)
}

// SessionInfo is the body of GET and POST /session.
type SessionInfo struct {
	// CSRFToken is the token to send in the Gantry-CSRF-Token header of
	// every change made with the session.
	CSRFToken string `json:"csrf_token"`
	// ExpiresAt is when the session ends if it is not used again.
	ExpiresAt time.Time `json:"expires_at"`
}

// SignInRequest is the body of POST /session.
type SignInRequest struct {
	// Token is an API token.
	Token string `json:"token"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, e *types.Error) {
	if e.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="gantry"`)
	}
	writeJSON(w, e.Status, types.ErrorBody{Error: e})
}

// signIn checks an API token and starts a session: the answer sets the
// session cookie and carries the CSRF token. The body must be JSON, which
// a form of another site cannot send without the browser asking first.
func (d *Dashboard) signIn(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		writeError(w, types.ErrBadRequest.WithMessage(`send {"token": "..."} as application/json`))
		return
	}
	if !sameOrigin(r) {
		writeError(w, types.ErrForbidden.WithMessage("sign in from the dashboard's own pages"))
		return
	}
	var req SignInRequest
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxLoginBytes))
	if err == nil {
		err = json.Unmarshal(body, &req)
	}
	if err != nil {
		writeError(w, types.ErrBadRequest.WithMessage(`send {"token": "..."} as application/json`))
		return
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(req.Token)))
	if err := d.checkToken(r.Context(), sum); err != nil {
		d.fail(w, r, err)
		return
	}
	id, sess := d.sessions.create(sum)
	d.setCookie(w, r, id, int(d.sessions.maxAge/time.Second))
	d.log.Info("dashboard sign-in", "remote", r.RemoteAddr)
	writeJSON(w, http.StatusCreated, SessionInfo{CSRFToken: sess.csrf, ExpiresAt: d.sessions.expires(sess).UTC()})
}

// getSession tells the pages whether they are signed in, and gives them
// the CSRF token, which the HttpOnly cookie hides from scripts.
func (d *Dashboard) getSession(w http.ResponseWriter, r *http.Request) {
	sess, err := d.session(r)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, SessionInfo{CSRFToken: sess.csrf, ExpiresAt: d.sessions.expires(sess).UTC()})
}

// signOut ends the session and clears its cookie; it needs the CSRF token.
func (d *Dashboard) signOut(w http.ResponseWriter, r *http.Request) {
	c, err := r.Cookie(CookieName)
	if err != nil {
		d.setCookie(w, r, "", -1)
		w.WriteHeader(http.StatusNoContent)
		return
	}
	sess, ok := d.sessions.get(c.Value)
	if ok && !sess.validCSRF(r.Header.Get(CSRFHeader)) {
		writeError(w, errCSRF)
		return
	}
	d.sessions.end(c.Value)
	d.setCookie(w, r, "", -1)
	w.WriteHeader(http.StatusNoContent)
}

// HasSession reports whether r carries a session cookie (valid or not).
// The controller authenticates a request without an Authorization header
// that has one with Authenticate.
func (d *Dashboard) HasSession(r *http.Request) bool {
	_, err := r.Cookie(CookieName)
	return err == nil
}

var (
	errNoSession = types.ErrUnauthorized.WithMessage("not signed in, or the session expired; sign in again")
	errRevoked   = types.ErrUnauthorized.WithMessage("the API token of this session was removed; sign in again")
	errBadToken  = types.ErrUnauthorized.WithMessage("the API token was rejected")
	errCSRF      = types.ErrForbidden.WithMessage("a change made with the session cookie needs the session's CSRF token in the " + CSRFHeader + " header")
)

// Authenticate checks the session of a request that carries the session
// cookie: the session is live, its API token still exists, and a request
// other than GET, HEAD and OPTIONS carries the session's CSRF token. It
// returns a *types.Error for the answer (401 or 403), or the error of the
// token check.
func (d *Dashboard) Authenticate(r *http.Request) error {
	sess, err := d.session(r)
	if err != nil {
		return err
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
	default:
		if !sess.validCSRF(r.Header.Get(CSRFHeader)) {
			return errCSRF
		}
	}
	return nil
}

// session returns the live session of r's cookie whose token still
// exists.
func (d *Dashboard) session(r *http.Request) (session, error) {
	c, err := r.Cookie(CookieName)
	if err != nil {
		return session{}, errNoSession
	}
	sess, ok := d.sessions.get(c.Value)
	if !ok {
		return session{}, errNoSession
	}
	if err := d.checkToken(r.Context(), sess.tokenSum); errors.Is(err, errBadToken) {
		d.sessions.end(c.Value)
		return session{}, errRevoked
	} else if err != nil {
		return session{}, err
	}
	return sess, nil
}

// checkToken returns nil when an API token has the SHA-256 sum, errBadToken
// when none has, or the error of the lookup.
func (d *Dashboard) checkToken(ctx context.Context, sum [sha256.Size]byte) error {
	ctx, cancel := context.WithTimeout(ctx, tokenCheckTimeout)
	defer cancel()
	hashes, err := d.tokens.TokenHashes(ctx)
	if err != nil {
		return fmt.Errorf("dashboard: check the session's API token: %w", err)
	}
	match := 0
	for _, h := range hashes {
		match |= subtle.ConstantTimeCompare(sum[:], h)
	}
	if match != 1 {
		return errBadToken
	}
	return nil
}

// fail answers err: a *types.Error as it is, anything else as 503 (the
// token lookup failed), logged.
func (d *Dashboard) fail(w http.ResponseWriter, r *http.Request, err error) {
	var apiErr *types.Error
	if errors.As(err, &apiErr) {
		writeError(w, apiErr)
		return
	}
	d.log.Warn("dashboard session check failed", "method", r.Method, "path", r.URL.Path, "err", err)
	writeError(w, types.ErrUnavailable.WithMessage("the API tokens cannot be read now; try again"))
}

// setCookie sets the session cookie to value for maxAge seconds (-1
// deletes it). It is Secure when the page came over HTTPS.
func (d *Dashboard) setCookie(w http.ResponseWriter, r *http.Request, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name:     CookieName,
		Value:    value,
		Path:     "/",
		MaxAge:   maxAge,
		HttpOnly: true,
		Secure:   r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https"),
		SameSite: http.SameSiteStrictMode,
	})
}

// sameOrigin reports whether a request that names its origin (browsers do
// on POST) comes from a page of this server.
func sameOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	_, host, ok := strings.Cut(origin, "://")
	return ok && strings.EqualFold(host, r.Host)
}
