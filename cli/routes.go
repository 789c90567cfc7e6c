package cli

import (
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/gantryhq/gantry/layer1/controller/types"
	urfave "github.com/urfave/cli/v2"
)

// maxPEMFileSize bounds a certificate or key file read, in bytes (the whole
// request body the controller takes is 1 MiB).
const maxPEMFileSize = 256 << 10

func (r *runner) routeCommand() *urfave.Command {
	return &urfave.Command{
		Name:    "route",
		Aliases: []string{"routes"},
		Usage:   "manage the domains that route to an app",
		Flags:   []urfave.Flag{clusterFlag(), appFlag(), jsonFlag()},
		Action:  r.routeList,
		Subcommands: []*urfave.Command{
			{
				Name:      "add",
				Usage:     "route a domain to the app's web processes",
				ArgsUsage: "DOMAIN",
				Description: "DOMAIN is a host name or a wildcard (*.example.test). --cert and --key\n" +
					"give the route its own TLS certificate (PEM files, both or neither);\n" +
					"without them HTTPS uses the router's default certificate.",
				Flags: []urfave.Flag{
					clusterFlag(), appFlag(),
					&urfave.StringFlag{Name: "cert", Usage: "PEM certificate chain `FILE`, leaf first"},
					&urfave.StringFlag{Name: "key", Usage: "PEM private key `FILE` of the certificate"},
					&urfave.BoolFlag{Name: "https-only", Usage: "redirect plain HTTP requests to HTTPS", DisableDefaultText: true},
				},
				Action: r.routeAdd,
			},
			{
				Name:   "list",
				Usage:  "list the app's routes",
				Flags:  []urfave.Flag{clusterFlag(), appFlag(), jsonFlag()},
				Action: r.routeList,
			},
			{
				Name:      "remove",
				Usage:     "remove a custom route",
				ArgsUsage: "DOMAIN",
				Flags:     []urfave.Flag{clusterFlag(), appFlag()},
				Action:    r.routeRemove,
			},
		},
	}
}

func (r *runner) routeAdd(c *urfave.Context) error {
	if err := checkArgs(c, 1, 1); err != nil {
		return err
	}
	req := types.RouteRequest{Domain: domainArg(c), HTTPSOnly: c.Bool("https-only")}
	if err := types.ValidateDomain(req.Domain); err != nil {
		return usagef(c, "%s", apiMessage(err))
	}
	certFile, keyFile := c.String("cert"), c.String("key")
	switch {
	case certFile != "" && keyFile == "":
		return usagef(c, "--cert needs --key: give both the certificate and its private key, or neither")
	case certFile == "" && keyFile != "":
		return usagef(c, "--key needs --cert: give both the certificate and its private key, or neither")
	case certFile != "":
		var err error
		if req.TLSCert, err = readPEMFile(certFile, "certificate", func(t string) bool { return t == "CERTIFICATE" }); err != nil {
			return err
		}
		if req.TLSKey, err = readPEMFile(keyFile, "private key", func(t string) bool { return strings.HasSuffix(t, "PRIVATE KEY") }); err != nil {
			return err
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
	route, err := cl.AddRoute(c.Context, app, req)
	if err != nil {
		return err
	}
	fmt.Fprintf(r.stdout, "Added route %s to %s", route.Domain, app)
	var notes []string
	if route.TLS {
		notes = append(notes, "TLS "+formatTLS(*route))
	}
	if route.HTTPSOnly {
		notes = append(notes, "HTTPS only")
	}
	if len(notes) > 0 {
		fmt.Fprintf(r.stdout, " (%s)", strings.Join(notes, ", "))
	}
	fmt.Fprintln(r.stdout)
	return nil
}

// domainArg returns the DOMAIN argument in lower case: host names are
// case-insensitive, and the controller stores them in lower case.
func domainArg(c *urfave.Context) string {
	return strings.ToLower(c.Args().First())
}

// apiMessage returns the message of an API error, or the error's text.
func apiMessage(err error) string {
	var apiErr *types.Error
	if errors.As(err, &apiErr) && apiErr.Message != "" {
		return apiErr.Message
	}
	return err.Error()
}

// readPEMFile reads a PEM file of at most maxPEMFileSize bytes that holds a
// block whose type isType accepts; what names the content in errors.
func readPEMFile(path, what string, isType func(string) bool) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fileError(what, path, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPEMFileSize+1))
	if err != nil {
		return "", fileError(what, path, err)
	}
	if len(b) > maxPEMFileSize {
		return "", fmt.Errorf("%s is larger than %d bytes: not a PEM %s", path, maxPEMFileSize, what)
	}
	for rest := b; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return "", fmt.Errorf("%s does not hold a PEM %s", path, what)
		}
		if isType(block.Type) {
			return string(b), nil
		}
	}
}

