package backup

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gantryhq/gantry/deploy/node"
	"github.com/gantryhq/gantry/deploy/pgserver"
	"github.com/gantryhq/gantry/layer0/clustertls"
	"github.com/gantryhq/gantry/slugrunner"
)

// newDataDir lays out a data dir as gantryd up does: identity files, a git
// repository, and a private PostgreSQL with a table and a large object.
func newDataDir(t *testing.T) (dir string, loData []byte, srv *pgserver.Server) {
	t.Helper()
	dir = t.TempDir()
	for name, content := range map[string]string{
		clusterIDFile:  "c-0123abcd\n",
		hostTokenFile:  "host-secret\n",
		adminEnvFile:   "GANTRY_URL=http://127.0.0.1:7070\nGANTRY_TOKEN=admin-secret\n",
		gitHostKey:     "-----BEGIN OPENSSH PRIVATE KEY-----\nkey\n",
		secretsKeyFile: "0123456789abcdef0123456789abcdef",
		filepath.Join(node.TLSDir, clustertls.CACertFile):            "ca certificate",
		filepath.Join(node.TLSDir, clustertls.CAKeyFile):             "ca key",
		filepath.Join(node.TLSDir, clustertls.HostCertFile):          "host certificate",
		filepath.Join(node.TLSDir, clustertls.HostKeyFile):           "host key",
		filepath.Join(gitRepos, "demo.git", "HEAD"):                  "ref: refs/heads/main\n",
		filepath.Join(gitRepos, "demo.git", "refs", "heads", "main"): "0123456789012345678901234567890123456789\n",
	} {
		file := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	srv = startPG(t, filepath.Join(dir, postgresDir))
	if err := srv.CreateDatabase(t.Context(), DatabaseName); err != nil {
		t.Fatal(err)
	}
	loData = bytes.Repeat([]byte("slug bytes "), 10_000)
	withConn(t, srv.URL(DatabaseName), func(ctx context.Context, conn *pgx.Conn) error {
		if _, err := conn.Exec(ctx, `CREATE TABLE apps (name text PRIMARY KEY, lo oid)`); err != nil {
			return err
		}
		tx, err := conn.Begin(ctx)
		if err != nil {
			return err
		}
		los := tx.LargeObjects()
		oid, err := los.Create(ctx, 0)
		if err != nil {
			return err
		}
		obj, err := los.Open(ctx, oid, pgx.LargeObjectModeWrite)
		if err != nil {
			return err
		}
		if _, err := obj.Write(loData); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO apps VALUES ('demo', $1)`, oid); err != nil {
			return err
		}
		return tx.Commit(ctx)
	})
	return dir, loData, srv
}

func startPG(t *testing.T, dir string) *pgserver.Server {
	t.Helper()
	srv, err := pgserver.Start(t.Context(), pgserver.Config{Dir: dir, DisableFsync: true, StartTimeout: 2 * time.Minute})
	if err != nil {
		t.Fatalf("PostgreSQL is required: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		srv.Stop(ctx)
	})
	return srv
}

func withConn(t *testing.T, url string, fn func(context.Context, *pgx.Conn) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if err := fn(ctx, conn); err != nil {
		t.Fatal(err)
	}
}

func TestWriteRestore(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	// The platform's server stays up: Write dumps a running database.
	src, loData, _ := newDataDir(t)
	var archive bytes.Buffer
	m, err := Write(t.Context(), Config{DataDir: src, Version: "v-test"}, &archive)
	if err != nil {
		t.Fatal(err)
	}
	if m.Cluster != "c-0123abcd" || m.Format != FormatVersion || m.DumpBytes == 0 || m.GitBytes == 0 {
		t.Fatalf("manifest: %+v", m)
	}
	if entries, _ := filepath.Glob(filepath.Join(src, ".backup-*")); len(entries) > 0 {
		t.Errorf("temporary files left in the data dir: %v", entries)
	}

	dst := filepath.Join(t.TempDir(), "restored")
	got, err := Restore(t.Context(), Config{DataDir: dst}, bytes.NewReader(archive.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if got.Cluster != m.Cluster || got.Version != "v-test" {
		t.Errorf("restored manifest %+v, want %+v", got, m)
	}
	for _, name := range []string{clusterIDFile, hostTokenFile, adminEnvFile, gitHostKey, secretsKeyFile,
		filepath.Join(node.TLSDir, clustertls.CACertFile), filepath.Join(node.TLSDir, clustertls.CAKeyFile),
		filepath.Join(gitRepos, "demo.git", "refs", "heads", "main")} {
		want, _ := os.ReadFile(filepath.Join(src, name))
		b, err := os.ReadFile(filepath.Join(dst, name))
		if err != nil || !bytes.Equal(b, want) {
			t.Errorf("%s: %q, %v; want %q", name, b, err, want)
		}
		if fi, err := os.Stat(filepath.Join(dst, name)); err == nil && fi.Mode().Perm()&0o077 != 0 && !strings.HasPrefix(name, gitRepos) {
			t.Errorf("%s has mode %v: secrets must not be readable by others", name, fi.Mode().Perm())
		}
	}
	for _, name := range []string{"host-id", filepath.Join(node.TLSDir, clustertls.HostCertFile), filepath.Join(node.TLSDir, clustertls.HostKeyFile)} {
		if _, err := os.Stat(filepath.Join(dst, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s restored (%v): a restore is a new host", name, err)
		}
	}

	// The restored database has the row and the large object, at the same
	// OID.
	srv := startPG(t, filepath.Join(dst, postgresDir))
	withConn(t, srv.URL(DatabaseName), func(ctx context.Context, conn *pgx.Conn) error {
		var oid uint32
		if err := conn.QueryRow(ctx, `SELECT lo FROM apps WHERE name = 'demo'`).Scan(&oid); err != nil {
			return err
		}
		tx, err := conn.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx)
		los := tx.LargeObjects()
		obj, err := los.Open(ctx, oid, pgx.LargeObjectModeRead)
		if err != nil {
			return err
		}
		var b bytes.Buffer
		if _, err := b.ReadFrom(obj); err != nil {
			return err
		}
		if !bytes.Equal(b.Bytes(), loData) {
			t.Errorf("large object: %d bytes, want %d", b.Len(), len(loData))
		}
		return nil
	})
}

// TestWriteStoppedPlatform backs up a data dir whose PostgreSQL is not
// running: Write starts it for the dump and stops it again.
func TestWriteStoppedPlatform(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	src, _, srv := newDataDir(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := srv.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	var archive bytes.Buffer
	if _, err := Write(t.Context(), Config{DataDir: src}, &archive); err != nil {
		t.Fatal(err)
	}
	if pgserver.Running(filepath.Join(src, postgresDir)) {
		t.Error("Write left the PostgreSQL it started running")
	}
	if _, err := Restore(t.Context(), Config{DataDir: filepath.Join(t.TempDir(), "restored")}, &archive); err != nil {
		t.Fatal(err)
	}
}

// archiveOf builds a gzip'd tar of the given entries, in order.
func archiveOf(t *testing.T, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		if err := tw.WriteHeader(&tar.Header{Name: e.name, Typeflag: typ, Linkname: e.link, Mode: 0o600, Size: int64(len(e.body))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.body); err != nil {
			t.Fatal(err)
		}
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

type tarEntry struct {
	name string
	typ  byte
	link string
	body []byte
}

func plainTar(t *testing.T, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		if err := tw.WriteHeader(&tar.Header{Name: e.name, Typeflag: typ, Linkname: e.link, Mode: 0o600, Size: int64(len(e.body))}); err != nil {
			t.Fatal(err)
		}
		tw.Write(e.body)
	}
	tw.Close()
	return buf.Bytes()
}

// TestRestoreRefuses covers archives that must be refused before anything
// reaches PostgreSQL or outside the data dir.
func TestRestoreRefuses(t *testing.T) {
	manifest := tarEntry{name: manifestEntry, body: []byte(`{"format":1,"cluster":"c-1"}`)}
	for _, tc := range []struct {
		name    string
		archive func(t *testing.T) []byte
		want    error
		wantMsg string
	}{
		{"not gzip", func(*testing.T) []byte { return []byte("hello") }, ErrBadArchive, "not a Gantry backup"},
		{"no manifest first", func(t *testing.T) []byte {
			return archiveOf(t, tarEntry{name: identityDir + "cluster-id", body: []byte("c-1")})
		}, ErrBadArchive, "does not start with manifest.json"},
		{"future format", func(t *testing.T) []byte {
			return archiveOf(t, tarEntry{name: manifestEntry, body: []byte(`{"format":99}`)})
		}, ErrBadArchive, "format 99"},
		{"unknown entry", func(t *testing.T) []byte {
			return archiveOf(t, manifest, tarEntry{name: "../../etc/passwd", body: []byte("x")})
		}, ErrBadArchive, "unknown entry"},
		{"unknown identity file", func(t *testing.T) []byte {
			return archiveOf(t, manifest, tarEntry{name: identityDir + "../../x", body: []byte("x")})
		}, ErrBadArchive, "unknown entry"},
		{"symlink entry", func(t *testing.T) []byte {
			return archiveOf(t, manifest, tarEntry{name: gitEntry, typ: tar.TypeSymlink, link: "/etc"})
		}, ErrBadArchive, "not a regular file"},
		{"duplicate entry", func(t *testing.T) []byte {
			return archiveOf(t, manifest, manifest)
		}, ErrBadArchive, "twice"},
		{"repository escaping the data dir", func(t *testing.T) []byte {
			return archiveOf(t, manifest, tarEntry{name: gitEntry, body: plainTar(t, tarEntry{name: "../escaped", body: []byte("x")})})
		}, slugrunner.ErrUnsafeEntry, "escape"},
		{"repository symlink out", func(t *testing.T) []byte {
			return archiveOf(t, manifest, tarEntry{name: gitEntry, body: plainTar(t,
				tarEntry{name: "demo.git", typ: tar.TypeSymlink, link: "/etc"},
				tarEntry{name: "demo.git/passwd", body: []byte("x")})})
		}, slugrunner.ErrUnsafeEntry, ""},
		{"cut archive", func(t *testing.T) []byte {
			return archiveOf(t, manifest, tarEntry{name: gitEntry, body: plainTar(t)})
		}, ErrBadArchive, "no postgres.dump"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			dst := filepath.Join(parent, "data")
			_, err := Restore(t.Context(), Config{DataDir: dst}, bytes.NewReader(tc.archive(t)))
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("Restore: %v, want %v naming %q", err, tc.want, tc.wantMsg)
			}
			entries, _ := os.ReadDir(parent)
			for _, e := range entries {
				if e.Name() != "data" {
					t.Errorf("%s written outside the data dir", e.Name())
				}
			}
		})
	}

	t.Run("data dir not empty", func(t *testing.T) {
		dst := t.TempDir()
		os.WriteFile(filepath.Join(dst, "cluster-id"), []byte("c-other"), 0o600)
		_, err := Restore(t.Context(), Config{DataDir: dst}, bytes.NewReader(archiveOf(t, manifest)))
		if !errors.Is(err, ErrNotEmpty) {
			t.Fatalf("Restore into a used data dir: %v, want ErrNotEmpty", err)
		}
		if b, _ := os.ReadFile(filepath.Join(dst, "cluster-id")); string(b) != "c-other" {
			t.Errorf("the existing data dir was changed: cluster-id %q", b)
		}
	})
}
