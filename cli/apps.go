package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"

	"github.com/gantryhq/gantry/layer1/controller/client"
	"github.com/gantryhq/gantry/layer1/controller/types"
	urfave "github.com/urfave/cli/v2"
	"golang.org/x/term"
)

func (r *runner) createCommand() *urfave.Command {
	return &urfave.Command{
		Name:      "create",
		Usage:     "create an app (the controller picks a name when NAME is omitted)",
		ArgsUsage: "[NAME]",
		Description: "Inside a git work tree, create also adds a git remote (gantry by default)\n" +
			"pointing at the app's git URL, so that `git push gantry main` deploys it.",
		Flags: []urfave.Flag{
			clusterFlag(),
			&urfave.StringFlag{Name: "remote", Value: defaultRemote, Usage: "name of the git remote to add"},
			&urfave.BoolFlag{Name: "no-remote", Usage: "do not add a git remote", DisableDefaultText: true},
		},
		Action: r.create,
	}
}

func (r *runner) create(c *urfave.Context) error {
	if err := checkArgs(c, 0, 1); err != nil {
		return err
	}
	if c.IsSet("remote") && c.Bool("no-remote") {
		return usagef(c, "--remote and --no-remote exclude each other")
	}
	cl, err := r.client(c)
	if err != nil {
		return err
	}
	app, err := cl.CreateApp(c.Context, c.Args().First())
	if err != nil {
		return err
	}
	fmt.Fprintf(r.stdout, "Created %s\n", app.Name)
	fmt.Fprintf(r.stdout, "Git URL: %s\n", orDash(app.GitURL))
	fmt.Fprintf(r.stdout, "Web URL: %s\n", orDash(app.WebURL))
	if app.GitURL != "" {
		r.pinHostKey(c.Context, cl)
	}
	if c.Bool("no-remote") || app.GitURL == "" {
		return nil
	}
	if err := r.addRemote(c.Context, c.String("remote"), app.GitURL); err != nil {
		return fmt.Errorf("app %s was created, but its git remote was not: %w", app.Name, err)
	}
	return nil
}

// addRemote adds the git remote name pointing at gitURL when the working
// directory is inside a git work tree and has no remote of that name.
func (r *runner) addRemote(ctx context.Context, name, gitURL string) error {
	ok, err := inWorkTree(ctx, r.dir)
	if err != nil || !ok {
		return err
	}
	existing, exists, err := remoteURL(ctx, r.dir, name)
	if err != nil {
		return err
	}
	if exists {
		fmt.Fprintf(r.stdout, "Git remote %s already exists (%s); left unchanged\n", name, existing)
		return nil
	}
	if _, err := runGit(ctx, r.dir, "remote", "add", name, gitURL); err != nil {
		return err
	}
	fmt.Fprintf(r.stdout, "Added git remote %s\n", name)
	return nil
}

func (r *runner) appsCommand() *urfave.Command {
	return &urfave.Command{
		Name:  "apps",
		Usage: "list apps",
		Flags: []urfave.Flag{clusterFlag(), jsonFlag(),
			&urfave.BoolFlag{Name: "all", Usage: "also list the platform's own apps (" + types.SystemAppPrefix + "...)"}},
		Action: r.apps,
	}
}

func (r *runner) apps(c *urfave.Context) error {
	if err := checkArgs(c, 0, 0); err != nil {
		return err
	}
	cl, err := r.client(c)
	if err != nil {
		return err
	}
	apps, err := cl.ListApps(c.Context)
	if err != nil {
		return err
	}
	// The platform's own apps are listed only when asked for.
	apps = slices.DeleteFunc(apps, func(a types.App) bool { return !c.Bool("all") && types.IsSystemAppName(a.Name) })
	if apps == nil {
		apps = []types.App{}
	}
	if c.Bool("json") {
		return writeJSON(r.stdout, apps)
	}
	if len(apps) == 0 {
		fmt.Fprintln(r.stdout, "No apps yet. Create one with: gantry create [NAME]")
		return nil
	}
	tw := newTable(r.stdout)
	fmt.Fprintln(tw, "NAME\tRELEASE\tWEB URL\tCREATED")
	for _, a := range apps {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", a.Name, formatRelease(a.Release), orDash(a.WebURL), formatTime(a.CreatedAt))
	}
	return tw.Flush()
}

