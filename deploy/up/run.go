package up

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	docker "github.com/docker/docker/client"
	"golang.org/x/sync/errgroup"

	"github.com/gantryhq/gantry/deploy/etcdserver"
	"github.com/gantryhq/gantry/deploy/node"
	"github.com/gantryhq/gantry/deploy/pgserver"
	"github.com/gantryhq/gantry/deploy/stack"
	"github.com/gantryhq/gantry/gitreceiver"
	"github.com/gantryhq/gantry/gitreceiver/backend"
	"github.com/gantryhq/gantry/layer0/host"
	"github.com/gantryhq/gantry/layer0/scheduler"
	"github.com/gantryhq/gantry/layer1/controller"
	"github.com/gantryhq/gantry/layer1/controller/client"
	"github.com/gantryhq/gantry/router"
)

// Run starts every role and blocks until ctx is done or a role fails; then it
// stops them all (PostgreSQL and the embedded etcd last). App containers keep
// running: the next Run adopts them. With cfg.Containers it runs the
// platform as containers instead (see runContainers).
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("gantryd up: %w", err)
	}
	if cfg.Out == nil {
		cfg.Out = os.Stdout
	}
	if err := checkMode(cfg.DataDir, cfg.Containers); err != nil {
		return fmt.Errorf("gantryd up: %w", err)
	}
	if cfg.Containers {
		return runContainers(ctx, cfg)
	}
	log := cfg.Logger
	// The data dir and the identity every role shares, as the role
	// commands open them.
	n, err := node.Open(ctx, cfg.DataDir)
	if err != nil {
		return err
	}
	log.Info("gantryd up starting",
		"version", cfg.Version, "data", n.Dir, "cluster", n.Cluster, "host", n.HostID,
		"api_addr", cfg.APIAddr, "http_addr", cfg.HTTPAddr, "https_addr", cfg.HTTPSAddr,
		"ssh_addr", cfg.SSHAddr, "host_api_addr", cfg.HostAPIAddr, "domain", cfg.Domain, "deploy_timeout", cfg.DeployTimeout,
		"slugs_kept", cfg.SlugsKept, "gc_interval", cfg.GCInterval, "disk_warning_percent", cfg.DiskWarningPercent,
		"advertise", cfg.AdvertiseAddr, "etcd", etcdMode(cfg), "database", dbMode(cfg))

	// etcd: embedded unless an external cluster is given.
	endpoints := cfg.EtcdEndpoints
	if len(endpoints) == 0 {
		// Mutual TLS only: the host certificate names the addresses
		// etcd listens on.
		if err := n.EnsureTLS(ctx, cfg.EtcdClientAddr, cfg.EtcdPeerAddr); err != nil {
			return err
		}
		ecfg, err := n.Etcd(etcdserver.Config{
			ClientAddr: cfg.EtcdClientAddr,
			PeerAddr:   cfg.EtcdPeerAddr,
			Logger:     log.With("component", "etcd"),
		})
		if err != nil {
			return err
		}
		srv, err := etcdserver.Start(ctx, ecfg)
		if err != nil {
			return err
		}
		defer srv.Close()
		endpoints = []string{srv.Endpoint()}
	}
	etcd, err := n.EtcdClient(node.EtcdClientConfig{Endpoints: endpoints, CAFile: cfg.EtcdCAFile, CertFile: cfg.EtcdCertFile, KeyFile: cfg.EtcdKeyFile})
	if err != nil {
		return fmt.Errorf("connect to etcd: %w", err)
	}
	defer etcd.Close()

	// PostgreSQL: private unless an external server is given.
	dbURL := cfg.DatabaseURL
	if dbURL == "" {
		pg, err := pgserver.Start(ctx, pgserver.Config{Dir: n.Path(node.PostgresDir), Logger: log.With("component", "postgres")})
		if err != nil {
			return err
		}
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
			defer cancel()
			if err := pg.Stop(sctx); err != nil {
				log.Error("stop postgres", "err", err)
			}
		}()
		if err := pg.CreateDatabase(ctx, "gantry"); err != nil {
			return err
		}
		dbURL = pg.URL("gantry")
	}
	if err := controller.Migrate(ctx, dbURL, log.With("component", "migrate")); err != nil {
		return err
	}
	api := node.APIURL(cfg.APIAddr)
	if err := n.EnsureAdminEnv(ctx, dbURL, api); err != nil {
		return err
	}
	var acmeCfg *controller.ACMEConfig
	if cfg.ACMEEmail != "" {
		acmeCfg = &controller.ACMEConfig{Email: cfg.ACMEEmail, Directory: cfg.ACMEDirectory, CAFile: cfg.ACMECAFile}
	}
	dk, err := docker.NewClientWithOpts(docker.FromEnv, docker.WithAPIVersionNegotiation())
	if err != nil {
		return fmt.Errorf("docker client: %w", err)
	}
	defer dk.Close()
	logs, err := startLogs(cfg, n, log.With("component", "logaggregator"))
	if err != nil {
		return err
	}
	defer logs.stop()

	stackImage, builderImage := stack.StackRef(stack.DefaultVersion), stack.BuilderRef(stack.DefaultVersion)
	missingImages := checkImages(ctx, dk, log, stackImage, builderImage)
	if len(missingImages) > 0 {
		log.Warn("images missing: git push cannot build until `gantryd stack build` makes them", "images", missingImages)
	}
	env := node.BuildEnv(ctx, log)
	log.Info("build settings", "builder", builderImage, "stack", stackImage, "env", env)

	gitBackend := backend.New(client.New(api, n.HostToken))
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return host.Run(gctx, n.Host(host.Config{
			Etcd:          etcd,
			Docker:        dk,
			AdvertiseAddr: cfg.AdvertiseAddr,
			APIAddr:       cfg.HostAPIAddr,
			LogURL:        logs.url,
			Logs:          logs.host,
			Version:       cfg.Version,
			Logger:        log.With("component", "host"),
		}))
	})
	g.Go(func() error {
		return router.Run(gctx, n.Router(router.Config{
			Etcd:      etcd,
			HTTPAddr:  cfg.HTTPAddr,
			HTTPSAddr: cfg.HTTPSAddr,
			AccessLog: cfg.AccessLog,
			AppLog:    logs.router,
			Logger:    log.With("component", "router"),
			Limits:    cfg.RouterLimits,
			// The controller finds the router's metrics through
			// discovery and reads them with the platform token.
			MetricsAddr: net.JoinHostPort(metricsHost(cfg.HTTPAddr), "0"),
		}))
	})
	g.Go(func() error {
		return scheduler.Run(gctx, n.Scheduler(scheduler.Config{
			Etcd:   etcd,
			Logger: log.With("component", "scheduler"),
		}))
	})
	g.Go(func() error {
		// The controller mirrors formations and routes into etcd and
		// re-syncs them periodically (controller.Server.Serve), and kills
		// jobs through the host agent's API with the host token.
		return controller.Run(gctx, n.Controller(controller.Config{
			DatabaseURL: dbURL,
			Addr:        cfg.APIAddr,
			Etcd:        etcd,
			LogURL:      logs.url,
			Events:      logs.controller,
			Domain:      cfg.Domain,
			GitURL:      sshBaseURL(cfg.SSHAddr),
			RouterHTTP:  publicURL("http", cfg.HTTPAddr),
			RouterHTTPS: publicURL("https", cfg.HTTPSAddr),
			// The host agent fetches slugs and build inputs from the
			// controller, and uploads build outputs to it, on loopback.
			InternalURL:   api,
			BuilderImage:  builderImage,
			StackImage:    stackImage,
			BuildEnv:      env,
			DeployTimeout: cfg.DeployTimeout,
			SlugsKept:     cfg.SlugsKept,
			GCInterval:    cfg.GCInterval,
			ACME:          acmeCfg,
			Version:       cfg.Version,
			Logger:        log.With("component", "controller"),

			// Its disk warnings go to the aggregator's log of
			// gantry-controller too, though no such app exists in
			// this mode.
			DiskWarningPercent: cfg.DiskWarningPercent,
		}))
	})
	g.Go(func() error {
		// The git receiver asks the controller about keys and apps and
		// has it build each push, with the platform's host token.
		return gitreceiver.Run(gctx, n.GitReceiver(gitreceiver.Config{
			Addr:    cfg.SSHAddr,
			Keys:    gitBackend,
			Apps:    gitBackend,
			Builder: gitBackend,
			Logger:  log.With("component", "gitreceiver"),
		}))
	})
	g.Go(func() error {
		if err := waitHealthy(gctx, api+"/healthz", time.Minute); err != nil {
			return err
		}
		banner(cfg, n, missingImages)
		return nil
	})
	err = g.Wait()
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		err = nil
	}
	log.Info("gantryd up stopping")
	return err
}

