package main

import (
	"fmt"

	docker "github.com/docker/docker/client"
	"github.com/urfave/cli/v2"

	"github.com/gantryhq/gantry/layer0/host"
)

// hostCommand runs the host agent on its own: `gantryd up` runs the same
// agent in its process.
func hostCommand() *cli.Command {
	return &cli.Command{
		Name:  "host",
		Usage: "run the host agent: the jobs the scheduler assigns to this host, on the local Docker Engine (part of `gantryd up`)",
		Flags: append([]cli.Flag{
			dataFlag(),
			&cli.StringFlag{Name: "addr", Value: "127.0.0.1:7071", Usage: "agent API listen address"},
			&cli.StringFlag{Name: "advertise", Value: host.DefaultAdvertiseAddr, Usage: "IP address app ports are published on"},
			logURLFlag("ship the jobs' output and crash events there"),
			&cli.StringFlag{Name: "gantryd", Usage: "the gantryd `FILE` mounted into slug containers, a path on the host (default: this executable)"},
		}, etcdFlags()...),
		Action: func(c *cli.Context) error {
			log, n, etcd, err := etcdRole(c, "host")
			if err != nil {
				return err
			}
			defer etcd.Close()
			dk, err := docker.NewClientWithOpts(docker.FromEnv, docker.WithAPIVersionNegotiation())
			if err != nil {
				return fmt.Errorf("docker client: %w", err)
			}
			defer dk.Close()
			cfg := n.Host(host.Config{
				Etcd:          etcd,
				Docker:        dk,
				AdvertiseAddr: c.String("advertise"),
				APIAddr:       c.String("addr"),
				GantrydPath:   c.String("gantryd"),
				LogURL:        c.String("log-url"),
				SystemVars: map[string]string{
					host.SystemVarData: n.Dir,
					host.SystemVarAddr: c.String("advertise"),
					host.SystemVarEtcd: c.String("etcd"),
				},
				Version: version,
				Logger:  log,
			})
			shipper, closeShipper, err := logShipper(c, n, "host", log)
			if err != nil {
				return err
			}
			defer closeShipper()
			if shipper != nil {
				cfg.Logs = shipper
			}
			return host.Run(c.Context, cfg)
		},
	}
}
