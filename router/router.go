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
	// challengeLookups holds a slot per etcd read of a challenge the
	// watch has not brought yet (see lookupChallenge).
	challengeLookups chan struct{}
	backends         map[string]*backend // by address; owned by follow
	ready            chan struct{}
	readyOnce        sync.Once

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

		challengeLookups: make(chan struct{}, maxChallengeLookups),
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
// does. With Config.HandoverSocket set, it first asks the router answering
// there for its listening sockets and binds only the addresses it did not
// get (all of them when no router answers); see handover.go for the
// protocol.
func Run(ctx context.Context, cfg Config) error {
	r, err := New(cfg)
	if err != nil {
		return err
	}
	lns, tk, err := r.listen(ctx)
	if err != nil {
		return err
	}
	if lns.metrics != nil {
		mctx, stop := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Go(func() { r.serveMetrics(mctx, lns.metrics) })
		defer func() {
			stop()
			wg.Wait()
		}()
	}
	return r.serve(ctx, lns, tk)
}

// listeners are the router's listening sockets; https and metrics may be
// nil.
type listeners struct {
	http, https, metrics net.Listener
}

func (l listeners) close() {
	for _, ln := range []net.Listener{l.http, l.https, l.metrics} {
		if ln != nil {
			ln.Close()
		}
	}
}

// listen takes the listeners over from the router on the handover socket,
// when there is one, and binds those it did not get. With a taker, the
// handover is under way: serve ends it.
func (r *Router) listen(ctx context.Context) (listeners, *taker, error) {
	var lns listeners
	var tk *taker
	if path := r.cfg.HandoverSocket; path != "" {
		var got map[string]net.Listener
		var err error
		tk, got, err = take(ctx, path, r.wanted(), r.log)
		switch {
		case errors.Is(err, errNoGiver):
			r.log.Info("no router answers on the handover socket; binding the addresses", "path", path)
		case err != nil:
			return lns, nil, fmt.Errorf("router handover from %s: %w", path, err)
		default:
			lns = listeners{http: got[lnHTTP], https: got[lnHTTPS], metrics: got[lnMetrics]}
			r.log.Info("router took the running router's listeners", "path", path, "count", len(got))
		}
	}
	for _, b := range []struct {
		ln   *net.Listener
		addr string
	}{{&lns.http, r.cfg.HTTPAddr}, {&lns.https, r.cfg.HTTPSAddr}, {&lns.metrics, r.cfg.MetricsAddr}} {
		if *b.ln != nil || b.addr == "" {
			continue
		}
		ln, err := net.Listen("tcp", b.addr)
		if err != nil {
			lns.close()
			if tk != nil {
				tk.abort()
			}
			return listeners{}, nil, fmt.Errorf("router listen %s: %w", b.addr, err)
		}
		*b.ln = ln
	}
	return lns, tk, nil
}

// wanted names the listeners of the router's config, for a handover.
func (r *Router) wanted() []handoverListener {
	want := []handoverListener{{Name: lnHTTP, Addr: r.cfg.HTTPAddr}}
	if r.cfg.HTTPSAddr != "" {
		want = append(want, handoverListener{Name: lnHTTPS, Addr: r.cfg.HTTPSAddr})
	}
	if r.cfg.MetricsAddr != "" {
		want = append(want, handoverListener{Name: lnMetrics, Addr: r.cfg.MetricsAddr})
	}
	return want
}

// Serve routes the requests of httpLn (plain HTTP) and httpsLn (TLS with
// HTTP/2 and HTTP/1.1; nil for none) until ctx is done. HTTP/1 goes
// through the router's own server on both, HTTP/2 through net/http's. It starts accepting
// once the first routes and services are read from etcd. When ctx is done
// it keeps serving for ShutdownDelay with keep-alives off, then closes the
// listeners, waits up to ShutdownGrace for in-flight requests and upgraded
// connections, closes what is left and returns. It closes the listeners in
// every case and may be called once.
//
// With Config.HandoverSocket set, it offers the listeners there once it
// serves: when a new router has taken them and serves them too, it stops
// accepting at once (no shutdown delay) and drains as above.
func (r *Router) Serve(ctx context.Context, httpLn, httpsLn net.Listener) error {
	return r.serve(ctx, listeners{http: httpLn, https: httpsLn}, nil)
}

