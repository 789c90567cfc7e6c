package cli

import (
	"fmt"
	"strings"

	urfave "github.com/urfave/cli/v2"

	"github.com/gantryhq/gantry/layer1/controller/client"
)

func (r *runner) clusterCommand() *urfave.Command {
	return &urfave.Command{
		Name:  "cluster",
		Usage: "manage the clusters gantry talks to",
		Description: "Clusters are stored in $GANTRY_CONFIG, else $XDG_CONFIG_HOME/gantry/config.json,\n" +
			"else ~/.config/gantry/config.json. GANTRY_URL and GANTRY_TOKEN override the\n" +
			"default cluster; -c NAME picks another one.",
		Flags:  []urfave.Flag{jsonFlag()},
		Action: r.clusterList,
		Subcommands: []*urfave.Command{
			{
				Name:      "add",
				Usage:     "add a cluster (the first one becomes the default)",
				ArgsUsage: "NAME URL",
				Flags: []urfave.Flag{
					&urfave.StringFlag{Name: "token", Aliases: []string{"t"}, Usage: "the controller's API `TOKEN`"},
					&urfave.BoolFlag{Name: "default", Aliases: []string{"d"}, Usage: "make it the default cluster", DisableDefaultText: true},
					&urfave.BoolFlag{Name: "force", Aliases: []string{"f"}, Usage: "replace a cluster of the same name", DisableDefaultText: true},
				},
				Action: r.clusterAdd,
			},
			{
				Name:   "list",
				Usage:  "list clusters; * marks the default",
				Flags:  []urfave.Flag{jsonFlag()},
				Action: r.clusterList,
			},
			{
				Name:      "remove",
				Usage:     "forget a cluster",
				ArgsUsage: "NAME",
				Action:    r.clusterRemove,
			},
			{
				Name:      "default",
				Usage:     "make a cluster the default",
				ArgsUsage: "NAME",
				Action:    r.clusterDefault,
			},
		},
	}
}

// editConfig loads the configuration, lets edit change it and saves it.
func (r *runner) editConfig(edit func(*config) error) error {
	path, err := configPath(r.getenv)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(path)
	if err != nil {
		return err
	}
	if err := edit(cfg); err != nil {
		return err
	}
	return saveConfig(path, cfg)
}

func (r *runner) clusterAdd(c *urfave.Context) error {
	if err := checkArgs(c, 2, 2); err != nil {
		return err
	}
	cl := cluster{
		Name:  c.Args().Get(0),
		URL:   strings.TrimRight(c.Args().Get(1), "/"),
		Token: c.String("token"),
	}
	if cl.Token == "" {
		return usagef(c, "--token is required")
	}
	if err := cl.Validate(); err != nil {
		return err
	}
	var isDefault bool
	err := r.editConfig(func(cfg *config) error {
		if _, exists := cfg.find(cl.Name); exists && !c.Bool("force") {
			return fmt.Errorf("cluster %s already exists: add --force to replace it", cl.Name)
		}
		cfg.put(cl)
		if cfg.Default == "" || c.Bool("default") {
			cfg.Default = cl.Name
		}
		isDefault = cfg.Default == cl.Name
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(r.stdout, "Added cluster %s (%s)\n", cl.Name, cl.URL)
	if isDefault {
		fmt.Fprintf(r.stdout, "%s is the default cluster\n", cl.Name)
	}
	r.pinHostKey(c.Context, client.New(cl.URL, cl.Token))
	return nil
}

// clusterEntry is one line of `gantry cluster list --json`; tokens are
// never printed.
type clusterEntry struct {
	Name    string `json:"name"`
	URL     string `json:"url"`
	Default bool   `json:"default"`
}

func (r *runner) clusterList(c *urfave.Context) error {
	if err := checkArgs(c, 0, 0); err != nil {
		return err
	}
	cfg, err := r.loadConfig()
	if err != nil {
		return err
	}
	entries := make([]clusterEntry, 0, len(cfg.Clusters))
	for _, cl := range cfg.Clusters {
		entries = append(entries, clusterEntry{Name: cl.Name, URL: cl.URL, Default: cl.Name == cfg.Default})
	}
	if c.Bool("json") {
		return writeJSON(r.stdout, entries)
	}
	if len(entries) == 0 {
		fmt.Fprintln(r.stdout, "No clusters yet. Add one with: gantry cluster add NAME URL --token TOKEN")
		return nil
	}
	tw := newTable(r.stdout)
	fmt.Fprintln(tw, "DEFAULT\tNAME\tURL")
	for _, e := range entries {
		mark := ""
		if e.Default {
			mark = "*"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", mark, e.Name, e.URL)
	}
	return tw.Flush()
}

func (r *runner) clusterRemove(c *urfave.Context) error {
	if err := checkArgs(c, 1, 1); err != nil {
		return err
	}
	name := c.Args().First()
	var wasDefault bool
	err := r.editConfig(func(cfg *config) error {
		wasDefault = cfg.Default == name
		if !cfg.remove(name) {
			return fmt.Errorf("no cluster named %q (see gantry cluster list)", name)
		}
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(r.stdout, "Removed cluster %s\n", name)
	if wasDefault {
		fmt.Fprintln(r.stdout, "There is no default cluster now; pick one with: gantry cluster default NAME")
	}
	return nil
}

func (r *runner) clusterDefault(c *urfave.Context) error {
	if err := checkArgs(c, 1, 1); err != nil {
		return err
	}
	name := c.Args().First()
	err := r.editConfig(func(cfg *config) error {
		if _, ok := cfg.find(name); !ok {
			return fmt.Errorf("no cluster named %q (see gantry cluster list)", name)
		}
		cfg.Default = name
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(r.stdout, "%s is the default cluster\n", name)
	return nil
}
