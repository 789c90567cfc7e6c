package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/gantryhq/gantry/slugbuilder"
	slugtypes "github.com/gantryhq/gantry/slugbuilder/types"
)

func slugbuilderCommand() *cli.Command {
	return &cli.Command{
		Name:  "slugbuilder",
		Usage: "in a builder container: build the app's source into a slug with buildpacks",
		Description: "Configured by environment variables (see slugbuilder/README.md):\n" +
			"SOURCE (default " + slugtypes.SourcePath + "), CACHE_IN (" + slugtypes.CacheInPath + "),\n" +
			"SLUG_OUT (" + slugtypes.SlugPath + "), CACHE_OUT (" + slugtypes.CacheOutPath + "),\n" +
			"RESULT_OUT (" + slugtypes.ResultPath + "), CONFIG_VAR_<NAME> (the app's config vars),\n" +
			"BUILDPACK_URL, SLUG_MAX_SIZE (bytes), COMPILE_TIMEOUT; GOPROXY, PIP_INDEX_URL and the\n" +
			"rest of the environment are passed to the buildpacks. The build output goes to stdout,\n" +
			"operational logs to stderr.",
		Action: func(c *cli.Context) error {
			log, err := logger(c)
			if err != nil {
				return err
			}
			cfg, err := slugbuilder.ConfigFromEnv(os.Environ())
			if err != nil {
				// Build prints its own failures; this one happens before it.
				for line := range strings.SplitSeq(err.Error(), "\n") {
					fmt.Fprintf(os.Stdout, " !     %s\n", line)
				}
				return err
			}
			cfg.Out = os.Stdout
			cfg.Logger = log
			_, err = slugbuilder.Build(c.Context, cfg)
			return err
		},
	}
}