// serve is Serve with the listeners of Run: lns.metrics, served by Run, is
// only offered for a handover; tk, when not nil, is the handover of lns
// from the router that served them, ended once this one serves.
func (r *Router) serve(ctx context.Context, lns listeners, tk *taker) error {
	httpLn, httpsLn := lns.http, lns.https
	closeAll := func() {
		httpLn.Close()
		if httpsLn != nil {
			httpsLn.Close()
		}
	}
	abort := func() {
		closeAll()
		if tk != nil {
			tk.abort() // the old router keeps serving
		}
	}
	if !r.served.CompareAndSwap(false, true) {
		abort()
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
		abort()
		return err
	case <-ctx.Done():
		abort()
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
	var h2 *http.Server
	errc := make(chan error, 3)
	go func() { errc <- plain.Serve(httpLn) }()
	addrs := []any{"http", httpLn.Addr().String()}
	if httpsLn != nil {
		// The router's server does the handshakes and serves HTTP/1.1;
		// net/http's serves the connections that negotiated HTTP/2.
		f := r.frontend(httpsLn, true)
		h2ln := newConnQueue(httpsLn.Addr())
		secure := r.h1Server(f, r.tlsConfig(), h2ln.deliver)
		h2 = &http.Server{
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
		servers = append(servers, secure)
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

	all := servers
	if h2 != nil {
		all = append(all, h2)
	}

	// A handover under way ends once this router serves; then this router
	// offers the listeners in turn.
	var handoverErr error
	if tk != nil {
		if handoverErr = tk.ready(); handoverErr != nil {
			handoverErr = fmt.Errorf("router handover: %w", handoverErr)
			r.log.Error("router handover called off; stopping, the running router keeps serving", "err", handoverErr)
		} else {
			r.log.Info("router serves the listeners it took over")
		}
	}
	var g *giver
	var handed <-chan struct{}
	if path := r.cfg.HandoverSocket; path != "" && handoverErr == nil {
		offered := map[string]namedListener{lnHTTP: {r.cfg.HTTPAddr, httpLn}}
		if httpsLn != nil {
			offered[lnHTTPS] = namedListener{r.cfg.HTTPSAddr, httpsLn}
		}
		if lns.metrics != nil {
			offered[lnMetrics] = namedListener{r.cfg.MetricsAddr, lns.metrics}
		}
		var err error
		if g, err = offer(path, offered, r.log); err != nil {
			r.log.Error("router cannot offer its listeners for a handover; serving without", "err", err)
		} else {
			handed = g.handed
		}
	}

	if handoverErr == nil && r.cfg.Ready != nil {
		r.cfg.Ready()
	}

	var serveErr error
	if handoverErr == nil {
		select {
		case <-ctx.Done():
			r.log.Info("router stopping: still accepting for the shutdown delay", "delay", r.cfg.ShutdownDelay)
			for _, s := range all {
				s.SetKeepAlivesEnabled(false)
			}
			select {
			case <-time.After(r.cfg.ShutdownDelay):
			case serveErr = <-errc:
			case <-handed:
			}
		case serveErr = <-errc:
		case <-handed:
		}
	}
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		serveErr = fmt.Errorf("router serve: %w", serveErr)
	} else {
		serveErr = handoverErr
	}
	for _, s := range all {
		s.SetKeepAlivesEnabled(false)
	}
	if g != nil {
		g.close()
	}
	closeAll()
	var h2s httpServer
	if h2 != nil {
		h2s = h2
	}
	r.shutdown(servers, h2s)
	select {
	case <-handed:
		if r.cfg.StayAfterHandover && ctx.Err() == nil {
			r.log.Info("router drained after handing its listeners over; waiting to be stopped")
			<-ctx.Done()
		}
	default:
	}
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
// requests and upgraded connections, and closes what is left. The HTTP/1
// servers (h1s) go first: the HTTPS one hands the connections that
// negotiate HTTP/2 to h2 (nil for none) until it has stopped.
func (r *Router) shutdown(h1s []httpServer, h2 httpServer) {
	gctx, cancel := context.WithTimeout(context.Background(), r.cfg.ShutdownGrace)
	defer cancel()
	stop := func(s httpServer) {
		if err := s.Shutdown(gctx); err != nil {
			r.log.Warn("grace period over; closing the remaining connections", "err", err)
			s.Close()
		}
	}
	var wg sync.WaitGroup
	for _, s := range h1s {
		wg.Go(func() { stop(s) })
	}
	wg.Wait()
	if h2 != nil {
		stop(h2)
	}
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
