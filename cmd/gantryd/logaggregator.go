package main

import (
	"errors"
	"path/filepath"

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
			&cli.StringFlag{Name: "addr", Value: "127.0.0.1:7072", Usage: "listen address"},
			&cli.StringFlag{Name: "data", Value: filepath.Join(defaultDataDir(), "logs"), Usage: "directory of the apps' log files"},
			&cli.StringFlag{Name: "token", Usage: "the platform's host token", EnvVars: []string{"GANTRY_HOST_TOKEN"}},
			&cli.IntFlag{Name: "lines", Value: logaggregator.DefaultLines, Usage: "lines of history kept per app"},
		},
		Action: func(c *cli.Context) error {
			log, err := logger(c)
			if err != nil {
				return err
			}
			if c.String("token") == "" {
				return errors.New("--token (or GANTRY_HOST_TOKEN) is required: the platform's host token")
			}
			return logaggregator.Run(c.Context, logaggregator.Config{
				Addr:    c.String("addr"),
				DataDir: c.String("data"),
				Token:   c.String("token"),
				Lines:   c.Int("lines"),
				Logger:  log.With("component", "logaggregator"),
			})
		},
	}
}
