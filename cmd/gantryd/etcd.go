package main

import (
	"time"

	"github.com/urfave/cli/v2"

	"github.com/gantryhq/gantry/deploy/etcdserver"
)

// etcdWaitForPeers bounds the wait of the etcd role for its peers: after
// a reboot of the whole cluster, a member is ready only once a quorum
// runs, which the other hosts' starts decide.
const etcdWaitForPeers = 24 * time.Hour

// etcdCommand runs the node's etcd member on its own: `gantryd up` runs
// the same embedded etcd in its process.
func etcdCommand() *cli.Command {
	return &cli.Command{
		Name:  "etcd",
		Usage: "run the node's etcd member, data under <data>/etcd, mutual TLS with the certificates of <data>/tls (part of `gantryd up`)",
		Flags: []cli.Flag{
			dataFlag(),
			&cli.StringFlag{Name: "client-addr", Value: "127.0.0.1:7379", Usage: "client listen address"},
			&cli.StringFlag{Name: "peer-addr", Value: "127.0.0.1:7380", Usage: "peer listen address"},
		},
		Action: func(c *cli.Context) error {
			log, n, err := role(c, "etcd")
			if err != nil {
				return err
			}
			if err := n.EnsureTLS(c.Context, c.String("client-addr"), c.String("peer-addr")); err != nil {
				return err
			}
			cfg, err := n.Etcd(etcdserver.Config{
				ClientAddr: c.String("client-addr"),
				PeerAddr:   c.String("peer-addr"),
				// A member of several waits for the others after a
				// reboot of the cluster: as long as it takes.
				StartTimeout: etcdWaitForPeers,
				Logger:       log,
			})
			if err != nil {
				return err
			}
			return etcdserver.Run(c.Context, cfg)
		},
	}
}
