package controller

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer0/reuseport"
	"github.com/gantryhq/gantry/layer0/sealed"
	"github.com/gantryhq/gantry/layer1/blobstore"
	"github.com/gantryhq/gantry/layer1/controller/build"
	"github.com/gantryhq/gantry/layer1/controller/deployer"
	"github.com/gantryhq/gantry/layer1/controller/gc"
	"github.com/gantryhq/gantry/layer1/controller/logread"
	"github.com/gantryhq/gantry/layer1/controller/mirror"
	"github.com/gantryhq/gantry/layer1/controller/store"
	"github.com/gantryhq/gantry/layer1/controller/types"
	"github.com/gantryhq/gantry/layer1/dashboard"
	"github.com/gantryhq/gantry/layer1/metricstore"
)

const (
	// shutdownTimeout bounds the graceful shutdown: requests still running
	// after it are cut off.
	shutdownTimeout = 10 * time.Second
	// readHeaderTimeout and idleTimeout protect the listener from slow or
	// idle clients.
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 2 * time.Minute
	// AdminTokenName is the name of the token CreateAdminToken makes.
	AdminTokenName = "admin"
	// tokenPrefix starts every API token, so that a leaked one is easy to
	// recognise.
	tokenPrefix = "gty_"
)

// Server is the controller's HTTP API on its database, with the workers
// that keep etcd in step with it (see Serve).
type Server struct {
	cfg      Config
	log      *slog.Logger
	store    *store.Store
	space    keyspace.Space
	mirror   *mirror.Mirror
	deployer *deployer.Deployer
	builder  *build.Builder
	// collector runs the garbage collections.
	collector *gc.Collector
	hosts     *hostClients
	blobs     *blobs
	events    events
	logs      logStreams
	logReader *logread.Reader
	dash      *dashboard.Dashboard
	handler   http.Handler
	metrics   *prometheus.Registry // the controller's own, served with the hosts' at /metrics
	history   *metricstore.Store   // the apps' key series (GET /v1/apps/{app}/metrics)

	// sealer seals the private keys stored in PostgreSQL; nil without
	// Config.SecretsKey.
	sealer *sealed.Sealer
	// certs obtains the routes' certificates; nil without Config.ACME.
	certs *certManager

	closeOnce sync.Once
}

// New returns a Server for cfg (Addr is not used). It does not connect to
// the database and does not migrate it (see Migrate): requests answer 503
// while PostgreSQL is unreachable. The caller must call Close.
func New(cfg Config) (*Server, error) {
	if err := cfg.validateForNew(); err != nil {
		return nil, err
	}
	space, err := keyspace.New(cfg.Cluster)
	if err != nil {
		return nil, fmt.Errorf("controller: Cluster: %w", err)
	}
	st, err := store.Open(cfg.DatabaseURL, 0)
	if err != nil {
		return nil, fmt.Errorf("controller: %w", err)
	}
	log := logger(cfg.Logger)
	mcfg := mirror.Config{Etcd: cfg.Etcd, Space: space, Source: st, Domain: cfg.defaultDomain, Logger: log.With("worker", "mirror")}
	if cfg.InternalURL != "" {
		mcfg.BlobURL = cfg.blobURL
	}
	m := mirror.New(mcfg)
	s := &Server{
		cfg:     cfg,
		log:     log,
		store:   st,
		space:   space,
		mirror:  m,
		hosts:   newHostClients(cfg.HostToken),
		blobs:   &blobs{databaseURL: cfg.DatabaseURL},
		events:  events{cfg.Events},
		metrics: newRegistry(),
		history: metricstore.New(0),
	}
	if s.logReader, err = logread.New(logread.Config{Etcd: cfg.Etcd, Space: space, Fallback: cfg.LogURL,
		Token: cfg.HostToken, Logger: log.With("worker", "logs")}); err != nil {
		st.Close()
		return nil, fmt.Errorf("controller: %w", err)
	}
	s.deployer = deployer.New(deployer.Config{
		Store: st, Etcd: cfg.Etcd, Space: space, Mirror: m, Timeout: cfg.deployTimeout(),
		Events: cfg.Events, LastLines: s.jobLastLines, Logger: log.With("worker", "deployer"),
	})
	s.builder = s.newBuilder()
	s.collector = s.newCollector()
	if cfg.SecretsKey != nil {
		if s.sealer, err = sealed.NewSealer(cfg.SecretsKey); err != nil {
			st.Close()
			return nil, fmt.Errorf("controller: SecretsKey: %w", err)
		}
	}
	if cfg.ACME != nil {
		s.certs = newCertManager(*cfg.ACME, st, s.sealer, cfg.Etcd, space, cfg.certDomain(), m.SyncApp, lockConns{s}, log.With("worker", "certs"))
	}
	// The web dashboard at / (layer1/dashboard) and its sessions.
	if s.dash, err = dashboard.New(dashboard.Config{Tokens: st, Logger: log.With("component", "dashboard")}); err != nil {
		st.Close()
		return nil, fmt.Errorf("controller: %w", err)
	}
	s.handler = s.logRequests(s.authenticate(s.routes()))
	return s, nil
}