func (r *runner) infoCommand() *urfave.Command {
	return &urfave.Command{
		Name:   "info",
		Usage:  "show an app: where it is served, its git URL and its release",
		Flags:  []urfave.Flag{clusterFlag(), appFlag(), jsonFlag()},
		Action: r.info,
	}
}

func (r *runner) info(c *urfave.Context) error {
	if err := checkArgs(c, 0, 0); err != nil {
		return err
	}
	name, err := r.app(c)
	if err != nil {
		return err
	}
	cl, err := r.client(c)
	if err != nil {
		return err
	}
	app, err := cl.GetApp(c.Context, name)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return writeJSON(r.stdout, app)
	}
	routes, err := r.customRoutes(c.Context, cl, app)
	if err != nil {
		return err
	}
	deploy, err := cl.GetDeploySettings(c.Context, name)
	if err != nil {
		return err
	}
	disks, err := singleHostDisks(c.Context, cl)
	if err != nil {
		return err
	}
	urls := app.URLs
	if len(urls) == 0 {
		urls = []string{orDash(app.WebURL)}
	}
	fmt.Fprintf(r.stdout, "=== %s\n", app.Name)
	tw := newTable(r.stdout)
	fmt.Fprintf(tw, "Git URL:\t%s\n", orDash(app.GitURL))
	writeList(tw, "Web URL:", urls)
	writeList(tw, "Routes:", routes)
	fmt.Fprintf(tw, "HTTPS only:\t%s\n", formatHTTPSOnly(app.HTTPSOnly))
	fmt.Fprintf(tw, "Release:\t%s\n", formatRelease(app.Release))
	fmt.Fprintf(tw, "Deploy:\t%s, timeout %s\n", deploy.Strategy, formatTimeout(deploy))
	fmt.Fprintf(tw, "Created:\t%s\n", formatTime(app.CreatedAt))
	fmt.Fprintf(tw, "ID:\t%s\n", orDash(app.ID))
	writeList(tw, "Disk:", disks)
	return tw.Flush()
}

// writeList writes values as rows of tw, label on the first one.
func writeList(tw io.Writer, label string, values []string) {
	for i, v := range values {
		if i > 0 {
			label = ""
		}
		fmt.Fprintf(tw, "%s\t%s\n", label, v)
	}
}

// customRoutes returns the URLs of the app's custom routes with notes on
// their TLS ("https://www.example.test:8443 (TLS until 2027-01-02)").
func (r *runner) customRoutes(ctx context.Context, cl *client.Client, app *types.App) ([]string, error) {
	routes, err := cl.ListRoutes(ctx, app.Name)
	if err != nil {
		return nil, err
	}
	var custom []types.Route
	for _, rt := range routes {
		if !rt.Default {
			custom = append(custom, rt)
		}
	}
	if len(custom) == 0 {
		return nil, nil
	}
	info, err := cl.Info(ctx)
	if err != nil {
		return nil, err
	}
	lines := make([]string, 0, len(custom))
	for _, rt := range custom {
		line := routeURL(rt, info)
		var notes []string
		if rt.TLS {
			notes = append(notes, "TLS "+formatTLS(rt))
		}
		if rt.HTTPSOnly {
			notes = append(notes, "HTTPS only")
		}
		if len(notes) > 0 {
			line += " (" + strings.Join(notes, ", ") + ")"
		}
		lines = append(lines, line)
	}
	return lines, nil
}

