package cli

import (
	"fmt"

	"github.com/gantryhq/gantry/layer1/controller/types"
	urfave "github.com/urfave/cli/v2"
)

func (r *runner) httpsOnlyCommand() *urfave.Command {
	return &urfave.Command{
		Name:      "https-only",
		Usage:     "redirect plain HTTP to HTTPS on every domain of the app, or show whether it does",
		ArgsUsage: "[on|off]",
		Description: "With on, the routers answer every plain HTTP request to any of the app's\n" +
			"domains with a permanent redirect (308, path and query kept) to HTTPS, once\n" +
			"that domain has a certificate; a domain still waiting for its certificate is\n" +
			"served over HTTP meanwhile. ACME challenges are never redirected. Routes added\n" +
			"with --https-only redirect whatever this says. Without an argument, shows the\n" +
			"setting.",
		Flags:  []urfave.Flag{clusterFlag(), appFlag()},
		Action: r.httpsOnly,
	}
}

func (r *runner) httpsOnly(c *urfave.Context) error {
	if err := checkArgs(c, 0, 1); err != nil {
		return err
	}
	var set *bool
	if c.NArg() == 1 {
		switch arg := c.Args().First(); arg {
		case "on", "off":
			on := arg == "on"
			set = &on
		default:
			return usagef(c, "invalid argument %q: use on or off", arg)
		}
	}
	name, err := r.app(c)
	if err != nil {
		return err
	}
	cl, err := r.client(c)
	if err != nil {
		return err
	}
	var app *types.App
	if set == nil {
		app, err = cl.GetApp(c.Context, name)
	} else {
		app, err = cl.UpdateApp(c.Context, name, types.UpdateAppRequest{HTTPSOnly: set})
	}
	if err != nil {
		return err
	}
	if app.HTTPSOnly {
		fmt.Fprintf(r.stdout, "HTTPS only is on for %s: plain HTTP to its domains is redirected to HTTPS once each has a certificate\n", app.Name)
		return nil
	}
	fmt.Fprintf(r.stdout, "HTTPS only is off for %s: plain HTTP is served, except on routes added with --https-only\n", app.Name)
	return nil
}

// formatHTTPSOnly describes an app's https_only in gantry info.
func formatHTTPSOnly(on bool) string {
	if on {
		return "on (plain HTTP redirected once a domain has a certificate)"
	}
	return "off"
}
