package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/gantryhq/gantry/deploy/backup"
)

func backupCommand() *cli.Command {
	return &cli.Command{
		Name:      "backup",
		Usage:     "write a backup of the platform (database, blobs, repositories, identity and secrets) while it runs",
		UsageText: "gantryd backup [--data DIR] > FILE   or   gantryd backup --output FILE",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "data", Value: defaultDataDir(), Usage: "the platform's data directory"},
			&cli.StringFlag{Name: "database-url", Usage: "the controller's PostgreSQL, when external (as given to gantryd up)", EnvVars: []string{"GANTRY_DATABASE_URL"}},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the archive to this file (mode 0600) instead of stdout"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return fmt.Errorf("backup takes no arguments (got %q); use --output FILE or redirect stdout", c.Args().First())
			}
			log, err := logger(c)
			if err != nil {
				return err
			}
			var out io.Writer = os.Stdout
			file := c.String("output")
			if file == "" && term.IsTerminal(int(os.Stdout.Fd())) {
				return errors.New("the archive is binary and holds secrets: redirect stdout to a file or use --output FILE")
			}
			var f *os.File
			if file != "" {
				// O_EXCL: never overwrite an earlier backup by mistake.
				f, err = os.OpenFile(file, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
				if err != nil {
					return fmt.Errorf("--output: %w", err)
				}
				out = f
			}
			m, err := backup.Write(c.Context, backup.Config{
				DataDir: c.String("data"), DatabaseURL: c.String("database-url"), Version: version, Logger: log,
			}, out)
			if f != nil {
				if cerr := f.Close(); err == nil {
					err = cerr
				}
				if err != nil {
					os.Remove(file)
				}
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "Backed up cluster %s: database %d bytes, repositories %d bytes\n", m.Cluster, m.DumpBytes, m.GitBytes)
			return nil
		},
	}
}

func restoreCommand() *cli.Command {
	return &cli.Command{
		Name:      "restore",
		Usage:     "fill a new data directory from a backup; then gantryd up --data DIR brings every app back",
		UsageText: "gantryd restore FILE --data NEWDIR   (FILE - reads stdin)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "data", Usage: "the new data directory (must be empty or missing); required"},
			&cli.StringFlag{Name: "database-url", Usage: "restore into this empty external PostgreSQL database instead of a private one", EnvVars: []string{"GANTRY_DATABASE_URL"}},
		},
		Action: func(c *cli.Context) error {
			file, dataDir, err := restoreArgs(c)
			if err != nil {
				return err
			}
			log, err := logger(c)
			if err != nil {
				return err
			}
			var in io.Reader = os.Stdin
			if file != "-" {
				f, err := os.Open(file)
				if err != nil {
					return fmt.Errorf("backup file: %w", err)
				}
				defer f.Close()
				in = f
			}
			m, err := backup.Restore(c.Context, backup.Config{DataDir: dataDir, DatabaseURL: c.String("database-url"), Logger: log}, in)
			if err != nil {
				return err
			}
			fmt.Printf("Restored cluster %s (backed up %s by gantryd %s) into %s\n", m.Cluster, m.Created.Format("2006-01-02 15:04:05Z"), m.Version, dataDir)
			fmt.Printf("Start it with: gantryd up --data %s\n", dataDir)
			return nil
		},
	}
}

// restoreArgs returns restore's file and data dir. The flag may come
// before or after the file (`gantryd restore FILE --data NEWDIR`, as the
// docs write it); the flag parser stops at the first argument, so a
// trailing --data is read here.
func restoreArgs(c *cli.Context) (file, dataDir string, err error) {
	const usage = "usage: gantryd restore FILE --data NEWDIR (FILE - reads stdin)"
	args := c.Args().Slice()
	dataDir = c.String("data")
	if len(args) == 3 && (args[1] == "--data" || args[1] == "-data") && dataDir == "" {
		args, dataDir = args[:1], args[2]
	} else if len(args) == 2 && dataDir == "" {
		if v, ok := strings.CutPrefix(args[1], "--data="); ok {
			args, dataDir = args[:1], v
		}
	}
	switch {
	case len(args) != 1:
		return "", "", fmt.Errorf("restore takes one backup file, got %d arguments; %s", len(args), usage)
	case dataDir == "":
		return "", "", errors.New("no --data: " + usage)
	}
	return args[0], dataDir, nil
}
