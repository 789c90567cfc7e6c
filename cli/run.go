package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gantryhq/gantry/layer1/controller/client"
	"github.com/gantryhq/gantry/layer1/controller/types"
	urfave "github.com/urfave/cli/v2"
)

// errorPrefix starts every error line, as in Heroku's CLI.
const errorPrefix = " !    "

// Run runs the gantry command line args (args[0] is the program name) with
// the process environment and working directory, and returns the exit
// status: 0 on success, 1 after printing an error to stderr, or the status
// a command asks for (gantry run exits with the job's).
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	r := &runner{stdin: stdin, stdout: stdout, stderr: stderr, getenv: os.Getenv, now: time.Now}
	return r.run(ctx, args)
}

// runner holds what one run of the command line reads and writes.
type runner struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	// getenv reads the environment (GANTRY_*, HOME, XDG_CONFIG_HOME).
	getenv func(string) string
	// now reads the clock, for ages and elapsed times.
	now func() time.Time
	// dir is the working directory for git; "" is the process's.
	dir string
	// target is the controller the command talks to, once chosen; error
	// messages name it.
	target *target
}

// run builds the command tree, runs it and prints any error.
func (r *runner) run(ctx context.Context, args []string) (code int) {
	defer func() {
		if v := recover(); v != nil {
			r.printError(fmt.Errorf("gantry crashed: %v", v))
			code = 1
		}
	}()
	app := r.newApp()
	if err := app.RunContext(ctx, hoistFlags(app, protectRunArgs(app, args))); err != nil {
		var status *exitStatusError
		if errors.As(err, &status) {
			if status.err != nil {
				r.printError(status.err)
			}
			return status.code
		}
		r.printError(err)
		return 1
	}
	return 0
}

// newApp returns the gantry command tree wired to r.
func (r *runner) newApp() *urfave.App {
	app := &urfave.App{
		Name:        "gantry",
		Usage:       "deploy and run apps on a Gantry cluster",
		Reader:      r.stdin,
		Writer:      r.stdout,
		ErrWriter:   r.stderr,
		HideVersion: true,
		// --process web='sh -c "a, b"': a repeated flag's value is never split.
		DisableSliceFlagSeparator: true,
		// Errors are printed once, by run; never let the library exit.
		ExitErrHandler: func(*urfave.Context, error) {},
		Action: func(c *urfave.Context) error {
			if c.NArg() > 0 {
				return usagef(c, "unknown command %q (see gantry help)", c.Args().First())
			}
			return urfave.ShowAppHelp(c)
		},
		Commands: []*urfave.Command{
			r.createCommand(),
			r.appsCommand(),
			r.infoCommand(),
			r.destroyCommand(),
			r.envCommand(),
			r.releaseCommand(),
			r.releasesCommand(),
			r.rollbackCommand(),
			r.deployCommand(),
			r.deploymentsCommand(),
			r.scaleCommand(),
			r.psCommand(),
			r.metricsCommand(),
			r.killCommand(),
			r.restartCommand(),
			r.oneOffCommand(),
			r.logCommand(),
			r.routeCommand(),
			r.httpsOnlyCommand(),
			r.keyCommand(),
			r.clusterCommand(),
			r.hostsCommand(),
			r.hostCommand(),
			r.gcCommand(),
			r.versionCommand(),
		},
	}
	app.OnUsageError = onUsageError
	setUsageErrorHandler(app.Commands)
	return app
}

// onUsageError turns a flag parsing error into a usageError, so that it is
// printed with the usage line rather than the whole help text.
func onUsageError(c *urfave.Context, err error, _ bool) error {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		dashes := "-"
		if len(name) > 1 {
			dashes = "--"
		}
		msg = "unknown flag " + dashes + name
		if _, err := strconv.ParseFloat(name, 64); err == nil {
			// "gantry deploy timeout -3": a negative number, not a flag.
			msg = fmt.Sprintf("invalid argument %q: negative numbers are not valid here (want %s)", "-"+name, c.Command.ArgsUsage)
		}
	}
	return &usageError{usage: usageLine(c), msg: msg}
}

