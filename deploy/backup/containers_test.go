package backup

import (
	"bytes"
	"context"
	"crypto/rand"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gantryhq/gantry/deploy/node"
	"github.com/gantryhq/gantry/deploy/pgserver"
	"github.com/gantryhq/gantry/deploy/stack"
	"github.com/gantryhq/gantry/deploy/testenv"
	"github.com/gantryhq/gantry/layer0/clustertls"
)

// TestWriteContainers backs up a platform as containers: pg_dump reaches
// its PostgreSQL container over TLS (verify-full against the host's
// cluster CA) with the URL in database-url, and the dump restores.
func TestWriteContainers(t *testing.T) {
	docker := testenv.Docker(t) // skips under -short
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Minute)
	defer cancel()
	if err := stack.Build(ctx, stack.Config{Version: stack.DefaultVersion, Docker: docker, Progress: t.Output(),
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))}); err != nil {
		t.Fatalf("build the images of %s: %v", stack.DefaultVersion, err)
	}
	cluster := "bktest-" + strings.ToLower(rand.Text()[:10])
	testenv.CleanupContainers(t, docker, cluster)

	src := t.TempDir()
	for name, content := range map[string]string{
		clusterIDFile: cluster + "\n",
		hostTokenFile: "host-secret\n",
		adminEnvFile:  "GANTRY_URL=http://127.0.0.1:7070\nGANTRY_TOKEN=admin-secret\n",
	} {
		if err := os.WriteFile(filepath.Join(src, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tlsDir := filepath.Join(src, node.TLSDir)
	if err := clustertls.Init(tlsDir, clustertls.Host{ID: "h1", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}); err != nil {
		t.Fatal(err)
	}
	pg, err := pgserver.StartContainer(t.Context(), pgserver.ContainerConfig{
		Dir: filepath.Join(src, postgresDir), Docker: docker, Image: stack.PostgresRef(stack.DefaultVersion),
		Cluster: cluster, HostID: "h1", Addr: testenv.FreeAddr(t), TLSDir: tlsDir, DisableFsync: true, StartTimeout: 2 * time.Minute,
	})
	if err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
	t.Cleanup(func() {
		if err := pg.Stop(context.Background()); err != nil {
			t.Errorf("stop postgres: %v", err)
		}
	})
	if err := pg.CreateDatabase(t.Context(), DatabaseName); err != nil {
		t.Fatal(err)
	}
	withConn(t, pg.URL(DatabaseName), func(ctx context.Context, conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, `CREATE TABLE apps (name text PRIMARY KEY); INSERT INTO apps VALUES ('over-tls')`)
		return err
	})
	if err := os.WriteFile(filepath.Join(src, node.DatabaseURLFile), []byte(pg.URL(DatabaseName)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	var archive bytes.Buffer
	m, err := Write(t.Context(), Config{DataDir: src, Version: "v-test"}, &archive)
	if err != nil {
		t.Fatal(err)
	}
	if m.DumpBytes == 0 {
		t.Fatalf("manifest: %+v", m)
	}
	dst := filepath.Join(t.TempDir(), "restored")
	if _, err := Restore(t.Context(), Config{DataDir: dst}, &archive); err != nil {
		t.Fatal(err)
	}
	srv := startPG(t, filepath.Join(dst, postgresDir))
	withConn(t, srv.URL(DatabaseName), func(ctx context.Context, conn *pgx.Conn) error {
		var name string
		if err := conn.QueryRow(ctx, `SELECT name FROM apps`).Scan(&name); err != nil {
			return err
		}
		if name != "over-tls" {
			t.Errorf("restored row %q, want over-tls", name)
		}
		return nil
	})

	// Without its container the backup fails and says why.
	if err := pg.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := Write(t.Context(), Config{DataDir: src}, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "container must run") {
		t.Fatalf("Write with the PostgreSQL container stopped: err = %v, want one saying the container must run", err)
	} else if u, _ := url.Parse(pg.URL(DatabaseName)); u != nil {
		if pw, _ := u.User.Password(); strings.Contains(err.Error(), pw) {
			t.Errorf("the error shows the password: %v", err)
		}
	}
}
