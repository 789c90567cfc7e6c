package router

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer0/sealed"
)

// DefaultMaxConns is the default of Config.MaxConns.
const DefaultMaxConns = 10000

// maxSocketPath is the size of a Unix socket address's path (sun_path),
// its terminating NUL included.
const maxSocketPath = 108

// ErrInvalidConfig is returned by Config.Validate and New.
var ErrInvalidConfig = errors.New("invalid router config")

// Config configures a Router. Durations of zero take the default named on
// each field.
type Config struct {
	// Cluster is the cluster ID whose routes and services are followed;
	// required.
	Cluster string
	// Etcd is the etcd client; required. The router does not close it.
	Etcd *clientv3.Client
	// HTTPAddr is the HTTP listen address, e.g. "127.0.0.1:8080"; required
	// by Run.
	HTTPAddr string
	// HTTPSAddr is the HTTPS listen address, e.g. "127.0.0.1:8443"; empty
	// means no HTTPS listener. Its port is the one https_only redirects to.
	HTTPSAddr string
	// Logger receives the router's own logs; nil discards them.
	Logger *slog.Logger
	// AccessLog receives one line per request; nil means no access log.
	// Lines are buffered and written at least once a second.
	AccessLog io.Writer
	// AppLog receives, for each request routed to an app, the line it adds
	// to the app's log (see AppLogSink); nil means none.
	AppLog AppLogSink
	// ID names the router in discovery (see MetricsAddr); empty means the
	// machine's host name.
	ID string
	// MetricsAddr is the listen address of the router's GET /metrics (the
	// apps' request counts, bytes and latency histograms, in the
	// Prometheus text format), e.g. "127.0.0.1:0"; Run registers the bound
	// address in discovery as the service types.Service, so that the
	// controller finds every router. Empty means no metrics listener.
	MetricsAddr string
	// MetricsToken is the bearer token /metrics requires (the platform's
	// token); required with MetricsAddr.
	MetricsToken string
	// NoAppMetrics turns off the per-app request counters and latency
	// histograms (their cost is measured against a router without them);
	// false keeps them, as every platform router does.
	NoAppMetrics bool

	// DialTimeout bounds connecting to a backend; zero means 5 s.
	DialTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for a backend's response
	// headers once the request is sent (for a streamed request body, once
	// the body is sent), and each wait for a backend to take more of the
	// request, give or take a tenth; zero means 30 s. Running out is a 504.
	ResponseHeaderTimeout time.Duration
	// ReadHeaderTimeout bounds reading a client's request headers; zero
	// means 10 s.
	ReadHeaderTimeout time.Duration
	// ClientIdleTimeout closes a client's keep-alive connection idle that
	// long (give or take a tenth, at most a second, on HTTP/1);
	// zero means 60 s.
	ClientIdleTimeout time.Duration
	// Limits bounds what one client can hold.
	Limits
	// BackendIdleTimeout closes a pooled backend connection idle that long;
	// zero means 90 s.
	BackendIdleTimeout time.Duration
	// MaxIdlePerBackend caps the idle connections kept per backend; zero
	// means 256.
	MaxIdlePerBackend int
	// ShutdownDelay is how long the router keeps accepting after its
	// context is cancelled (so a load balancer in front can notice), with
	// keep-alives off; zero means 1 s, negative means none.
	ShutdownDelay time.Duration
	// ShutdownGrace bounds the wait for in-flight requests and upgraded
	// connections after the listeners close; zero means 30 s.
	ShutdownGrace time.Duration
	// HandoverSocket is the path of the Unix socket through which routers
	// hand their listening sockets over (gantryd router uses
	// <data>/router/handover.sock): Run first asks the router answering
	// there for its listeners and binds only the addresses it does not get;
	// once serving, the router answers there in turn, and stops accepting
	// and drains when a new router has taken its listeners. The socket has
	// mode 0600 and its directory, made when missing, 0700; only a process
	// of the same user may take the listeners. It must be absolute and,
	// as a socket address, under 108 bytes. Empty means no handover: Run
	// binds the addresses and offers nothing.
	HandoverSocket string
	// StayAfterHandover keeps Run from returning when the router has
	// handed its listeners over and drained: it waits for its context to
	// end (a platform job's SIGTERM), so that its supervisor does not see
	// it exit as a crash while a deployment still counts it. False returns
	// once drained (a `gantryd router` run by hand).
	StayAfterHandover bool
	// Ready, when not nil, is called once the router serves (after a
	// handover, once the running router has let go of its listeners) and
	// offers its listeners for the next handover: the job's readiness
	// signal.
	Ready func()
	// SecretsKey is the sealed.KeySize-byte key that opens the sealed
	// private keys of the routes (the controller's SecretsKey; gantryd up
	// reads <data>/secrets.key). Nil serves only routes whose keys are
	// plain; a route with a sealed key is then left out, as an invalid
	// one.
	SecretsKey []byte
}

