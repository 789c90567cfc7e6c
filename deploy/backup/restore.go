package backup

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/gantryhq/gantry/deploy/pgserver"
	"github.com/gantryhq/gantry/slugrunner"
)

// Limits of what Restore reads from an archive.
const (
	maxManifestSize = 64 << 10
	maxDumpSize     = 64 << 30
	maxGitSize      = 64 << 30
	maxGitEntries   = 2_000_000
)

// Restore fills cfg.DataDir, which must be empty or missing, from the
// archive read from r, so that `gantryd up --data DIR` brings the platform
// back. With cfg.DatabaseURL it restores the database into that (empty)
// database instead of a new private server. On error the data dir holds a
// partial restore and should be removed.
func Restore(ctx context.Context, cfg Config, r io.Reader) (Manifest, error) {
	if err := cfg.Validate(); err != nil {
		return Manifest{}, err
	}
	log := cfg.logger()
	if err := emptyDir(cfg.DataDir); err != nil {
		return Manifest{}, err
	}
	zr, err := gzip.NewReader(r)
	if err != nil {
		return Manifest{}, fmt.Errorf("restore: %w: %v", ErrBadArchive, err)
	}
	tr := tar.NewReader(zr)
	var m Manifest
	seen := map[string]bool{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Manifest{}, fmt.Errorf("restore: read archive: %w", err)
		}
		if hdr.Typeflag != tar.TypeReg {
			return Manifest{}, fmt.Errorf("restore: %w: entry %q is not a regular file", ErrBadArchive, hdr.Name)
		}
		if seen[hdr.Name] {
			return Manifest{}, fmt.Errorf("restore: %w: entry %q twice", ErrBadArchive, hdr.Name)
		}
		seen[hdr.Name] = true
		if hdr.Name != manifestEntry && !seen[manifestEntry] {
			return Manifest{}, fmt.Errorf("restore: %w: the archive does not start with %s", ErrBadArchive, manifestEntry)
		}
		switch {
		case hdr.Name == manifestEntry:
			b, err := readAll(tr, hdr, maxManifestSize)
			if err != nil {
				return Manifest{}, err
			}
			if err := json.Unmarshal(b, &m); err != nil {
				return Manifest{}, fmt.Errorf("restore: %w: manifest: %v", ErrBadArchive, err)
			}
			if m.Format != FormatVersion {
				return Manifest{}, fmt.Errorf("restore: %w: format %d, this gantryd reads format %d", ErrBadArchive, m.Format, FormatVersion)
			}
			log.Info("restoring", "cluster", m.Cluster, "created", m.Created, "by", m.Version)
		case strings.HasPrefix(hdr.Name, identityDir):
			if err := restoreIdentity(cfg.DataDir, tr, hdr); err != nil {
				return Manifest{}, err
			}
		case hdr.Name == dumpEntry:
			if err := restoreDatabase(ctx, cfg, tr, hdr); err != nil {
				return Manifest{}, err
			}
			log.Info("database restored")
		case hdr.Name == gitEntry:
			if hdr.Size > maxGitSize {
				return Manifest{}, fmt.Errorf("restore: %w: %s of %d bytes", ErrBadArchive, gitEntry, hdr.Size)
			}
			dir := filepath.Join(cfg.DataDir, gitRepos)
			if err := slugrunner.Unpack(tr, dir, slugrunner.Limits{MaxBytes: maxGitSize, MaxEntries: maxGitEntries}); err != nil {
				return Manifest{}, fmt.Errorf("restore: git repositories: %w", err)
			}
		default:
			return Manifest{}, fmt.Errorf("restore: %w: unknown entry %q", ErrBadArchive, hdr.Name)
		}
	}
	for _, name := range []string{manifestEntry, dumpEntry, gitEntry} {
		if !seen[name] {
			return Manifest{}, fmt.Errorf("restore: %w: no %s (a cut archive?)", ErrBadArchive, name)
		}
	}
	for _, f := range identityFiles {
		if f.required && !seen[identityDir+f.entry] {
			return Manifest{}, fmt.Errorf("restore: %w: no %s", ErrBadArchive, identityDir+f.entry)
		}
	}
	return m, nil
}

// emptyDir creates dir (mode 0700) or checks that it is empty.
func emptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if len(entries) > 0 {
		return fmt.Errorf("restore: %s: %w (restore into a new directory)", dir, ErrNotEmpty)
	}
	return nil
}

func readAll(tr *tar.Reader, hdr *tar.Header, limit int64) ([]byte, error) {
	if hdr.Size > limit {
		return nil, fmt.Errorf("restore: %w: %s of %d bytes, at most %d", ErrBadArchive, hdr.Name, hdr.Size, limit)
	}
	b, err := io.ReadAll(io.LimitReader(tr, limit))
	if err != nil {
		return nil, fmt.Errorf("restore: read %s: %w", hdr.Name, err)
	}
	return b, nil
}

func restoreIdentity(dataDir string, tr *tar.Reader, hdr *tar.Header) error {
	name := strings.TrimPrefix(hdr.Name, identityDir)
	for _, f := range identityFiles {
		if f.entry != name {
			continue
		}
		b, err := readAll(tr, hdr, maxIdentitySize)
		if err != nil {
			return err
		}
		file := filepath.Join(dataDir, f.file)
		if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		if err := os.WriteFile(file, b, 0o600); err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		return nil
	}
	return fmt.Errorf("restore: %w: unknown entry %q", ErrBadArchive, hdr.Name)
}

// restoreDatabase copies the dump to a file (pg_restore reads a custom
// dump by seeking) and restores it into the private server, which it
// creates, or into cfg.DatabaseURL.
func restoreDatabase(ctx context.Context, cfg Config, tr *tar.Reader, hdr *tar.Header) error {
	if hdr.Size > maxDumpSize {
		return fmt.Errorf("restore: %w: %s of %d bytes", ErrBadArchive, dumpEntry, hdr.Size)
	}
	bins, err := pgserver.FindBinaries()
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	pgRestore, err := bins.Tool("pg_restore")
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	tmp, err := os.CreateTemp(cfg.DataDir, ".restore-*.dump")
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, io.LimitReader(tr, maxDumpSize)); err != nil {
		tmp.Close()
		return fmt.Errorf("restore: read %s: %w", dumpEntry, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	url := cfg.DatabaseURL
	if url == "" {
		srv, err := pgserver.Start(ctx, pgserver.Config{Dir: filepath.Join(cfg.DataDir, postgresDir), Logger: cfg.logger().With("component", "postgres")})
		if err != nil {
			return fmt.Errorf("restore: start PostgreSQL: %w", err)
		}
		defer stopServer(srv, cfg.logger())
		if err := srv.CreateDatabase(ctx, DatabaseName); err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		url = srv.URL(DatabaseName)
	}
	return runPG(ctx, pgRestore, "--no-owner", "--exit-on-error", "--single-transaction", "--dbname="+url, tmp.Name())
}
