package main

import (
	"github.com/urfave/cli/v2"

	"github.com/gantryhq/gantry/layer0/scheduler"
)

// schedulerCommand runs a scheduler candidate on its own: `gantryd up`
// runs the same scheduler in its process. Of the candidates of a cluster,
// the elected leader places the jobs.
func schedulerCommand() *cli.Command {
	return &cli.Command{
		Name:  "scheduler",
		Usage: "run a scheduler candidate: the elected leader places the formations' jobs on hosts (part of `gantryd up`)",
		Flags: append([]cli.Flag{
			dataFlag(),
			&cli.StringFlag{Name: "id", Usage: "the candidate's name in the election (default: the host ID)"},
		}, etcdFlags()...),
		Action: func(c *cli.Context) error {
			log, n, etcd, err := etcdRole(c, "scheduler")
			if err != nil {
				return err
			}
			defer etcd.Close()
			return scheduler.Run(c.Context, n.Scheduler(scheduler.Config{
				Etcd:   etcd,
				ID:     c.String("id"),
				Logger: log,
			}))
		},
	}
}
