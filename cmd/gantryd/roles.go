package main

import (
	"fmt"
	"log/slog"

	"github.com/urfave/cli/v2"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantryhq/gantry/deploy/node"
	"github.com/gantryhq/gantry/layer0/readiness"
	logclient "github.com/gantryhq/gantry/layer1/logaggregator/client"
)

// The flags and helpers shared by the role commands (`gantryd host`,
// `controller`, `scheduler`, `router`, `gitreceiver serve`,
// `logaggregator`, `etcd`). Each role takes its identity (cluster ID, host
// ID, host token, secrets key) from the data dir that --data names, the
// same files `gantryd up` uses (see deploy/node), and finds the other roles
// over the network: etcd (--etcd) and HTTP URLs.

// dataFlag is --data: the node's data dir.
func dataFlag() cli.Flag {
	return &cli.StringFlag{Name: "data", Value: defaultDataDir(), EnvVars: []string{"GANTRY_DATA"},
		Usage: "the node's data `DIR`, as gantryd up lays it out: the identity (cluster-id, host-id, host-token, secrets.key) is read from it, and made when missing"}
}

// etcdFlags are --etcd, the etcd cluster's client URLs, and the client
// certificate for an etcd cluster of one's own.
func etcdFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "etcd", Value: "https://127.0.0.1:7379", EnvVars: []string{"GANTRY_ETCD"},
			Usage: "comma-separated client URLs of the etcd cluster; https URLs use the node's cluster certificates (<data>/tls) unless --etcd-cert-file is given"},
		&cli.StringFlag{Name: "etcd-ca-file", Usage: "CA bundle `FILE` of an external etcd cluster"},
		&cli.StringFlag{Name: "etcd-cert-file", Usage: "client certificate `FILE` for an external etcd cluster"},
		&cli.StringFlag{Name: "etcd-key-file", Usage: "client key `FILE` for an external etcd cluster"},
	}
}

// logURLFlag is --log-url: the log aggregator's URL, where the role ships
// what it adds to the apps' logs.
func logURLFlag(what string) cli.Flag {
	return &cli.StringFlag{Name: "log-url", EnvVars: []string{"GANTRY_LOG_URL"},
		Usage: "log aggregator `URL` (e.g. http://127.0.0.1:7072): " + what + " (empty: none)"}
}

// role is where a role command starts: its logger, tagged with the
// component's name, and the node of --data.
func role(c *cli.Context, component string) (*slog.Logger, *node.Node, error) {
	log, err := logger(c)
	if err != nil {
		return nil, nil, err
	}
	n, err := node.Open(c.Context, c.String("data"))
	if err != nil {
		return nil, nil, err
	}
	return log.With("component", component), n, nil
}

// etcdRole is role plus a client of the etcd cluster of --etcd, which the
// caller closes.
func etcdRole(c *cli.Context, component string) (*slog.Logger, *node.Node, *clientv3.Client, error) {
	log, n, err := role(c, component)
	if err != nil {
		return nil, nil, nil, err
	}
	etcd, err := n.EtcdClient(etcdClientConfig(c))
	if err != nil {
		return nil, nil, nil, err
	}
	return log, n, etcd, nil
}

// etcdClientConfig reads the --etcd flags.
func etcdClientConfig(c *cli.Context) node.EtcdClientConfig {
	return node.EtcdClientConfig{
		Endpoints: splitList(c.String("etcd")),
		CAFile:    c.String("etcd-ca-file"),
		CertFile:  c.String("etcd-cert-file"),
		KeyFile:   c.String("etcd-key-file"),
	}
}

// logShipper starts the Shipper of --log-url for component, or returns nil
// when --log-url is empty; close ships what it holds and stops it.
func logShipper(c *cli.Context, n *node.Node, component string, log *slog.Logger) (s *logclient.Shipper, close func(), err error) {
	url := c.String("log-url")
	if url == "" {
		return nil, func() {}, nil
	}
	s, err = n.Shipper(url, component, log)
	if err != nil {
		return nil, nil, err
	}
	return s, func() {
		if err := s.Close(); err != nil {
			log.Warn("log lines lost at shutdown", "err", err)
		}
	}, nil
}

// reusePortFlag is --reuse-port, of the roles that listen on a fixed port.
func reusePortFlag() cli.Flag {
	return &cli.BoolFlag{Name: "reuse-port",
		Usage: "bind the listen address with SO_REUSEPORT, so that a new process of this role can listen on it while this one still runs (a deployment of the platform's own jobs)"}
}

// readySignal serves the role's readiness on the socket its job was given
// (readiness.EnvSocket), when it was given one; the caller closes it.
func readySignal(log *slog.Logger) (*readiness.Signal, error) {
	sig, err := readiness.FromEnv(log)
	if err != nil {
		return nil, fmt.Errorf("readiness: %w", err)
	}
	return sig, nil
}