// setUsageErrorHandler installs onUsageError on cmds and their subcommands.
func setUsageErrorHandler(cmds []*urfave.Command) {
	for _, c := range cmds {
		c.OnUsageError = onUsageError
		setUsageErrorHandler(c.Subcommands)
	}
}

// printError writes err to stderr, one " !    " line per line of text.
func (r *runner) printError(err error) {
	msg := r.describe(err)
	var ue *usageError
	if errors.As(err, &ue) {
		msg += "\nUsage: " + ue.usage
	}
	for line := range strings.SplitSeq(msg, "\n") {
		fmt.Fprintf(r.stderr, "%s%s\n", errorPrefix, line)
	}
}

// describe turns err into the message a user reads: the controller's own
// message for API errors, plain words for a rejected token, and the error
// itself otherwise (the client's transport errors name the controller URL).
func (r *runner) describe(err error) string {
	var apiErr *types.Error
	status := 0
	if errors.As(err, &apiErr) {
		status = apiErr.Status
	}
	if msg := r.notGantryAPI(err, status); msg != "" {
		return msg
	}
	if apiErr != nil {
		if apiErr.Status == http.StatusUnauthorized {
			return r.unauthorized()
		}
		if apiErr.Message != "" {
			return apiErr.Message
		}
		return fmt.Sprintf("controller error %d %s", apiErr.Status, apiErr.Code)
	}
	if errors.Is(err, context.Canceled) {
		return "interrupted"
	}
	// Transport failures already say which controller could not be reached.
	return err.Error()
}

// unauthorized explains a 401: which token was rejected and how to fix it.
func (r *runner) unauthorized() string {
	const fix = "check GANTRY_TOKEN, or store a valid token with: gantry cluster add NAME URL --token TOKEN --force"
	switch {
	case r.target == nil:
		return "the controller rejected the token\n" + fix
	case r.target.Token == "":
		return fmt.Sprintf("the controller at %s needs a token and none was given (%s is empty)\n%s", r.target.URL, r.target.TokenSource, fix)
	default:
		return fmt.Sprintf("the controller at %s rejected the token from %s\n%s", r.target.URL, r.target.TokenSource, fix)
	}
}

// loadConfig reads the configuration file.
func (r *runner) loadConfig() (*config, error) {
	p, err := configPath(r.getenv)
	if err != nil {
		return nil, err
	}
	return loadConfig(p)
}

// client returns a controller client for the cluster chosen by -c,
// GANTRY_URL/GANTRY_TOKEN or the default cluster.
func (r *runner) client(c *urfave.Context) (*client.Client, error) {
	t, err := resolveTarget(flagString(c, "cluster"), r.getenv, r.loadConfig)
	if err != nil {
		return nil, err
	}
	r.target = &t
	return client.New(t.URL, t.Token), nil
}

// app returns the app the command acts on (see resolveApp).
func (r *runner) app(c *urfave.Context) (string, error) {
	return resolveApp(c.Context, flagString(c, "app"), r.getenv, r.dir)
}

// flagString returns the value of the string flag name as set on the
// command or on any of its parents ("gantry env -a demo set K=V").
func flagString(c *urfave.Context, name string) string {
	for _, cc := range c.Lineage() {
		if cc.IsSet(name) {
			return cc.String(name)
		}
	}
	return ""
}

// clusterFlag is -c/--cluster, on every command that talks to a controller.
func clusterFlag() urfave.Flag {
	return &urfave.StringFlag{Name: "cluster", Aliases: []string{"c"}, Usage: "talk to the configured cluster `NAME` instead of the default"}
}

// appFlag is -a/--app, on every command that acts on one app.
func appFlag() urfave.Flag {
	return &urfave.StringFlag{Name: "app", Aliases: []string{"a"}, Usage: "act on `APP` (default: $GANTRY_APP, then the gantry git remote)"}
}

// jsonFlag is --json, on listing commands.
func jsonFlag() urfave.Flag {
	return &urfave.BoolFlag{Name: "json", Usage: "print JSON", DisableDefaultText: true}
}
