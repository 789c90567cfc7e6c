package main

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/gantryhq/gantry/deploy/cluster"
	"github.com/gantryhq/gantry/deploy/node"
	"github.com/gantryhq/gantry/deploy/stack"
	"github.com/gantryhq/gantry/layer0/clustertls"
	"github.com/gantryhq/gantry/layer1/acme"
	"github.com/gantryhq/gantry/layer1/controller"
)

// controllerFlags are the controller's settings, flags of both `gantryd up`
// and `gantryd controller`.
func controllerFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "domain", Value: "localhost", Usage: "apps are served at <app>.<domain>"},
		&cli.StringFlag{Name: "acme-email", Usage: "obtain certificates with ACME for the custom domains added without --cert; this `EMAIL` is the account contact", EnvVars: []string{"GANTRY_ACME_EMAIL"}},
		&cli.StringFlag{Name: "acme-directory", Value: acme.LetsEncrypt, Usage: "ACME directory `URL`"},
		&cli.StringFlag{Name: "acme-ca-file", Usage: "PEM CA bundle `FILE` trusted to reach a private ACME server"},
		&cli.IntFlag{Name: "slugs-kept", Value: 10, Usage: "how many of each app's newest releases keep their slugs and can be rolled back to"},
		&cli.DurationFlag{Name: "gc-interval", Value: time.Hour, Usage: "period of the garbage collection (gantry gc runs one now)"},
		&cli.IntFlag{Name: "disk-warning-percent", Value: controller.DefaultDiskWarningPercent, Usage: "warn in the controller's log and in gantry log -a gantry-controller when a host's data disk passes this `PERCENT` in use"},
		&cli.DurationFlag{Name: "deploy-timeout", Value: 120 * time.Second, Usage: "how long a deploy waits for the new release's jobs to be up before it fails and the old release keeps serving"},
	}
}

// acmeConfig returns the ACME settings of the flags of controllerFlags,
// nil when --acme-email is empty.
func acmeConfig(c *cli.Context) *controller.ACMEConfig {
	if c.String("acme-email") == "" {
		return nil
	}
	return &controller.ACMEConfig{Email: c.String("acme-email"), Directory: c.String("acme-directory"), CAFile: c.String("acme-ca-file")}
}

// controllerCommand runs the controller on its own: `gantryd up` runs the
// same controller in its process.
func controllerCommand() *cli.Command {
	return &cli.Command{
		Name:  "controller",
		Usage: "run the controller: the API, state in PostgreSQL, builds and deploys (part of `gantryd up`)",
		Flags: append([]cli.Flag{
			dataFlag(),
			&cli.StringFlag{Name: "database-url", Usage: "PostgreSQL connection string (this or --database-url-file is required)", EnvVars: []string{"GANTRY_DATABASE_URL"}},
			&cli.StringFlag{Name: "database-url-file", Usage: "read the PostgreSQL connection string from `FILE` (as gantryd up writes it, mode 0600)"},
			&cli.StringFlag{Name: "addr", Value: "127.0.0.1:7070", Usage: "API listen address"},
			&cli.StringFlag{Name: "internal-url", Usage: "`URL` at which the host agents reach this controller for blobs (default: http:// and --addr)"},
			&cli.StringFlag{Name: "git-url", Value: "ssh://git@127.0.0.1:2222", Usage: "base SSH `URL` of the git receiver: apps are pushed to <URL>/<app>.git"},
			&cli.StringFlag{Name: "router-http-url", Value: "http://localhost:8080", Usage: "the routers' public HTTP `URL`, for the apps' web URLs"},
			&cli.StringFlag{Name: "router-https-url", Value: "https://localhost:8443", Usage: "the routers' public HTTPS `URL`"},
			logURLFlag("ship the apps' platform events there and query their logs"),
			reusePortFlag(),
		}, slices.Concat(etcdFlags(), controllerFlags())...),
		Action: func(c *cli.Context) error {
			dbURL := c.String("database-url")
			if f := c.String("database-url-file"); f != "" && dbURL == "" {
				b, err := os.ReadFile(f)
				if err != nil {
					return fmt.Errorf("--database-url-file: %w", err)
				}
				dbURL = strings.TrimSpace(string(b))
			}
			if dbURL == "" {
				return errors.New("--database-url (or GANTRY_DATABASE_URL, or --database-url-file) is required")
			}
			log, n, etcd, err := etcdRole(c, "controller")
			if err != nil {
				return err
			}
			defer etcd.Close()
			// The CLI's admin.env in the data dir, with a token of this
			// database, as gantryd up writes it.
			if err := n.EnsureAdminEnv(c.Context, dbURL, node.APIURL(c.String("addr"))); err != nil {
				return err
			}
			cfg := n.Controller(controller.Config{
				DatabaseURL:   dbURL,
				Addr:          c.String("addr"),
				Etcd:          etcd,
				LogURL:        c.String("log-url"),
				Domain:        c.String("domain"),
				GitURL:        c.String("git-url"),
				RouterHTTP:    c.String("router-http-url"),
				RouterHTTPS:   c.String("router-https-url"),
				InternalURL:   c.String("internal-url"),
				BuilderImage:  stack.BuilderRef(stack.DefaultVersion),
				StackImage:    stack.StackRef(stack.DefaultVersion),
				BuildEnv:      node.BuildEnv(c.Context, log),
				DeployTimeout: c.Duration("deploy-timeout"),
				SlugsKept:     c.Int("slugs-kept"),
				GCInterval:    c.Duration("gc-interval"),
				ACME:          acmeConfig(c),
				Version:       version,
				Logger:        log,

				DiskWarningPercent: c.Int("disk-warning-percent"),
			})
			shipper, closeShipper, err := logShipper(c, n, "controller", log)
			if err != nil {
				return err
			}
			defer closeShipper()
			if shipper != nil {
				cfg.Events = shipper
			}
			// Hosts join the cluster over TLS on the API's port, with
			// the host's certificate of the cluster CA.
			if err := n.EnsureTLS(c.Context, c.String("addr")); err != nil {
				return err
			}
			if cfg.TLS, err = clustertls.ServerConfig(n.Path(node.TLSDir)); err != nil {
				return err
			}
			cfg.Join = cluster.Handler(n, etcd, log)
			sig, err := readySignal(log)
			if err != nil {
				return err
			}
			defer sig.Close()
			cfg.ReusePort, cfg.Ready = c.Bool("reuse-port"), sig.Ready
			return controller.Run(c.Context, cfg)
		},
	}
}
