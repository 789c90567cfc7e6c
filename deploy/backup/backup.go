package backup

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/gantryhq/gantry/deploy/node"
	"github.com/gantryhq/gantry/deploy/pgserver"
	"github.com/gantryhq/gantry/layer0/clustertls"
)

// FormatVersion is the archive format that Write produces and Restore
// reads.
const FormatVersion = 1

// Entry names in the archive.
const (
	manifestEntry = "manifest.json"
	identityDir   = "identity/"
	dumpEntry     = "postgres.dump"
	gitEntry      = "git.tar"
)

// Layout of a data dir (see deploy/node) that a backup covers.
const (
	clusterIDFile = node.ClusterIDFile
	hostTokenFile = node.HostTokenFile
	adminEnvFile  = node.AdminEnvFile
	// secretsKeyFile seals the private keys stored in PostgreSQL; without
	// it a restored platform cannot open them.
	secretsKeyFile = node.SecretsKeyFile
	gitHostKey     = node.GitHostKeyFile
	gitRepos       = node.GitReposDir
	postgresDir    = node.PostgresDir
	// DatabaseName is the controller's database on the private server.
	DatabaseName = "gantry"
)

// identityFiles maps the identity entries to their place in the data dir.
// Each is required except the git host key, which exists only once the
// git receiver has started, and the secrets key and the cluster CA, which
// data dirs made before them lack. The host's own certificate is left out:
// a restore is a new host, which gets a certificate of the restored CA.
var identityFiles = []struct {
	entry, file string
	required    bool
}{
	{"cluster-id", clusterIDFile, true},
	{"host-token", hostTokenFile, true},
	{"admin.env", adminEnvFile, true},
	{"git-host-key", gitHostKey, false},
	{"secrets.key", secretsKeyFile, false},
	{"cluster-ca.crt", path.Join(node.TLSDir, clustertls.CACertFile), false},
	{"cluster-ca.key", path.Join(node.TLSDir, clustertls.CAKeyFile), false},
}

// maxIdentitySize bounds each identity file, in bytes.
const maxIdentitySize = 64 << 10

// dumpTimeout bounds pg_dump and pg_restore.
const dumpTimeout = 30 * time.Minute

// ErrNotEmpty means that Restore's data dir already holds files.
var ErrNotEmpty = errors.New("data dir is not empty")

// ErrBadArchive means that the archive is not a Gantry backup this version
// can read.
var ErrBadArchive = errors.New("not a Gantry backup archive")

// Manifest describes an archive.
type Manifest struct {
	// Format is FormatVersion of the gantryd that wrote it.
	Format int `json:"format"`
	// Cluster is the cluster ID.
	Cluster string `json:"cluster"`
	// Version is the version of the gantryd that wrote it.
	Version string `json:"gantryd_version"`
	// Created is when the backup started.
	Created time.Time `json:"created"`
	// DumpBytes and GitBytes are the sizes of the database dump and of the
	// repositories' tar, in bytes.
	DumpBytes int64 `json:"dump_bytes"`
	GitBytes  int64 `json:"git_bytes"`
}

// Config configures Write and Restore.
type Config struct {
	// DataDir is the platform's data dir (Write) or the new, empty or
	// missing, data dir to fill (Restore). Required.
	DataDir string
	// DatabaseURL is the controller's database when it is external
	// (gantryd up --database-url). Empty means the platform's own: for a
	// platform as containers the URL in DataDir/database-url (its
	// PostgreSQL container must run); otherwise the private server in
	// DataDir/postgres, which Write connects to when it runs and starts
	// for the time of the dump when it does not. Restore creates a
	// private server.
	DatabaseURL string
	// Version is gantryd's version, recorded in the manifest.
	Version string
	// Logger receives progress; nil discards it.
	Logger *slog.Logger
}

// Validate reports missing fields.
func (c Config) Validate() error {
	if c.DataDir == "" {
		return errors.New("backup: no data dir")
	}
	return nil
}

