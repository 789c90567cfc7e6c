// Command gantryd runs the Gantry platform: `gantryd up` starts a whole
// single node; `gantryd etcd`, `host`, `controller`, `scheduler`, `router`,
// `gitreceiver serve` and `logaggregator` run one role each.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	docker "github.com/docker/docker/client"
	"github.com/urfave/cli/v2"

	"github.com/gantryhq/gantry/deploy/node"
	"github.com/gantryhq/gantry/deploy/stack"
	"github.com/gantryhq/gantry/deploy/up"
	"github.com/gantryhq/gantry/gitreceiver"
	"github.com/gantryhq/gantry/slugrunner"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second signal gets the default behaviour: exit at once
	}()
	app := &cli.App{
		Name:    "gantryd",
		Usage:   "run the Gantry platform",
		Version: version,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error", EnvVars: []string{"GANTRY_LOG_LEVEL"}},
		},
		Commands: []*cli.Command{upCommand(), downCommand(), joinTokenCommand(), joinCommand(), backupCommand(), restoreCommand(), stackCommand(), slugrunnerCommand(), slugbuilderCommand(),
			etcdCommand(), hostCommand(), controllerCommand(), schedulerCommand(), routerCommand(), gitreceiverCommand(), logaggregatorCommand()},
	}
	if err := app.RunContext(ctx, joinArgs(os.Args)); err != nil {
		fmt.Fprintf(os.Stderr, "gantryd: %v\n", err)
		os.Exit(1)
	}
}

func logger(c *cli.Context) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})), nil
}

func defaultDataDir() string {
	home, err := os.UserHomeDir()
	if err != nil {
		return ".gantry"
	}
	return filepath.Join(home, ".gantry")
}

func upCommand() *cli.Command {
	return &cli.Command{
		Name:  "up",
		Usage: "start (or restart) this host's platform as containers, then follow its logs until Ctrl-C",
		Flags: upFlags(),
		Action: func(c *cli.Context) error {
			log, err := logger(c)
			if err != nil {
				return err
			}
			cfg, closeAccessLog, err := upConfig(c, log)
			if err != nil {
				return err
			}
			defer closeAccessLog()
			return up.Run(c.Context, cfg)
		},
	}
}

// upFlags are the flags of gantryd up (and of gantryd join, which starts
// the host it adds as gantryd up does).
func upFlags() []cli.Flag {
	return append([]cli.Flag{
		&cli.StringFlag{Name: "data", Value: defaultDataDir(), Usage: "data directory"},
		&cli.IntFlag{Name: "log-lines", Value: 10000, Usage: "lines of log history kept per app"},
		&cli.StringFlag{Name: "etcd", Usage: "with --in-process: comma-separated URLs of an external etcd cluster (instead of the embedded one); https URLs use --etcd-*-file, else the node's cluster certificates"},
		&cli.StringFlag{Name: "etcd-ca-file", Usage: "CA bundle `FILE` of the external etcd cluster"},
		&cli.StringFlag{Name: "etcd-cert-file", Usage: "client certificate `FILE` for the external etcd cluster"},
		&cli.StringFlag{Name: "etcd-key-file", Usage: "client key `FILE` for the external etcd cluster"},
		&cli.StringFlag{Name: "database-url", Usage: "with --in-process: PostgreSQL connection string (instead of the private server)", EnvVars: []string{"GANTRY_DATABASE_URL"}},
		&cli.StringFlag{Name: "advertise", Value: "127.0.0.1", Usage: "this host's IP address: every listener binds it unless its own flag says otherwise, and app ports are published on it (default: the one the data dir was last started with, else 127.0.0.1)"},
		&cli.StringFlag{Name: "access-log", Usage: "write the router's access log to this file (- is the router job's output, gantry -a gantry-router log; a file must be in the data dir; with --in-process, - is stdout)"},
		&cli.BoolFlag{Name: "in-process", Usage: "run every role in this one process instead of as containers (development and tests; allows --etcd and --database-url); a data dir keeps the mode it was made with"},
		&cli.BoolFlag{Name: "detach", Usage: "return once the platform is up and leave it running (gantryd down stops it); not with --in-process"},
	}, append(listenFlags(), append(controllerFlags(), routerLimitFlags()...)...)...)
}

// upConfig reads the flags of upFlags; closeAccessLog closes the access
// log that the in-process mode opens.
func upConfig(c *cli.Context, log *slog.Logger) (cfg up.Config, closeAccessLog func(), err error) {
	// As containers, the router's job opens the access log itself; in
	// process, this process does.
	containers := !c.Bool("in-process")
	var accessLog io.Writer
	accessLogPath := c.String("access-log")
	closeAccessLog = func() {}
	if !containers {
		w, closeLog, err := openAccessLog(accessLogPath)
		if err != nil {
			return cfg, nil, err
		}
		accessLog, accessLogPath, closeAccessLog = w, "", closeLog
	}
	advertise, err := node.Advertise(c.String("data"), c.String("advertise"), c.IsSet("advertise"))
	if err != nil {
		return cfg, nil, err
	}
	addrs := listenAddrs(advertise, containers, func(flag string) (string, bool) {
		return c.String(flag), c.IsSet(flag)
	})
	return up.Config{
		Containers:     containers,
		Detach:         c.Bool("detach"),
		PostgresAddr:   addrs["postgres-addr"],
		AccessLog:      accessLog,
		AccessLogPath:  accessLogPath,
		RouterLimits:   routerLimits(c),
		DataDir:        c.String("data"),
		APIAddr:        addrs["api-addr"],
		HTTPAddr:       addrs["http-addr"],
		HTTPSAddr:      addrs["https-addr"],
		SSHAddr:        addrs["ssh-addr"],
		HostAPIAddr:    addrs["host-api-addr"],
		LogAddr:        addrs["log-addr"],
		LogLines:       c.Int("log-lines"),
		EtcdClientAddr: addrs["etcd-client-addr"],
		EtcdPeerAddr:   addrs["etcd-peer-addr"],
		EtcdEndpoints:  splitList(c.String("etcd")),
		EtcdCAFile:     c.String("etcd-ca-file"),
		EtcdCertFile:   c.String("etcd-cert-file"),
		EtcdKeyFile:    c.String("etcd-key-file"),
		DatabaseURL:    c.String("database-url"),
		Domain:         c.String("domain"),
		AdvertiseAddr:  advertise,
		DeployTimeout:  c.Duration("deploy-timeout"),
		ACMEEmail:      c.String("acme-email"),
		ACMEDirectory:  c.String("acme-directory"),
		ACMECAFile:     c.String("acme-ca-file"),
		SlugsKept:      c.Int("slugs-kept"),
		GCInterval:     c.Duration("gc-interval"),
		Version:        version,
		Logger:         log,

		DiskWarningPercent: c.Int("disk-warning-percent"),
	}, closeAccessLog, nil
}