// banner prints that the platform is up, where, the images missing for
// builds, and how to point the CLI at it.
func banner(cfg Config, n *node.Node, missingImages []string) {
	fmt.Fprintf(cfg.Out, "Gantry is up: API %s, apps at %s, git push to %s/<app>.git\n",
		node.APIURL(cfg.APIAddr), publicURL("http", cfg.HTTPAddr), sshBaseURL(cfg.SSHAddr))
	if len(missingImages) > 0 {
		fmt.Fprintf(cfg.Out, "Images missing (%s): run `gantryd stack build` before git push\n", strings.Join(missingImages, ", "))
	}
	fmt.Fprintf(cfg.Out, "To use the CLI: set -a; . %s; set +a\n", n.Path(node.AdminEnvFile))
}

// metricsHost is the host the router's metrics listener binds: the HTTP
// listener's, or loopback when that listens on every address.
func metricsHost(httpAddr string) string {
	host, _, _ := net.SplitHostPort(httpAddr)
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return "127.0.0.1"
	}
	return host
}

func etcdMode(cfg Config) string {
	if len(cfg.EtcdEndpoints) > 0 {
		return fmt.Sprint(cfg.EtcdEndpoints)
	}
	return "embedded on " + cfg.EtcdClientAddr
}

func dbMode(cfg Config) string {
	if cfg.DatabaseURL != "" {
		return "external"
	}
	return "private PostgreSQL in the data dir"
}