func (c Config) logger() *slog.Logger {
	if c.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Logger
}

// Write writes a backup archive of the platform in cfg.DataDir to w and
// returns its manifest. The platform may be running.
func Write(ctx context.Context, cfg Config, w io.Writer) (Manifest, error) {
	if err := cfg.Validate(); err != nil {
		return Manifest{}, err
	}
	log := cfg.logger()
	m := Manifest{Format: FormatVersion, Version: cfg.Version, Created: time.Now().UTC()}
	id, err := os.ReadFile(filepath.Join(cfg.DataDir, clusterIDFile))
	if err != nil {
		return Manifest{}, fmt.Errorf("backup: %s is not a Gantry data dir: %w", cfg.DataDir, err)
	}
	m.Cluster = strings.TrimSpace(string(id))

	tmp, err := os.MkdirTemp(cfg.DataDir, ".backup-")
	if err != nil {
		return Manifest{}, fmt.Errorf("backup: temporary dir: %w", err)
	}
	defer os.RemoveAll(tmp)

	dump := filepath.Join(tmp, dumpEntry)
	if err := dumpDatabase(ctx, cfg, dump); err != nil {
		return Manifest{}, err
	}
	log.Info("database dumped", "file", dump)
	gitTar := filepath.Join(tmp, gitEntry)
	if err := tarDir(filepath.Join(cfg.DataDir, gitRepos), gitTar); err != nil {
		return Manifest{}, fmt.Errorf("backup: git repositories: %w", err)
	}
	for _, f := range []struct {
		path string
		size *int64
	}{{dump, &m.DumpBytes}, {gitTar, &m.GitBytes}} {
		fi, err := os.Stat(f.path)
		if err != nil {
			return Manifest{}, fmt.Errorf("backup: %w", err)
		}
		*f.size = fi.Size()
	}

	zw, err := gzip.NewWriterLevel(w, gzip.BestSpeed)
	if err != nil {
		return Manifest{}, fmt.Errorf("backup: gzip: %w", err)
	}
	tw := tar.NewWriter(zw)
	mj, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return Manifest{}, fmt.Errorf("backup: manifest: %w", err)
	}
	if err := addBytes(tw, manifestEntry, mj); err != nil {
		return Manifest{}, err
	}
	for _, f := range identityFiles {
		b, err := os.ReadFile(filepath.Join(cfg.DataDir, f.file))
		if errors.Is(err, fs.ErrNotExist) && !f.required {
			continue
		}
		if err != nil {
			return Manifest{}, fmt.Errorf("backup: identity: %w", err)
		}
		if err := addBytes(tw, identityDir+f.entry, b); err != nil {
			return Manifest{}, err
		}
	}
	for _, name := range []string{dumpEntry, gitEntry} {
		if err := addFile(tw, name, filepath.Join(tmp, name)); err != nil {
			return Manifest{}, err
		}
	}
	if err := tw.Close(); err != nil {
		return Manifest{}, fmt.Errorf("backup: write archive: %w", err)
	}
	if err := zw.Close(); err != nil {
		return Manifest{}, fmt.Errorf("backup: write archive: %w", err)
	}
	return m, nil
}

