package main

import (
	"github.com/urfave/cli/v2"

	"github.com/gantryhq/gantry/layer1/logaggregator"
)

// logaggregatorCommand runs the log aggregator on its own, for clusters:
// `gantryd up` runs the same server in its process.
func logaggregatorCommand() *cli.Command {
	return &cli.Command{
		Name:  "logaggregator",
		Usage: "keep the apps' logs that hosts, the router and the controller ship (part of `gantryd up`)",
		Flags: []cli.Flag{
			dataFlag(),
			&cli.StringFlag{Name: "addr", Value: "127.0.0.1:7072", Usage: "listen address"},
			&cli.IntFlag{Name: "lines", Value: logaggregator.DefaultLines, Usage: "lines of history kept per app"},
			reusePortFlag(),
		},
		Action: func(c *cli.Context) error {
			log, n, err := role(c, "logaggregator")
			if err != nil {
				return err
			}
			// The apps' log files are under <data>/logs; the roles ship
			// with the host token.
			sig, err := readySignal(log)
			if err != nil {
				return err
			}
			defer sig.Close()
			return logaggregator.Run(c.Context, n.LogAggregator(logaggregator.Config{
				Addr:      c.String("addr"),
				Lines:     c.Int("lines"),
				Logger:    log,
				ReusePort: c.Bool("reuse-port"),
				Ready:     sig.Ready,
			}))
		},
	}
}
