package main

import (
	"time"

	"github.com/urfave/cli/v2"

	"github.com/gantryhq/gantry/gitreceiver"
	"github.com/gantryhq/gantry/gitreceiver/backend"
	"github.com/gantryhq/gantry/layer1/controller/client"
)

// gitreceiverServeCommand runs the git receiver on its own, for clusters:
// `gantryd up` runs the same server in its process.
func gitreceiverServeCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "serve git push over SSH: keys, apps and builds through the controller",
		Flags: []cli.Flag{
			dataFlag(),
			&cli.StringFlag{Name: "addr", Value: "127.0.0.1:2222", Usage: "SSH listen address"},
			&cli.StringFlag{Name: "controller", Value: "http://127.0.0.1:7070", Usage: "controller API URL", EnvVars: []string{"GANTRY_CONTROLLER_URL"}},
			&cli.DurationFlag{Name: "handshake-timeout", Value: 30 * time.Second, Usage: "time a connection has to authenticate and open a session"},
			&cli.DurationFlag{Name: "idle-timeout", Value: 10 * time.Minute, Usage: "an authenticated connection without traffic for this long is closed"},
			&cli.IntFlag{Name: "max-unauthenticated", Value: 64, Usage: "connections not yet authenticated, at most, in total"},
			&cli.IntFlag{Name: "max-unauthenticated-per-source", Value: 8, Usage: "connections not yet authenticated, at most, from one IP address"},
			reusePortFlag(),
		},
		Action: func(c *cli.Context) error {
			log, n, err := role(c, "gitreceiver")
			if err != nil {
				return err
			}
			// The host key and the repositories are under <data>/git;
			// the controller is asked with the host token.
			b := backend.New(client.New(c.String("controller"), n.HostToken))
			sig, err := readySignal(log)
			if err != nil {
				return err
			}
			defer sig.Close()
			return gitreceiver.Run(c.Context, n.GitReceiver(gitreceiver.Config{
				Addr:    c.String("addr"),
				Keys:    b,
				Apps:    b,
				Builder: b,
				Logger:  log,

				HandshakeTimeout:            c.Duration("handshake-timeout"),
				IdleTimeout:                 c.Duration("idle-timeout"),
				MaxUnauthenticated:          c.Int("max-unauthenticated"),
				MaxUnauthenticatedPerSource: c.Int("max-unauthenticated-per-source"),
				ReusePort:                   c.Bool("reuse-port"),
				Ready:                       sig.Ready,
			}))
		},
	}
}