// fileError says that the what file at path cannot be read, and why
// ("no such file", "permission denied", "is a directory"), naming the path
// once.
func fileError(what, path string, err error) error {
	var pathErr *fs.PathError
	if errors.As(err, &pathErr) {
		err = pathErr.Err
	}
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("cannot read the %s file %s: no such file", what, path)
	}
	return fmt.Errorf("cannot read the %s file %s: %w", what, path, err)
}

func (r *runner) routeList(c *urfave.Context) error {
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
	routes, err := cl.ListRoutes(c.Context, app)
	if err != nil {
		return err
	}
	if routes == nil {
		routes = []types.Route{}
	}
	if c.Bool("json") {
		return writeJSON(r.stdout, routes)
	}
	if len(routes) == 0 {
		fmt.Fprintf(r.stdout, "%s has no routes: its release has no web process, and no domain was added (gantry route add DOMAIN)\n", app)
		return nil
	}
	tw := newTable(r.stdout)
	fmt.Fprintln(tw, "DOMAIN\tKIND\tTLS\tHTTPS ONLY\tADDED")
	var failed []types.Route
	for _, rt := range routes {
		kind := "custom"
		if rt.Default {
			kind = "default"
		}
		if rt.CertState == types.CertFailed {
			failed = append(failed, rt)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", rt.Domain, kind, formatTLS(rt), yesNo(rt.HTTPSOnly), formatTime(rt.CreatedAt))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	// The ACME server's own words, which do not fit in a column.
	for _, rt := range failed {
		fmt.Fprintf(r.stdout, "\n%s: certificate failed: %s\n  next attempt at %s\n", rt.Domain, rt.CertError, formatTime(rt.CertRetryAt))
	}
	return nil
}

// formatTLS describes a route's certificate: "-" without one, "until
// 2027-01-02", "own certificate" when its expiry is unknown, and for a
// certificate obtained with ACME "pending", "issued, until 2027-01-02" or
// "failed" (with the expiry of the certificate still served, if any).
func formatTLS(rt types.Route) string {
	until := "until " + rt.CertNotAfter.UTC().Format("2006-01-02")
	switch {
	case rt.CertState == types.CertPending:
		return "pending"
	case rt.CertState == types.CertIssued:
		return "issued, " + until
	case rt.CertState == types.CertFailed && rt.TLS:
		return "failed, " + until
	case rt.CertState == types.CertFailed:
		return "failed"
	case !rt.TLS:
		return "-"
	case rt.CertNotAfter.IsZero():
		return "own certificate"
	}
	return until
}

// yesNo prints b as "yes" or "no".
func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func (r *runner) routeRemove(c *urfave.Context) error {
	if err := checkArgs(c, 1, 1); err != nil {
		return err
	}
	domain := domainArg(c)
	if err := types.ValidateDomain(domain); err != nil {
		return usagef(c, "%s", apiMessage(err))
	}
	app, err := r.app(c)
	if err != nil {
		return err
	}
	cl, err := r.client(c)
	if err != nil {
		return err
	}
	if err := cl.RemoveRoute(c.Context, app, domain); err != nil {
		return err
	}
	fmt.Fprintf(r.stdout, "Removed route %s from %s\n", domain, app)
	return nil
}
