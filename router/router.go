package router

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gantryhq/gantry/layer0/discovery"
	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer0/sealed"
	"github.com/gantryhq/gantry/router/internal/h1"
)

// Router is an HTTP and HTTPS router. Get one from New and run it with
// Serve, or use Run for both.
type Router struct {
	cfg   Config
	log   *slog.Logger
	space keyspace.Space
	disc  *discovery.Client
	pool  pool
	// base is the origin of the router's clock (see now).
	base        time.Time
	defaultCert *tls.Certificate
	access      *accessLog
	stats       *appMetrics

	table atomic.Pointer[table]
	// sealer opens the routes' sealed keys; nil without Config.SecretsKey.
	sealer *sealed.Sealer
	// challenges maps ACME HTTP-01 tokens to their key authorizations
	// (see followChallenges); nil until the first snapshot.
	challenges atomic.Pointer[map[string]string]
	backends   map[string]*backend // by address; owned by follow
	ready      chan struct{}
	readyOnce  sync.Once

	// httpsPortSuffix is ":<port>" of the HTTPS listener for redirects, ""
	// for port 443.
	httpsPortSuffix string

	upMu     sync.Mutex
	upgrades map[*upgraded]struct{}
	upClosed bool
	upWG     sync.WaitGroup

	served atomic.Bool
	// conns counts the client connections against Config.MaxConns.
	conns *connLimit
}

// New checks cfg and prepares a router: it makes the default certificate
// but neither listens nor reads etcd yet.
func New(cfg Config) (*Router, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	cert, err := defaultCertificate()
	if err != nil {
		return nil, err
	}
	space := keyspace.MustNew(cfg.Cluster)
	r := &Router{
		cfg:         cfg,
		log:         cfg.Logger,
		space:       space,
		disc:        discovery.New(cfg.Etcd, space, 0, cfg.Logger),
		pool:        pool{dialTimeout: cfg.DialTimeout, idleTimeout: int64(cfg.BackendIdleTimeout), maxIdle: cfg.MaxIdlePerBackend},
		base:        time.Now(),
		defaultCert: cert,
		access:      newAccessLog(cfg.AccessLog, cfg.AppLog, cfg.Logger),
		backends:    map[string]*backend{},
		ready:       make(chan struct{}),
		upgrades:    map[*upgraded]struct{}{},
	}
	if !cfg.NoAppMetrics {
		r.stats = &appMetrics{apps: map[string]*appStats{}}
	}
	r.conns = &connLimit{max: int64(cfg.MaxConns), log: cfg.Logger, now: r.now}
	if cfg.SecretsKey != nil {
		if r.sealer, err = sealed.NewSealer(cfg.SecretsKey); err != nil {
			return nil, fmt.Errorf("router: %w", err)
		}
	}
	r.table.Store(emptyTable)
	return r, nil
}

// now is the time on the router's monotonic clock, in nanoseconds.
func (r *Router) now() int64 { return int64(time.Since(r.base)) }

// Run serves cfg's addresses until ctx is done, then shuts down as Serve
// does.
func Run(ctx context.Context, cfg Config) error {
	r, err := New(cfg)
	if err != nil {
		return err
	}
	httpLn, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("router listen %s: %w", cfg.HTTPAddr, err)
	}
	var httpsLn net.Listener
	if cfg.HTTPSAddr != "" {
		if httpsLn, err = net.Listen("tcp", cfg.HTTPSAddr); err != nil {
			httpLn.Close()
			return fmt.Errorf("router listen %s: %w", cfg.HTTPSAddr, err)
		}
	}
	if cfg.MetricsAddr != "" {
		metricsLn, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			httpLn.Close()
			if httpsLn != nil {
				httpsLn.Close()
			}
			return fmt.Errorf("router listen %s: %w", cfg.MetricsAddr, err)
		}
		mctx, stop := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Go(func() { r.serveMetrics(mctx, metricsLn) })
		defer func() {
			stop()
			wg.Wait()
		}()
	}
	return r.Serve(ctx, httpLn, httpsLn)
}