// Handler returns the HTTP handler of the API. Without Serve, nothing
// re-syncs etcd periodically and deployments do not finish.
func (s *Server) Handler() http.Handler { return s.handler }

// Close closes the database connections. It is idempotent.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.store.Close()
		s.blobs.close()
	})
}

// Serve serves the API on ln until ctx ends, then shuts down gracefully:
// it stops accepting, lets running requests finish for up to 10 seconds,
// and returns nil. It closes ln. A failure of the listener is returned at
// once.
//
// While it serves, two workers run: the re-sync, which makes etcd's
// formations and routes match PostgreSQL at once and then every
// ResyncInterval (repairing keys that were lost or changed, e.g. after a
// restart), and the deployer, which finishes each running deployment once
// the new release's jobs are up, or fails it after DeployTimeout.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	srv.RegisterOnShutdown(s.deployer.Shutdown)
	srv.RegisterOnShutdown(s.logs.end)
	wctx, stopWorkers := context.WithCancel(ctx)
	var workers sync.WaitGroup
	defer func() {
		stopWorkers()
		workers.Wait()
	}()
	workers.Go(func() { s.mirror.Run(wctx, s.cfg.resyncInterval(), s.deployer.Poke) })
	workers.Go(func() { s.collector.Run(wctx) })
	workers.Go(func() { s.deployer.Run(wctx) })
	workers.Go(func() { s.sweepRuns(wctx) })
	workers.Go(func() { s.collectMetrics(wctx) })
	if s.certs != nil {
		workers.Go(func() { s.certs.run(wctx) })
	}

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("controller: serve on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	s.log.Info("controller shutting down", "addr", ln.Addr().String())
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	err := srv.Shutdown(shutdownCtx)
	if serveErr := <-errc; !errors.Is(serveErr, http.ErrServerClosed) {
		return fmt.Errorf("controller: serve on %s: %w", ln.Addr(), serveErr)
	}
	if err != nil {
		srv.Close()
		return fmt.Errorf("controller: graceful shutdown: %w", err)
	}
	return nil
}

// syncApp mirrors app into etcd after a change the request made in
// PostgreSQL, and wakes the deployer. A failure is only logged: the change
// is stored, and the periodic re-sync mirrors it once etcd answers.
func (s *Server) syncApp(r *http.Request, app string) {
	// The request's context may end as soon as the answer is sent; the
	// sync completes regardless.
	ctx := context.WithoutCancel(r.Context())
	if err := s.mirror.SyncApp(ctx, app); err != nil {
		s.log.Warn("mirror to etcd failed; the periodic re-sync retries", "app", app,
			"method", r.Method, "path", r.URL.Path, "err", err)
	}
	s.deployer.Poke()
}

