package cli

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/gantryhq/gantry/layer1/controller/client"
	urfave "github.com/urfave/cli/v2"
)

// serverVersionTimeout bounds the /v1/info call of `gantry version`.
const serverVersionTimeout = 5 * time.Second

func (r *runner) versionCommand() *urfave.Command {
	return &urfave.Command{
		Name:   "version",
		Usage:  "print the client version and, when a cluster answers, the server version",
		Flags:  []urfave.Flag{clusterFlag()},
		Action: r.version,
	}
}

func (r *runner) version(c *urfave.Context) error {
	if err := checkArgs(c, 0, 0); err != nil {
		return err
	}
	fmt.Fprintf(r.stdout, "Client: %s (%s %s/%s)\n", clientVersion(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	t, err := resolveTarget(flagString(c, "cluster"), r.getenv, r.loadConfig)
	if errors.Is(err, ErrNoCluster) {
		return nil
	}
	if err != nil {
		fmt.Fprintf(r.stdout, "Server: unknown (%v)\n", err)
		return nil
	}
	r.target = &t
	ctx, cancel := context.WithTimeout(c.Context, serverVersionTimeout)
	defer cancel()
	info, err := client.New(t.URL, t.Token).Info(ctx)
	if err != nil {
		msg, _, _ := strings.Cut(r.describe(err), "\n")
		fmt.Fprintf(r.stdout, "Server: unknown (%s)\n", msg)
		return nil
	}
	fmt.Fprintf(r.stdout, "Server: %s (%s)\n", info.Version, t.URL)
	return nil
}
