package cli

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	urfave "github.com/urfave/cli/v2"
)

func (r *runner) envCommand() *urfave.Command {
	return &urfave.Command{
		Name:   "env",
		Usage:  "show and change an app's config vars",
		Flags:  []urfave.Flag{clusterFlag(), appFlag(), jsonFlag()},
		Action: r.envList,
		Subcommands: []*urfave.Command{
			{
				Name:      "get",
				Usage:     "print the value of one config var",
				ArgsUsage: "KEY",
				Flags:     []urfave.Flag{clusterFlag(), appFlag()},
				Action:    r.envGet,
			},
			{
				Name:      "set",
				Usage:     "set config vars",
				ArgsUsage: "KEY=VALUE...",
				Flags:     []urfave.Flag{clusterFlag(), appFlag(), noWaitFlag()},
				Action:    r.envSet,
			},
			{
				Name:      "unset",
				Usage:     "remove config vars",
				ArgsUsage: "KEY...",
				Flags:     []urfave.Flag{clusterFlag(), appFlag(), noWaitFlag()},
				Action:    r.envUnset,
			},
		},
	}
}

func (r *runner) envList(c *urfave.Context) error {
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
	env, err := cl.GetConfig(c.Context, app)
	if err != nil {
		return err
	}
	if env == nil {
		env = map[string]string{}
	}
	if c.Bool("json") {
		return writeJSON(r.stdout, env)
	}
	for _, k := range slices.Sorted(maps.Keys(env)) {
		fmt.Fprintf(r.stdout, "%s=%s\n", k, env[k])
	}
	return nil
}

func (r *runner) envGet(c *urfave.Context) error {
	if err := checkArgs(c, 1, 1); err != nil {
		return err
	}
	key := c.Args().First()
	if err := validateConfigKey(key); err != nil {
		return usagef(c, "invalid argument %q: %v", key, err)
	}
	app, err := r.app(c)
	if err != nil {
		return err
	}
	cl, err := r.client(c)
	if err != nil {
		return err
	}
	env, err := cl.GetConfig(c.Context, app)
	if err != nil {
		return err
	}
	v, ok := env[key]
	if !ok {
		return fmt.Errorf("%s is not set on %s", key, app)
	}
	fmt.Fprintln(r.stdout, v)
	return nil
}

func (r *runner) envSet(c *urfave.Context) error {
	if err := checkArgs(c, 1, -1); err != nil {
		return err
	}
	changes := make(map[string]*string, c.NArg())
	for _, arg := range c.Args().Slice() {
		k, v, err := parseAssignment(arg)
		if err != nil {
			return usagef(c, "%v", err)
		}
		changes[k] = &v
	}
	return r.updateConfig(c, changes, "Set")
}

func (r *runner) envUnset(c *urfave.Context) error {
	if err := checkArgs(c, 1, -1); err != nil {
		return err
	}
	for _, k := range c.Args().Slice() {
		if err := validateConfigKey(k); err != nil {
			return usagef(c, "invalid argument %q: %v", k, err)
		}
	}
	app, err := r.app(c)
	if err != nil {
		return err
	}
	cl, err := r.client(c)
	if err != nil {
		return err
	}
	env, err := cl.GetConfig(c.Context, app)
	if err != nil {
		return err
	}
	// Unsetting a var that is not set changes nothing: say so. The command
	// fails only when none of the vars was set (nothing changed at all).
	changes := make(map[string]*string, c.NArg())
	var notSet []string
	for _, k := range c.Args().Slice() {
		if _, ok := env[k]; ok {
			changes[k] = nil
		} else if !slices.Contains(notSet, k) {
			notSet = append(notSet, k)
		}
	}
	if len(changes) == 0 {
		return fmt.Errorf("%s %s not set on %s; nothing changed", strings.Join(notSet, ", "), isAre(len(notSet)), app)
	}
	if len(notSet) > 0 {
		fmt.Fprintf(r.stderr, "%s %s not set on %s\n", strings.Join(notSet, ", "), wasWere(len(notSet)), app)
	}
	return r.updateConfig(c, changes, "Unset")
}

func isAre(n int) string {
	if n == 1 {
		return "is"
	}
	return "are"
}

func wasWere(n int) string {
	if n == 1 {
		return "was"
	}
	return "were"
}

// updateConfig applies changes to the app's config, says what it did
// ("Set A, B on demo"), and follows the deployment of the release the
// change made, if it made one.
func (r *runner) updateConfig(c *urfave.Context, changes map[string]*string, verb string) error {
	app, err := r.app(c)
	if err != nil {
		return err
	}
	cl, err := r.client(c)
	if err != nil {
		return err
	}
	_, deployment, err := cl.UpdateConfigDeployment(c.Context, app, changes)
	if err != nil {
		return err
	}
	keys := slices.Sorted(maps.Keys(changes))
	fmt.Fprintf(r.stdout, "%s %s on %s\n", verb, strings.Join(keys, ", "), app)
	if deployment == "" || c.Bool("no-wait") {
		return nil
	}
	return r.followDeployment(c.Context, cl, app, deployment)
}