// Run migrates the database, listens on cfg.Addr and serves the API until
// ctx ends, then shuts down gracefully and returns nil. It fails at once
// when the migrations cannot run or the address cannot be bound.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	log := logger(cfg.Logger)
	if err := Migrate(ctx, cfg.DatabaseURL, log); err != nil {
		return err
	}
	ln, err := reuseport.Listen(ctx, cfg.Addr, cfg.ReusePort)
	if err != nil {
		return fmt.Errorf("controller: listen on %s: %w", cfg.Addr, err)
	}
	if cfg.InternalURL == "" {
		cfg.InternalURL = internalURL(ln.Addr())
	}
	ln = serveTLSToo(ln, cfg.TLS)
	s, err := New(cfg)
	if err != nil {
		ln.Close()
		return err
	}
	defer s.Close()
	log.Info("controller listening", "addr", ln.Addr().String(), "version", cfg.Version,
		"cluster", cfg.Cluster, "domain", cfg.domain(), "git_url", cfg.GitURL,
		"router_http", cfg.RouterHTTP, "router_https", cfg.RouterHTTPS, "database", cfg.databaseName(),
		"internal_url", cfg.InternalURL, "builder_image", cfg.BuilderImage, "stack_image", cfg.StackImage,
		"build_timeout", cfg.buildTimeout(), "build_memory", cfg.buildMemory(), "disk_warning_percent", cfg.diskWarningPercent(),
		"reuse_port", cfg.ReusePort)
	if cfg.Ready != nil {
		cfg.Ready()
	}
	return s.Serve(ctx, ln)
}