// Limits are the router's defences against clients that hold connections:
// the inactivity deadlines of request bodies, responses and upgraded
// connections, and the cap on client connections. Zero values take the
// default named on each field.
type Limits struct {
	// ClientBodyTimeout bounds each wait for more of a client's request
	// body: the connection closes (with a 408 when the response has not
	// started) and its backend connection with it when the client sends
	// nothing of its body for that long. It is an inactivity deadline,
	// renewed whenever bytes arrive (give or take a tenth, at most a
	// second), as nginx's client_body_timeout; zero means 60 s.
	ClientBodyTimeout time.Duration
	// SendTimeout bounds each wait for a client to take more of its
	// response: the connection and its backend connection close when the
	// client reads nothing for that long. It is an inactivity deadline,
	// renewed whenever the client takes bytes (give or take a tenth, at
	// most a second), as nginx's send_timeout; zero means 60 s.
	SendTimeout time.Duration
	// TunnelIdleTimeout closes an upgraded connection (WebSocket and
	// others) when no byte has gone either way for that long; zero means
	// 1 h.
	TunnelIdleTimeout time.Duration
	// MaxConns caps the client connections open at once, HTTP and HTTPS
	// together, upgraded ones included. Beyond it a new HTTP connection
	// gets a 503 and is closed, a new HTTPS one is closed before the
	// handshake, and the router logs it (at most every 10 s, with the
	// count). Keep it below the process's file descriptor limit, which
	// backend connections share; zero means 10,000.
	MaxConns int
}

// Validate reports missing or malformed fields.
func (c Config) Validate() error {
	var errs []error
	if _, err := keyspace.New(c.Cluster); err != nil {
		errs = append(errs, err)
	}
	if c.Etcd == nil {
		errs = append(errs, errors.New("no etcd client"))
	}
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		errs = append(errs, fmt.Errorf("http addr %q: want host:port", c.HTTPAddr))
	}
	if c.SecretsKey != nil && len(c.SecretsKey) != sealed.KeySize {
		errs = append(errs, fmt.Errorf("secrets key is %d bytes, want %d", len(c.SecretsKey), sealed.KeySize))
	}
	if c.HTTPSAddr != "" {
		if _, _, err := net.SplitHostPort(c.HTTPSAddr); err != nil {
			errs = append(errs, fmt.Errorf("https addr %q: want host:port", c.HTTPSAddr))
		}
	}
	for name, d := range map[string]time.Duration{
		"dial timeout": c.DialTimeout, "response header timeout": c.ResponseHeaderTimeout,
		"read header timeout": c.ReadHeaderTimeout, "client idle timeout": c.ClientIdleTimeout,
		"backend idle timeout": c.BackendIdleTimeout, "shutdown grace": c.ShutdownGrace,
		"client body timeout": c.ClientBodyTimeout, "send timeout": c.SendTimeout,
		"tunnel idle timeout": c.TunnelIdleTimeout,
	} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s %v: want zero or more", name, d))
		}
	}
	if c.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil {
			errs = append(errs, fmt.Errorf("metrics addr %q: want host:port", c.MetricsAddr))
		}
		if c.MetricsToken == "" {
			errs = append(errs, errors.New("a metrics addr needs a metrics token"))
		}
	}
	if p := c.HandoverSocket; p != "" {
		if !filepath.IsAbs(p) {
			errs = append(errs, fmt.Errorf("handover socket %q: want an absolute path", p))
		}
		// The temporary name of the socket (see offer) must fit
		// sun_path too.
		if n := len(p) + len(".4194304.tmp"); n >= maxSocketPath {
			errs = append(errs, fmt.Errorf("handover socket %q: too long for a socket address (%d bytes with its temporary suffix, want under %d)", p, n, maxSocketPath))
		}
	}
	if c.MaxIdlePerBackend < 0 {
		errs = append(errs, fmt.Errorf("max idle per backend %d: want zero or more", c.MaxIdlePerBackend))
	}
	if c.MaxConns < 0 {
		errs = append(errs, fmt.Errorf("max conns %d: want zero or more", c.MaxConns))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
	}
	return nil
}

// withDefaults returns c with the zero values replaced by the defaults.
func (c Config) withDefaults() Config {
	if c.ID == "" {
		c.ID, _ = os.Hostname()
		if c.ID == "" {
			c.ID = "router"
		}
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.DialTimeout, 5*time.Second)
	def(&c.ResponseHeaderTimeout, 30*time.Second)
	def(&c.ReadHeaderTimeout, 10*time.Second)
	def(&c.ClientIdleTimeout, 60*time.Second)
	def(&c.ClientBodyTimeout, 60*time.Second)
	def(&c.SendTimeout, 60*time.Second)
	def(&c.TunnelIdleTimeout, time.Hour)
	def(&c.BackendIdleTimeout, 90*time.Second)
	def(&c.ShutdownDelay, time.Second)
	def(&c.ShutdownGrace, 30*time.Second)
	if c.ShutdownDelay < 0 {
		c.ShutdownDelay = 0
	}
	if c.MaxIdlePerBackend == 0 {
		c.MaxIdlePerBackend = 256
	}
	if c.MaxConns == 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}
