package main

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/gantryhq/gantry/deploy/cluster"
	"github.com/gantryhq/gantry/deploy/node"
	"github.com/gantryhq/gantry/deploy/up"
	"github.com/gantryhq/gantry/layer0/clustertls"
	"github.com/gantryhq/gantry/layer0/keyspace"
)

// joinTokenCommand is `gantryd join-token`: a token that lets one more
// host join this host's cluster, and the command to run there.
func joinTokenCommand() *cli.Command {
	return &cli.Command{
		Name:  "join-token",
		Usage: "print a short-lived token that lets a new host join this host's cluster, and the command to run on it",
		Flags: []cli.Flag{
			dataFlag(),
			&cli.DurationFlag{Name: "ttl", Value: cluster.DefaultTokenTTL, Usage: "how long the token lets hosts join (at most a week)"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print the token alone"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return fmt.Errorf("join-token takes no arguments, got %q", c.Args().Slice())
			}
			n, err := node.Open(c.Context, c.String("data"))
			if err != nil {
				return err
			}
			endpoints, err := n.EtcdEndpoints()
			if err != nil {
				return err
			}
			if len(endpoints) == 0 {
				return fmt.Errorf("data dir %s has no running cluster: start it with gantryd up --data %s first", n.Dir, n.Dir)
			}
			api, err := apiAddr(n)
			if err != nil {
				return err
			}
			fp, err := clustertls.Fingerprint(n.Path(node.TLSDir))
			if err != nil {
				return err
			}
			etcd, err := n.EtcdClient(node.EtcdClientConfig{Endpoints: endpoints})
			if err != nil {
				return err
			}
			defer etcd.Close()
			tok, expires, err := cluster.CreateToken(c.Context, etcd, keyspace.MustNew(n.Cluster), fp, c.Duration("ttl"))
			if err != nil {
				return fmt.Errorf("%w (is the platform up? gantryd up --data %s)", err, n.Dir)
			}
			if c.Bool("quiet") {
				fmt.Println(tok)
				return nil
			}
			fmt.Printf("Join token, valid until %s:\n  %s\n\n", expires.Local().Format(time.RFC3339), tok)
			fmt.Printf("On the new host, with its own address and data dir, run:\n  gantryd join %s --token %s --advertise <ITS IP> --data <ITS DATA DIR>\n", api, tok)
			return nil
		},
	}
}

// apiAddr is the host:port of the API of node n, from its admin.env.
func apiAddr(n *node.Node) (string, error) {
	v, _, err := node.ReadAdminEnv(n.Dir)
	if err != nil {
		return "", fmt.Errorf("the API's address: %w (is the platform up? gantryd up --data %s)", err, n.Dir)
	}
	u, err := url.Parse(v)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("%s: GANTRY_URL %q is not a URL", n.Path(node.AdminEnvFile), v)
	}
	return u.Host, nil
}

// joinCommand is `gantryd join`: this host joins the cluster of the host
// whose API is at ADDR:PORT, then starts as gantryd up does.
func joinCommand() *cli.Command {
	return &cli.Command{
		Name:      "join",
		Usage:     "add this host to a cluster (with a token from gantryd join-token on one of its hosts), then start it as gantryd up does",
		ArgsUsage: "ADDR:PORT (a cluster host's API)",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "token", Required: true, Usage: "the join `TOKEN` that gantryd join-token printed"},
		}, upFlags()...),
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return errors.New("join takes one argument: the ADDR:PORT of a cluster host's API, as gantryd join-token prints it")
			}
			if c.Bool("in-process") {
				return errors.New("a cluster runs the platform as containers: --in-process cannot join one")
			}
			if !c.IsSet("advertise") {
				return errors.New("--advertise is required: the IP address the other hosts reach this one at")
			}
			log, err := logger(c)
			if err != nil {
				return err
			}
			if err := cluster.Join(c.Context, cluster.JoinConfig{
				Addr: c.Args().First(), Token: c.String("token"), Advertise: c.String("advertise"), DataDir: c.String("data"), Logger: log,
			}); err != nil {
				return err
			}
			cfg, closeAccessLog, err := upConfig(c, log)
			if err != nil {
				return err
			}
			defer closeAccessLog()
			cfg.Joining = true
			return up.Run(c.Context, cfg)
		},
	}
}

// joinArgs moves the address in `gantryd join ADDR:PORT --token ...` after
// the flags: the command line parser stops at the first argument, and the
// address comes first, as in the command gantryd join-token prints.
func joinArgs(args []string) []string {
	i := slices.Index(args, "join")
	if i < 1 || i+1 >= len(args) || strings.HasPrefix(args[i+1], "-") || slices.ContainsFunc(args[1:i], func(a string) bool { return !strings.HasPrefix(a, "-") }) {
		return args
	}
	out := slices.Concat(args[:i+1], args[i+2:], []string{args[i+1]})
	return out
}