// internalURL is the URL of the listener at addr for the host agents: an
// unspecified address becomes the loopback address.
func internalURL(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return "http://" + addr.String()
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// Migrate applies the controller's database migrations (see package
// store). It fails with a message saying so when PostgreSQL is unreachable.
func Migrate(ctx context.Context, databaseURL string, log *slog.Logger) error {
	if err := store.Migrate(ctx, databaseURL, log); err != nil {
		return fmt.Errorf("controller: %w", err)
	}
	return nil
}

// CreateAdminToken migrates the database if needed, then creates the API
// token named "admin", replacing any earlier one, and returns it. The token
// is "gty_" and 32 random bytes in unpadded base64url; only its SHA-256 is
// stored.
func CreateAdminToken(ctx context.Context, databaseURL string) (string, error) {
	if err := Migrate(ctx, databaseURL, nil); err != nil {
		return "", err
	}
	st, err := store.Open(databaseURL, 0)
	if err != nil {
		return "", fmt.Errorf("controller: %w", err)
	}
	defer st.Close()
	var secret [32]byte
	_, _ = rand.Read(secret[:]) // never fails (crypto/rand)
	token := tokenPrefix + base64.RawURLEncoding.EncodeToString(secret[:])
	if err := st.PutToken(ctx, AdminTokenName, sha256.Sum256([]byte(token))); err != nil {
		return "", fmt.Errorf("controller: create admin token: %w", err)
	}
	return token, nil
}

// route is one endpoint of the API. Only platform endpoints accept the
// platform's host token; the others need an API token.
type route struct {
	method, path string
	handle       http.HandlerFunc
	platform     bool
}

// routes returns the API's mux: the endpoints, a 405 for other methods on
// their paths, and a 404 elsewhere, all with JSON error bodies.
func (s *Server) routes() *http.ServeMux {
	routes := []route{
		{"GET", "/healthz", s.health, true},
		{"GET", "/v1/info", s.info, true},
		{"GET", "/v1/apps", s.listApps, false},
		{"POST", "/v1/apps", s.createApp, false},
		{"GET", "/v1/apps/{app}", s.getApp, true},
		{"PATCH", "/v1/apps/{app}", s.updateApp, false},
		{"DELETE", "/v1/apps/{app}", s.deleteApp, false},
		{"GET", "/v1/apps/{app}/config", s.getConfig, false},
		{"PATCH", "/v1/apps/{app}/config", s.updateConfig, false},
		{"POST", "/v1/apps/{app}/builds", s.build, true},
		{"GET", "/v1/apps/{app}/releases", s.listReleases, false},
		{"POST", "/v1/apps/{app}/releases", s.createRelease, false},
		{"GET", "/v1/apps/{app}/releases/{version}", s.getRelease, false},
		{"POST", "/v1/apps/{app}/rollback", s.rollback, false},
		{"GET", "/v1/apps/{app}/deploy", s.getDeploySettings, false},
		{"PATCH", "/v1/apps/{app}/deploy", s.updateDeploySettings, false},
		{"GET", "/v1/apps/{app}/deployments", s.listDeployments, false},
		{"GET", "/v1/apps/{app}/deployments/{id}", s.getDeployment, false},
		{"GET", "/v1/apps/{app}/deployments/{id}/events", s.deploymentEvents, false},
		{"GET", "/v1/apps/{app}/formation", s.getFormation, false},
		{"PUT", "/v1/apps/{app}/formation", s.scale, false},
		{"GET", "/v1/apps/{app}/jobs", s.listJobs, false},
		{"DELETE", "/v1/apps/{app}/jobs/{job}", s.killJob, false},
		{"POST", "/v1/apps/{app}/restart", s.restart, false},
		{"POST", "/v1/apps/{app}/run", s.runJob, false},
		{"GET", "/v1/apps/{app}/log", s.appLog, false},
		{"GET", "/v1/apps/{app}/routes", s.listRoutes, false},
		{"POST", "/v1/apps/{app}/routes", s.addRoute, false},
		{"DELETE", "/v1/apps/{app}/routes/{domain}", s.removeRoute, false},
		{"GET", "/v1/keys", s.listKeys, false},
		{"POST", "/v1/keys", s.addKey, false},
		{"GET", "/v1/keys/{fingerprint}", s.getKey, true},
		{"DELETE", "/v1/keys/{fingerprint}", s.removeKey, false},
		{"GET", "/metrics", s.clusterMetrics, false},
		{"GET", "/v1/hosts", s.getHosts, false},
		{"POST", "/v1/hosts/{host}/drain", s.drainHost, false},
		{"POST", "/v1/hosts/{host}/undrain", s.undrainHost, false},
		{"DELETE", "/v1/hosts/{host}", s.removeHost, false},
		{"POST", "/v1/gc", s.gc, false},
		{"GET", "/v1/apps/{app}/metrics", s.appMetrics, false},
	}
	mux := http.NewServeMux()
	allowed := map[string][]string{}
	for _, rt := range routes {
		handle := rt.handle
		if rt.method != "GET" && strings.HasPrefix(rt.path, "/v1/apps/{app}") {
			handle = s.requireEtcd(handle)
		}
		h := s.checkParams(rt.path, handle)
		if !rt.platform {
			h = adminOnly(h)
		}
		mux.HandleFunc(rt.method+" "+rt.path, h)
		if rt.method == "GET" {
			allowed[rt.path] = append(allowed[rt.path], "HEAD")
		}
		allowed[rt.path] = append(allowed[rt.path], rt.method)
	}
	for path, methods := range allowed {
		slices.Sort(methods)
		allow := strings.Join(methods, ", ")
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			writeError(w, types.ErrMethodNotAllowed.WithMessage("%s is not allowed on %s; use %s", r.Method, r.URL.Path, allow))
		})
	}
	mux.HandleFunc("POST "+JoinPath, s.join)
	// The blob handler answers its own methods (PUT, GET, HEAD, DELETE).
	mux.HandleFunc(blobstore.PathPrefix, s.serveBlob)
	// The web dashboard's pages, assets and session; every other path,
	// every unknown /v1/ one included, is a JSON 404.
	s.dash.Register(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, types.ErrNotFound.WithMessage("no endpoint %s", r.URL.Path))
	})
	return mux
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	if err := s.store.Ping(r.Context()); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, types.Health{Status: "ok"})
}

func (s *Server) info(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, types.Info{
		Version:     s.cfg.Version,
		Cluster:     s.cfg.Cluster,
		Domain:      s.cfg.domain(),
		GitURL:      s.cfg.GitURL,
		RouterHTTP:  s.cfg.RouterHTTP,
		RouterHTTPS: s.cfg.RouterHTTPS,
		GitHostKey:  s.cfg.GitHostKey,
	})
}