func downCommand() *cli.Command {
	return &cli.Command{
		Name:  "down",
		Usage: "stop the platform that gantryd up runs on a data dir; app containers keep running",
		Flags: []cli.Flag{dataFlag()},
		Action: func(c *cli.Context) error {
			log, err := logger(c)
			if err != nil {
				return err
			}
			return up.Down(c.Context, up.DownConfig{DataDir: c.String("data"), Logger: log})
		},
	}
}

func stackCommand() *cli.Command {
	return &cli.Command{
		Name:  "stack",
		Usage: "manage the base images",
		Subcommands: []*cli.Command{{
			Name:  "build",
			Usage: "build gantry/stack, gantry/builder, gantry/postgres and gantry/platform into the local Docker engine (does nothing when they exist)",
			Flags: []cli.Flag{
				&cli.BoolFlag{Name: "force", Usage: "rebuild even when the images exist"},
				&cli.StringFlag{Name: "version", Value: stack.DefaultVersion, Usage: "image tag"},
			},
			Action: func(c *cli.Context) error {
				log, err := logger(c)
				if err != nil {
					return err
				}
				dk, err := docker.NewClientWithOpts(docker.FromEnv, docker.WithAPIVersionNegotiation())
				if err != nil {
					return fmt.Errorf("docker client: %w", err)
				}
				defer dk.Close()
				if err := stack.Build(c.Context, stack.Config{
					Version:  c.String("version"),
					Force:    c.Bool("force"),
					Docker:   dk,
					Progress: os.Stdout,
					Logger:   log,
				}); err != nil {
					return err
				}
				_, err = stack.EnsurePlatformImage(c.Context, stack.PlatformConfig{
					Version:      version,
					StackVersion: c.String("version"),
					Docker:       dk,
					Progress:     os.Stdout,
					Logger:       log,
				})
				return err
			},
		}},
	}
}

func slugrunnerCommand() *cli.Command {
	return &cli.Command{
		Name:  "slugrunner",
		Usage: "in an app container: unpack the slug and run a process type",
		Subcommands: []*cli.Command{
			{
				Name:      "start",
				Usage:     "run a process type of the Procfile (or --command) as the container's main process",
				ArgsUsage: "TYPE",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "slug", EnvVars: []string{"SLUG_URL"}, Usage: "path or URL of the slug"},
					&cli.StringFlag{Name: "digest", EnvVars: []string{"SLUG_DIGEST"}, Usage: "sha256:<hex> the slug must have"},
					&cli.StringFlag{Name: "command", Usage: "run this command instead of a process type"},
				},
				Action: func(c *cli.Context) error {
					log, err := logger(c)
					if err != nil {
						return err
					}
					if c.NArg() > 1 || (c.NArg() == 0 && c.String("command") == "") {
						return fmt.Errorf("usage: gantryd slugrunner start TYPE (or --command CMD)")
					}
					// Start forwards SIGTERM and SIGINT to the process itself,
					// so it gets a context those signals do not cancel.
					code, err := slugrunner.Start(context.WithoutCancel(c.Context), slugrunner.Config{
						Slug:    c.String("slug"),
						Token:   os.Getenv("SLUG_TOKEN"),
						Digest:  c.String("digest"),
						Type:    c.Args().First(),
						Command: c.String("command"),
						Port:    os.Getenv("PORT"),
						Stdin:   os.Stdin,
						Logger:  log,
					})
					if err != nil {
						return err
					}
					os.Exit(code)
					return nil
				},
			},
			{
				Name:  "static",
				Usage: "serve the app's static site on $PORT",
				Action: func(c *cli.Context) error {
					log, err := logger(c)
					if err != nil {
						return err
					}
					return slugrunner.ServeStatic(c.Context, slugrunner.StaticConfig{Logger: log})
				},
			},
		},
	}
}

func gitreceiverCommand() *cli.Command {
	return &cli.Command{
		Name:  "gitreceiver",
		Usage: "the git-over-SSH server that builds pushes (part of `gantryd up`)",
		Subcommands: []*cli.Command{gitreceiverServeCommand(), {
			Name:   "hook",
			Usage:  "the proc-receive hook git runs inside a push (not for direct use)",
			Hidden: true,
			Action: func(c *cli.Context) error {
				os.Exit(gitreceiver.RunHook(c.Context, os.Stdin, os.Stdout, os.Stderr, os.Environ()))
				return nil
			},
		}},
	}
}