// routeURL is where the router serves rt: HTTPS when the route has TLS or
// is HTTPS only, on the port of the router's listener for that scheme
// (left out when it is the scheme's default).
func routeURL(rt types.Route, info *types.Info) string {
	base := info.RouterHTTP
	if rt.TLS || rt.HTTPSOnly || base == "" {
		base = info.RouterHTTPS
	}
	u, err := url.Parse(base)
	if base == "" || err != nil {
		return "https://" + rt.Domain
	}
	host := rt.Domain
	if p := u.Port(); p != "" && !(u.Scheme == "http" && p == "80") && !(u.Scheme == "https" && p == "443") {
		host = net.JoinHostPort(host, p)
	}
	return u.Scheme + "://" + host
}

func (r *runner) destroyCommand() *urfave.Command {
	return &urfave.Command{
		Name:  "destroy",
		Usage: "permanently delete an app, its releases and its config",
		Description: "destroy asks for the app name to be typed before it deletes anything;\n" +
			"--confirm APP answers in advance. It also removes the gantry git remote\n" +
			"of the current work tree when that remote points at the app.",
		Flags: []urfave.Flag{
			clusterFlag(), appFlag(),
			&urfave.StringFlag{Name: "confirm", Usage: "destroy without asking when `APP` is the app's name"},
		},
		Action: r.destroy,
	}
}

func (r *runner) destroy(c *urfave.Context) error {
	if err := checkArgs(c, 0, 0); err != nil {
		return err
	}
	name, err := r.app(c)
	if err != nil {
		return err
	}
	cl, err := r.client(c)
	if err != nil {
		return err
	}
	if _, err := cl.GetApp(c.Context, name); err != nil {
		return err
	}
	answer := c.String("confirm")
	if !c.IsSet("confirm") {
		fmt.Fprintf(r.stderr, "%sThis permanently destroys %s: its releases, config and running processes.\n", errorPrefix, name)
		fmt.Fprintf(r.stderr, "%sTo proceed, type %s or re-run this command with --confirm %s\n\n> ", errorPrefix, name, name)
		if answer, err = readLine(c.Context, r.stdin); err != nil {
			return err
		}
		if !isTerminal(r.stdin) {
			// A terminal echoes the answer's newline; keep the output tidy otherwise.
			fmt.Fprintln(r.stderr)
		}
	}
	if answer != name {
		return fmt.Errorf("confirmation %q did not match %q: nothing was destroyed", answer, name)
	}
	if err := cl.DeleteApp(c.Context, name); err != nil {
		return err
	}
	fmt.Fprintf(r.stdout, "Destroyed %s\n", name)
	return r.removeRemote(c.Context, name)
}

// removeRemote removes the gantry git remote of the working directory when
// it points at app.
func (r *runner) removeRemote(ctx context.Context, app string) error {
	u, ok, err := remoteURL(ctx, r.dir, defaultRemote)
	if err != nil || !ok {
		return err
	}
	if a, err := appFromGitURL(u); err != nil || a != app {
		return nil
	}
	if _, err := runGit(ctx, r.dir, "remote", "remove", defaultRemote); err != nil {
		return fmt.Errorf("app %s was destroyed, but its git remote was not removed: %w", app, err)
	}
	fmt.Fprintf(r.stdout, "Removed git remote %s\n", defaultRemote)
	return nil
}

// readLine reads one line from in, without surrounding space. It returns
// when ctx ends even if in blocks (a terminal waiting for input); that read
// then ends with the process.
func readLine(ctx context.Context, in io.Reader) (string, error) {
	type result struct {
		line string
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		line, err := bufio.NewReader(in).ReadString('\n')
		if errors.Is(err, io.EOF) {
			err = nil
		}
		ch <- result{strings.TrimSpace(line), err}
	}()
	select {
	case <-ctx.Done():
		return "", ctx.Err()
	case res := <-ch:
		if res.err != nil {
			return "", fmt.Errorf("read confirmation: %w", res.err)
		}
		return res.line, nil
	}
}

// isTerminal reports whether f, a reader or writer, is a terminal.
func isTerminal(f any) bool {
	file, ok := f.(*os.File)
	return ok && term.IsTerminal(int(file.Fd()))
}