// Serve routes the requests of httpLn (plain HTTP) and httpsLn (TLS with
// HTTP/2 and HTTP/1.1; nil for none) until ctx is done. HTTP/1 goes
// through the router's own server on both, HTTP/2 through net/http's. It starts accepting
// once the first routes and services are read from etcd. When ctx is done
// it keeps serving for ShutdownDelay with keep-alives off, then closes the
// listeners, waits up to ShutdownGrace for in-flight requests and upgraded
// connections, closes what is left and returns. It closes the listeners in
// every case and may be called once.
func (r *Router) Serve(ctx context.Context, httpLn, httpsLn net.Listener) error {
	closeAll := func() {
		httpLn.Close()
		if httpsLn != nil {
			httpsLn.Close()
		}
	}
	if !r.served.CompareAndSwap(false, true) {
		closeAll()
		return errors.New("router: Serve called twice")
	}
	// The watches and the access log outlive ctx by the shutdown delay and
	// grace, so that draining requests are still routed and logged.
	wctx, stopWatch := context.WithCancel(context.WithoutCancel(ctx))
	var bg sync.WaitGroup
	watchErr := make(chan error, 2)
	bg.Go(func() { watchErr <- r.follow(wctx) })
	bg.Go(func() {
		if err := r.followChallenges(wctx); err != nil {
			watchErr <- err
		}
	})
	bg.Go(func() { r.access.flushEvery(wctx, time.Second) })
	defer func() {
		stopWatch()
		bg.Wait()
		r.access.flush()
	}()

	select {
	case <-r.ready:
	case err := <-watchErr:
		closeAll()
		return err
	case <-ctx.Done():
		closeAll()
		return nil
	}

	if httpsLn != nil {
		// Set before any request can read it (see redirect).
		if _, port, _ := net.SplitHostPort(httpsLn.Addr().String()); port != "443" {
			r.httpsPortSuffix = ":" + port
		}
	}
	plain := r.h1Server(r.frontend(httpLn, false), nil, nil)
	servers := []httpServer{plain}
	errc := make(chan error, 3)
	go func() { errc <- plain.Serve(httpLn) }()
	addrs := []any{"http", httpLn.Addr().String()}
	if httpsLn != nil {
		// The router's server does the handshakes and serves HTTP/1.1;
		// net/http's serves the connections that negotiated HTTP/2.
		f := r.frontend(httpsLn, true)
		h2ln := newConnQueue(httpsLn.Addr())
		secure := r.h1Server(f, r.tlsConfig(), h2ln.deliver)
		h2 := &http.Server{
			Handler:           f,
			ReadHeaderTimeout: r.cfg.ReadHeaderTimeout,
			IdleTimeout:       r.cfg.ClientIdleTimeout,
			MaxHeaderBytes:    h1.MaxHeadBytes,
			ErrorLog:          slog.NewLogLogger(r.log.Handler(), slog.LevelDebug),
			ConnState: func(_ net.Conn, st http.ConnState) {
				if st == http.StateClosed {
					r.conns.Release()
				}
			},
		}
		servers = append(servers, secure, h2)
		go func() { errc <- secure.Serve(httpsLn) }()
		go func() { errc <- h2.Serve(h2ln) }()
		addrs = append(addrs, "https", httpsLn.Addr().String())
	}
	r.log.Info("router serving", append(addrs, "cluster", r.cfg.Cluster,
		"dial_timeout", r.cfg.DialTimeout, "response_header_timeout", r.cfg.ResponseHeaderTimeout,
		"read_header_timeout", r.cfg.ReadHeaderTimeout, "client_body_timeout", r.cfg.ClientBodyTimeout,
		"send_timeout", r.cfg.SendTimeout, "tunnel_idle_timeout", r.cfg.TunnelIdleTimeout,
		"client_idle_timeout", r.cfg.ClientIdleTimeout, "backend_idle_timeout", r.cfg.BackendIdleTimeout,
		"max_conns", r.cfg.MaxConns,
		"shutdown_delay", r.cfg.ShutdownDelay, "shutdown_grace", r.cfg.ShutdownGrace,
		"access_log", r.access != nil)...)

	var serveErr error
	select {
	case <-ctx.Done():
		r.log.Info("router stopping: still accepting for the shutdown delay", "delay", r.cfg.ShutdownDelay)
		for _, s := range servers {
			s.SetKeepAlivesEnabled(false)
		}
		select {
		case <-time.After(r.cfg.ShutdownDelay):
		case serveErr = <-errc:
		}
	case serveErr = <-errc:
	}
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		serveErr = fmt.Errorf("router serve: %w", serveErr)
	} else {
		serveErr = nil
	}
	r.shutdown(servers)
	return serveErr
}

// httpServer is what shutdown needs of the HTTP/1 servers (h1.Server) and
// the HTTP/2 one (net/http's).
type httpServer interface {
	SetKeepAlivesEnabled(bool)
	Shutdown(context.Context) error
	Close() error
}

// shutdown closes the listeners, waits up to the grace period for in-flight
// requests and upgraded connections, and closes what is left.
func (r *Router) shutdown(servers []httpServer) {
	gctx, cancel := context.WithTimeout(context.Background(), r.cfg.ShutdownGrace)
	defer cancel()
	var wg sync.WaitGroup
	for _, s := range servers {
		wg.Go(func() {
			if err := s.Shutdown(gctx); err != nil {
				r.log.Warn("grace period over; closing the remaining connections", "err", err)
				s.Close()
			}
		})
	}
	wg.Wait()
	upDone := make(chan struct{})
	go func() { r.upWG.Wait(); close(upDone) }()
	select {
	case <-upDone:
	case <-gctx.Done():
		r.upMu.Lock()
		r.upClosed = true
		n := len(r.upgrades)
		for u := range r.upgrades {
			u.close()
		}
		r.upMu.Unlock()
		r.log.Warn("grace period over; closed upgraded connections", "count", n)
		<-upDone
	}
	r.log.Info("router stopped")
}

var _ httpServer = (*h1.Server)(nil)

// h1Server returns the router's HTTP/1 server for f's listener; with
// tlsConfig set, it hands the connections that negotiate HTTP/2 to h2.
func (r *Router) h1Server(f *frontend, tlsConfig *tls.Config, h2 func(*tls.Conn) bool) *h1.Server {
	return h1.NewServer(h1.Config{
		ReadHeaderTimeout: r.cfg.ReadHeaderTimeout,
		IdleTimeout:       r.cfg.ClientIdleTimeout,
		BodyTimeout:       r.cfg.ClientBodyTimeout,
		SendTimeout:       r.cfg.SendTimeout,
		Limit:             r.conns,
		TLS:               tlsConfig,
		H2:                h2,
		Logger:            r.log,
	}, f.newConnHandler)
}

func (r *Router) frontend(ln net.Listener, tls bool) *frontend {
	f := &frontend{r: r, tls: tls, proto: "http"}
	if tls {
		f.proto = "https"
	}
	if _, port, err := net.SplitHostPort(ln.Addr().String()); err == nil {
		f.port = port
	}
	return f
}
