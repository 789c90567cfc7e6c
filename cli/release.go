package cli

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/gantryhq/gantry/layer1/controller/types"
	urfave "github.com/urfave/cli/v2"
)

func (r *runner) releaseCommand() *urfave.Command {
	return &urfave.Command{
		Name:  "release",
		Usage: "create, list and show releases",
		Subcommands: []*urfave.Command{
			{
				Name:  "create",
				Usage: "create a release of a Docker image present on the hosts and deploy it",
				Description: "The release takes the app's current config vars. Each --process gives a\n" +
					"process type and its command, split into arguments with shell quoting rules\n" +
					"and run without a shell; $PORT is set in its environment. It follows the\n" +
					"deployment until it ends (see gantry deploy). Example:\n\n" +
					"   gantry release create --image demo:v2 --process web='/server -port $PORT' --health web=/healthz",
				Flags: []urfave.Flag{
					clusterFlag(), appFlag(),
					&urfave.StringFlag{Name: "image", Usage: "the Docker `IMAGE` to run, e.g. demo:v2"},
					&urfave.StringSliceFlag{Name: "process", Usage: "a process type and its command, `TYPE=COMMAND` (repeat for each type)", KeepSpace: true},
					&urfave.StringSliceFlag{Name: "health", Usage: "the HTTP health check path of a process type, `TYPE=/PATH` (repeatable)", KeepSpace: true},
					&urfave.StringFlag{Name: "description", Usage: "what the release is, `TEXT` (default: image IMAGE)"},
					noWaitFlag(),
				},
				Action: r.releaseCreate,
			},
			r.releaseListCommand(),
			r.releaseShowCommand(),
		},
	}
}

func (r *runner) releaseCreate(c *urfave.Context) error {
	if err := checkArgs(c, 0, 0); err != nil {
		return err
	}
	req, err := releaseRequest(c.String("image"), c.StringSlice("process"), c.StringSlice("health"), c.String("description"))
	if err != nil {
		return usagef(c, "%v", err)
	}
	app, err := r.app(c)
	if err != nil {
		return err
	}
	cl, err := r.client(c)
	if err != nil {
		return err
	}
	rel, deployment, err := cl.CreateReleaseDeployment(c.Context, app, req)
	if err != nil {
		return err
	}
	fmt.Fprintf(r.stdout, "Created release v%d of %s (%s)\n", rel.Version, app, strings.Join(slices.Sorted(maps.Keys(rel.Processes)), ", "))
	return r.followMade(c, cl, app, deployment, rel.Version)
}

// releaseRequest builds the body of a release from the values of --image,
// --process, --health and --description.
func releaseRequest(image string, processes, health []string, description string) (types.ReleaseRequest, error) {
	req := types.ReleaseRequest{
		Image:       strings.TrimSpace(image),
		Processes:   make(map[string]types.Process, len(processes)),
		Description: description,
	}
	if req.Image == "" {
		return req, fmt.Errorf("name the Docker image to run: --image IMAGE")
	}
	if len(processes) == 0 {
		return req, fmt.Errorf("name at least one process: --process web='COMMAND'")
	}
	for _, arg := range processes {
		typ, cmd, err := parseCommand(arg)
		if err != nil {
			return req, fmt.Errorf("--process: %w", err)
		}
		if _, dup := req.Processes[typ]; dup {
			return req, fmt.Errorf("--process: invalid argument %q: %s is named twice", arg, typ)
		}
		req.Processes[typ] = types.Process{Command: cmd}
	}
	seen := map[string]bool{}
	for _, arg := range health {
		typ, path, err := parseHealthPath(arg)
		if err != nil {
			return req, fmt.Errorf("--health: %w", err)
		}
		p, ok := req.Processes[typ]
		if !ok {
			return req, fmt.Errorf("--health: invalid argument %q: no --process names %s", arg, typ)
		}
		if seen[typ] {
			return req, fmt.Errorf("--health: invalid argument %q: %s is named twice", arg, typ)
		}
		seen[typ] = true
		p.HealthPath = path
		req.Processes[typ] = p
	}
	return req, nil
}
