package cli

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/gantryhq/gantry/layer1/controller/types"
	urfave "github.com/urfave/cli/v2"
)

// releasesDescription explains the release list; gantry releases and gantry
// release list share it.
const releasesDescription = "Lists the app's releases, newest first: the version, how long ago it was\n" +
	"made, and what made it (a push, env set, a rollback, release create).\n" +
	"The current release, the one serving, is marked with *. Only the newest\n" +
	"releases (10 by default) keep their slug; an older release built from source\n" +
	"says \"slug deleted: cannot roll back\"."

func (r *runner) releasesCommand() *urfave.Command {
	return &urfave.Command{
		Name:        "releases",
		Usage:       "list an app's releases",
		Description: releasesDescription,
		Flags:       []urfave.Flag{clusterFlag(), appFlag(), jsonFlag()},
		Action:      r.releases,
	}
}

// releaseListCommand is gantry release list, the same as gantry releases.
func (r *runner) releaseListCommand() *urfave.Command {
	cmd := r.releasesCommand()
	cmd.Name = "list"
	return cmd
}

func (r *runner) releaseShowCommand() *urfave.Command {
	return &urfave.Command{
		Name:      "show",
		Usage:     "show one release: what made it, its image or slug, processes and config vars",
		ArgsUsage: "vN",
		Flags:     []urfave.Flag{clusterFlag(), appFlag(), jsonFlag()},
		Action:    r.releaseShow,
	}
}

func (r *runner) rollbackCommand() *urfave.Command {
	return &urfave.Command{
		Name:      "rollback",
		Usage:     "deploy a copy of an earlier release (default: the previous one)",
		ArgsUsage: "[vN]",
		Description: "Makes a new release that copies release vN: its image or slug, its process\n" +
			"types and its config vars (which become the app's config vars again), and\n" +
			"deploys it like any release. Without vN it goes back to the release that\n" +
			"was serving before the current one. gantry releases lists the versions.\n" +
			"It follows the deployment until it ends (see gantry deploy).",
		Flags:  []urfave.Flag{clusterFlag(), appFlag(), noWaitFlag()},
		Action: r.rollback,
	}
}

func (r *runner) releases(c *urfave.Context) error {
	if err := checkArgs(c, 0, 0); err != nil {
		return err
	}
	app, err := r.app(c)
	if err != nil {
		return err
	}
	cl, err := r.client(c)
	if err != nil {
		return err
	}
	rels, err := cl.ListReleases(c.Context, app)
	if err != nil {
		return err
	}
	if rels == nil {
		rels = []types.Release{}
	}
	if c.Bool("json") {
		return writeJSON(r.stdout, rels)
	}
	if len(rels) == 0 {
		fmt.Fprintf(r.stdout, "%s has no releases yet: deploy with git push, or gantry release create\n", app)
		return nil
	}
	a, err := cl.GetApp(c.Context, app)
	if err != nil {
		return err
	}
	now := r.now()
	tw := newTable(r.stdout)
	fmt.Fprintln(tw, "\tVERSION\tCREATED\tDESCRIPTION")
	for _, rel := range rels {
		mark := ""
		if rel.Version == a.Release {
			mark = "*"
		}
		desc := oneLine(rel.Description)
		if rel.SlugDeleted {
			desc += " (slug deleted: cannot roll back)"
		}
		fmt.Fprintf(tw, "%s\tv%d\t%s ago\t%s\n", mark, rel.Version, formatAge(now.Sub(rel.CreatedAt)), desc)
	}
	return tw.Flush()
}

func (r *runner) releaseShow(c *urfave.Context) error {
	if err := checkArgs(c, 1, 1); err != nil {
		return err
	}
	version, err := parseVersion(c.Args().First())
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
	rel, err := cl.GetRelease(c.Context, app, version)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return writeJSON(r.stdout, rel)
	}
	a, err := cl.GetApp(c.Context, app)
	if err != nil {
		return err
	}
	title := fmt.Sprintf("=== %s v%d", app, rel.Version)
	if rel.Version == a.Release {
		title += " (current)"
	}
	fmt.Fprintln(r.stdout, title)
	tw := newTable(r.stdout)
	fmt.Fprintf(tw, "Description:\t%s\n", orDash(oneLine(rel.Description)))
	fmt.Fprintf(tw, "Created:\t%s (%s ago)\n", formatTime(rel.CreatedAt), formatAge(r.now().Sub(rel.CreatedAt)))
	fmt.Fprintf(tw, "Image:\t%s\n", orDash(rel.Image))
	if rel.Slug != "" {
		fmt.Fprintf(tw, "Slug:\t%s\n", rel.Slug)
	}
	var procs []string
	for _, typ := range slices.Sorted(maps.Keys(rel.Processes)) {
		p := rel.Processes[typ]
		line := typ + ": " + p.Command
		if p.HealthPath != "" {
			line += " (health check " + p.HealthPath + ")"
		}
		procs = append(procs, line)
	}
	writeList(tw, "Processes:", procs)
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(r.stdout, "\n=== Config vars (%d)\n", len(rel.Config))
	for _, k := range slices.Sorted(maps.Keys(rel.Config)) {
		fmt.Fprintf(r.stdout, "%s=%s\n", k, rel.Config[k])
	}
	return nil
}

func (r *runner) rollback(c *urfave.Context) error {
	if err := checkArgs(c, 0, 1); err != nil {
		return err
	}
	version := 0
	if c.NArg() == 1 {
		v, err := parseVersion(c.Args().First())
		if err != nil {
			return usagef(c, "%v", err)
		}
		version = v
	}
	app, err := r.app(c)
	if err != nil {
		return err
	}
	cl, err := r.client(c)
	if err != nil {
		return err
	}
	rel, deployment, err := cl.RollbackDeployment(c.Context, app, version)
	if err != nil {
		return err
	}
	// The controller names the release copied in the description
	// ("rollback to v3"), also when it chose it.
	var to int
	if _, err := fmt.Sscanf(rel.Description, "rollback to v%d", &to); err == nil {
		version = to
	}
	if version > 0 {
		fmt.Fprintf(r.stdout, "Rolled back %s to v%d as v%d\n", app, version, rel.Version)
	} else {
		fmt.Fprintf(r.stdout, "Rolled back %s as v%d (%s)\n", app, rel.Version, oneLine(rel.Description))
	}
	return r.followMade(c, cl, app, deployment, rel.Version)
}

// parseVersion reads a release version typed as "v3" or "3".
func parseVersion(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimPrefix(s, "v"))
	if err != nil || n < 1 || strings.HasPrefix(s, "v+") || strings.HasPrefix(s, "+") {
		return 0, fmt.Errorf("invalid argument %q: a release version is v1, v2, ... (or 1, 2, ...)", s)
	}
	return n, nil
}

// oneLine keeps the first line of a description, for tables.
func oneLine(s string) string {
	line, _, cut := strings.Cut(s, "\n")
	if cut {
		line += " ..."
	}
	return line
}
