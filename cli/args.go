package cli

import (
	"fmt"
	"slices"
	"strings"

	urfave "github.com/urfave/cli/v2"
)

// usageError is a command line the command cannot run with. It is printed
// with the command's usage line, never with the whole help text.
type usageError struct {
	// usage is the command's usage line, e.g. "gantry env set KEY=VALUE...".
	usage string
	// msg says what is wrong.
	msg string
}

func (e *usageError) Error() string { return e.msg }

// usagef returns a usageError for the command of c.
func usagef(c *urfave.Context, format string, args ...any) error {
	return &usageError{usage: usageLine(c), msg: fmt.Sprintf(format, args...)}
}

// usageLine is "gantry env set [options] KEY=VALUE..." for the command of c.
func usageLine(c *urfave.Context) string {
	if c.Command == nil || c.Command.HelpName == "" || c.Command.HelpName == c.App.HelpName {
		return "gantry COMMAND [options] [arguments]"
	}
	line := c.Command.HelpName + " [options]"
	if c.Command.ArgsUsage != "" {
		line += " " + c.Command.ArgsUsage
	}
	return line
}

// checkArgs returns a usageError unless the command got between min and max
// positional arguments (max < 0: no upper bound).
func checkArgs(c *urfave.Context, min, max int) error {
	n := c.NArg()
	switch {
	case n < min:
		return usagef(c, "missing arguments")
	case max >= 0 && n > max:
		return usagef(c, "unexpected argument %q", c.Args().Get(max))
	}
	return nil
}

// hoistFlags rewrites args so that urfave/cli v2, which stops parsing
// flags at the first positional argument and knows only the flags of the
// command being parsed, sees each flag where that command defines it.
// Users type flags anywhere, as Heroku's and Flynn's CLIs allow:
// `gantry scale web=3 -a demo`, `gantry -a demo scale web=3`,
// `gantry release -a demo create --image ...`. So:
//
//   - a flag typed before a command name that the level it is typed at does
//     not define moves down to the command finally run;
//   - the flags after the command run move in front of its positional
//     arguments.
//
// Arguments after "--" stay positional. A flag takes the next argument as
// its value when the command tree defines a flag of that name with a value
// (each name takes one everywhere or nowhere, see TestFlagNamesAgree).
// args[0] is the program name.
func hoistFlags(app *urfave.App, args []string) []string {
	if len(args) == 0 {
		return args
	}
	valued := valueFlags(app.Flags, app.Commands, map[string]bool{})
	takesValue := func(a string) bool {
		return !strings.Contains(a, "=") && valued[flagName(a)]
	}
	out := []string{args[0]}
	rest := args[1:]
	flags, cmds := app.Flags, app.Commands
	// carried are the flags moving down to the command run.
	var carried []string
	for {
		var here, down []string
		i := 0
		for i < len(rest) && isFlagArg(rest[i]) {
			n := 1
			if takesValue(rest[i]) && i+1 < len(rest) {
				n = 2
			}
			if definesFlag(flags, rest[i]) {
				here = append(here, rest[i:i+n]...)
			} else {
				down = append(down, rest[i:i+n]...)
			}
			i += n
		}
		if i >= len(rest) || rest[i] == "--" {
			break
		}
		cmd := findCommand(cmds, rest[i])
		if cmd == nil {
			break
		}
		out = append(out, here...)
		out = append(out, rest[i])
		carried = append(carried, down...)
		rest = rest[i+1:]
		flags, cmds = cmd.Flags, cmd.Subcommands
	}
	fl := carried
	var pos []string
	dashdash := false
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		switch {
		case a == "--":
			dashdash = true
			pos = append(pos, rest[i+1:]...)
			i = len(rest)
		case isFlagArg(a) && takesValue(a) && i+1 == len(rest):
			// The value is missing: keep the flag last, so that parsing
			// fails on it rather than taking a positional argument as its
			// value. The command does not run, so the positional
			// arguments are left out.
			return append(append(out, fl...), a)
		case isFlagArg(a):
			fl = append(fl, a)
			if takesValue(a) {
				i++
				fl = append(fl, rest[i])
			}
		default:
			pos = append(pos, a)
		}
	}
	out = append(out, fl...)
	if dashdash && len(pos) > 0 {
		out = append(out, "--")
	}
	return append(out, pos...)
}

// isFlagArg reports whether a looks like a flag ("-a", "--app=x").
func isFlagArg(a string) bool {
	return len(a) > 1 && a[0] == '-' && a != "--"
}

// flagName returns the name of the flag argument a: "app" for "--app=x".
func flagName(a string) string {
	name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
	return name
}

// definesFlag reports whether flags hold the flag of the argument a.
func definesFlag(flags []urfave.Flag, a string) bool {
	name := flagName(a)
	return slices.ContainsFunc(flags, func(f urfave.Flag) bool { return slices.Contains(f.Names(), name) })
}

// valueFlags adds to names the names of the flags of flags, cmds and their
// subcommands that take a value, and returns it.
func valueFlags(flags []urfave.Flag, cmds []*urfave.Command, names map[string]bool) map[string]bool {
	for _, f := range flags {
		if v, ok := f.(interface{ TakesValue() bool }); ok && v.TakesValue() {
			for _, n := range f.Names() {
				names[n] = true
			}
		}
	}
	for _, c := range cmds {
		valueFlags(c.Flags, c.Subcommands, names)
	}
	return names
}

// findCommand returns the command of cmds named or aliased name.
func findCommand(cmds []*urfave.Command, name string) *urfave.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}