// dumpDatabase runs pg_dump into file: on cfg.DatabaseURL, else on the
// URL of a platform as containers, else on the private server, which it
// starts for the time of the dump when it is not running.
func dumpDatabase(ctx context.Context, cfg Config, file string) error {
	bins, err := pgserver.FindBinaries()
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	pgDump, err := bins.Tool("pg_dump")
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	url := cfg.DatabaseURL
	if url == "" {
		// A platform as containers: the URL (over TLS, with this host's
		// CA) of its PostgreSQL container.
		b, err := os.ReadFile(filepath.Join(cfg.DataDir, node.DatabaseURLFile))
		switch {
		case err == nil:
			err := runPG(ctx, pgDump, "--format=custom", "--no-owner", "--file="+file, "--dbname="+strings.TrimSpace(string(b)))
			if err != nil {
				return fmt.Errorf("%w (the platform's PostgreSQL container must run: gantryd up)", err)
			}
			return nil
		case !errors.Is(err, fs.ErrNotExist):
			return fmt.Errorf("backup: the database URL: %w", err)
		}
	}
	if url == "" {
		dir := filepath.Join(cfg.DataDir, postgresDir)
		if !pgserver.Running(dir) {
			srv, err := pgserver.Start(ctx, pgserver.Config{Dir: dir, Logger: cfg.logger().With("component", "postgres")})
			if err != nil {
				return fmt.Errorf("backup: start the platform's PostgreSQL: %w", err)
			}
			defer stopServer(srv, cfg.logger())
		}
		url = pgserver.SocketURL(dir, DatabaseName)
	}
	return runPG(ctx, pgDump, "--format=custom", "--no-owner", "--file="+file, "--dbname="+url)
}

// runPG runs one of PostgreSQL's client programs and returns its output in
// the error when it fails. The password of a --dbname URL goes to the
// program in its environment (PGPASSWORD), not on its command line, which
// every user of the machine can read.
func runPG(ctx context.Context, prog string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, dumpTimeout)
	defer cancel()
	args = slices.Clone(args)
	env := os.Environ()
	for i, a := range args {
		dsn, ok := strings.CutPrefix(a, "--dbname=")
		if !ok {
			continue
		}
		u, err := url.Parse(dsn)
		if err != nil || u.User == nil {
			continue
		}
		if pw, set := u.User.Password(); set {
			u.User = url.User(u.User.Username())
			args[i] = "--dbname=" + u.String()
			env = append(env, "PGPASSWORD="+pw)
		}
	}
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("backup: %s: %w: %s", filepath.Base(prog), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func stopServer(srv *pgserver.Server, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := srv.Stop(ctx); err != nil {
		log.Error("stop postgres", "err", err)
	}
}

func addBytes(tw *tar.Writer, name string, b []byte) error {
	hdr := &tar.Header{Name: name, Mode: 0o600, Size: int64(len(b)), ModTime: time.Now(), Typeflag: tar.TypeReg}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("backup: write %s: %w", name, err)
	}
	if _, err := tw.Write(b); err != nil {
		return fmt.Errorf("backup: write %s: %w", name, err)
	}
	return nil
}

func addFile(tw *tar.Writer, name, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	hdr := &tar.Header{Name: name, Mode: 0o600, Size: fi.Size(), ModTime: fi.ModTime(), Typeflag: tar.TypeReg}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("backup: write %s: %w", name, err)
	}
	if _, err := io.Copy(tw, f); err != nil {
		return fmt.Errorf("backup: write %s: %w", name, err)
	}
	return nil
}

// tarDir writes a plain tar of the tree under dir (regular files,
// directories and symbolic links, with names relative to dir) to file. A
// missing dir gives an empty archive.
func tarDir(dir, file string) error {
	out, err := os.OpenFile(file, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer out.Close()
	tw := tar.NewWriter(out)
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && path == dir {
			return fs.SkipAll
		}
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil || rel == "." {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			// A file removed while the backup runs (git's lock and
			// temporary files) is not part of it.
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		link := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(path); err != nil {
				return err
			}
		} else if !fi.Mode().IsRegular() && !fi.IsDir() {
			return nil // sockets, fifos: nothing a repository needs
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if fi.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		if !fi.Mode().IsRegular() {
			return tw.WriteHeader(hdr)
		}
		f, err := os.Open(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		defer f.Close()
		// The size in the header is the one the file had when it was
		// listed: copy exactly that many bytes.
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		n, err := io.Copy(tw, io.LimitReader(f, hdr.Size))
		if err == nil && n < hdr.Size {
			err = fmt.Errorf("%s shrank while it was read", path)
		}
		return err
	})
	if err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return out.Close()
}
