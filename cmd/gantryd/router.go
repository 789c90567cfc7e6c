package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/gantryhq/gantry/router"
)

// routerLimitFlags are the router's client timeouts and connection cap,
// flags of both `gantryd up` and `gantryd router`.
func routerLimitFlags() []cli.Flag {
	return []cli.Flag{
		&cli.DurationFlag{Name: "client-body-timeout", Value: 60 * time.Second, Usage: "router: close a client connection that sends nothing of its request body for this long (renewed as bytes arrive)"},
		&cli.DurationFlag{Name: "send-timeout", Value: 60 * time.Second, Usage: "router: close a client connection that takes nothing of its response for this long (renewed as bytes leave)"},
		&cli.DurationFlag{Name: "tunnel-idle-timeout", Value: time.Hour, Usage: "router: close an upgraded (WebSocket) connection when no byte went either way for this long"},
		&cli.IntFlag{Name: "max-conns", Value: router.DefaultMaxConns, Usage: "router: client connections open at once, HTTP and HTTPS together; beyond it HTTP gets a 503 and HTTPS a close"},
	}
}

// routerLimits returns the values of the flags of routerLimitFlags.
func routerLimits(c *cli.Context) router.Limits {
	return router.Limits{
		ClientBodyTimeout: c.Duration("client-body-timeout"),
		SendTimeout:       c.Duration("send-timeout"),
		TunnelIdleTimeout: c.Duration("tunnel-idle-timeout"),
		MaxConns:          c.Int("max-conns"),
	}
}

// openAccessLog opens the --access-log file ("-" for stdout, "" for
// none); close closes what it opened.
func openAccessLog(path string) (w io.Writer, close func(), err error) {
	switch path {
	case "":
		return nil, func() {}, nil
	case "-":
		return os.Stdout, func() {}, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("--access-log: %w", err)
	}
	return f, func() { f.Close() }, nil
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// handoverSocket is the default handover socket of `gantryd router`, in the
// data dir (router.Config.HandoverSocket).
const handoverSocket = "router/handover.sock"

// routerCommand runs the router on its own: `gantryd up` runs the same
// router in its process.
func routerCommand() *cli.Command {
	return &cli.Command{
		Name:  "router",
		Usage: "route HTTP and HTTPS requests to the apps' instances (part of `gantryd up`)",
		Flags: append([]cli.Flag{
			dataFlag(),
			&cli.StringFlag{Name: "http-addr", Value: "127.0.0.1:8080", Usage: "HTTP listen address"},
			&cli.StringFlag{Name: "https-addr", Value: "127.0.0.1:8443", Usage: "HTTPS listen address (empty: none)"},
			&cli.StringFlag{Name: "access-log", Usage: "write the access log to this file (- for stdout)"},
			logURLFlag("add each request's line to its app's log"),
			&cli.StringFlag{Name: "metrics-addr", Usage: "serve the apps' request metrics (GET /metrics, with the host token) here and register it in discovery (empty: none)"},
			&cli.StringFlag{Name: "id", Usage: "the router's name in discovery (default: the host ID)"},
			&cli.StringFlag{Name: "handover-socket", Usage: "take the listening sockets of the router answering on this Unix socket, and offer them there in turn, so that a restart fails no request (default: <data>/" + handoverSocket + "; off: none)"},
			&cli.BoolFlag{Name: "stay-after-handover", Usage: "once the listeners are handed over and the requests drained, wait for SIGTERM instead of exiting (a platform job, which must not look crashed)"},
		}, slices.Concat(etcdFlags(), routerLimitFlags())...),
		Action: func(c *cli.Context) error {
			log, n, etcd, err := etcdRole(c, "router")
			if err != nil {
				return err
			}
			defer etcd.Close()
			accessLog, closeAccessLog, err := openAccessLog(c.String("access-log"))
			if err != nil {
				return err
			}
			defer closeAccessLog()
			// The data dir's secrets.key opens the routes' sealed private
			// keys; the host token guards the metrics.
			cfg := n.Router(router.Config{
				Etcd:        etcd,
				HTTPAddr:    c.String("http-addr"),
				HTTPSAddr:   c.String("https-addr"),
				AccessLog:   accessLog,
				Logger:      log,
				Limits:      routerLimits(c),
				ID:          c.String("id"),
				MetricsAddr: c.String("metrics-addr"),
			})
			switch v := c.String("handover-socket"); v {
			case "":
				cfg.HandoverSocket = n.Path(handoverSocket)
			case "off":
			default:
				if cfg.HandoverSocket, err = filepath.Abs(v); err != nil {
					return fmt.Errorf("--handover-socket: %w", err)
				}
			}
			shipper, closeShipper, err := logShipper(c, n, "router", log)
			if err != nil {
				return err
			}
			defer closeShipper()
			if shipper != nil {
				cfg.AppLog = shipper
			}
			sig, err := readySignal(log)
			if err != nil {
				return err
			}
			defer sig.Close()
			cfg.StayAfterHandover, cfg.Ready = c.Bool("stay-after-handover"), sig.Ready
			return router.Run(c.Context, cfg)
		},
	}
}
