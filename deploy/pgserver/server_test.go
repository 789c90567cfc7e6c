package pgserver

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// startServer starts a server in dir and stops it when the test ends.
func startServer(t *testing.T, dir string) *Server {
	t.Helper()
	if testing.Short() {
		t.Skip("starts PostgreSQL; skipped under -short")
	}
	s, err := Start(t.Context(), Config{Dir: dir, DisableFsync: true})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Stop(context.Background()); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return s
}

func query(t *testing.T, url, sql string, args ...any) string {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	defer conn.Close(context.Background())
	var out string
	if err := conn.QueryRow(t.Context(), sql, args...).Scan(&out); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return out
}

func exec1(t *testing.T, url, sql string) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(t.Context(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func TestStartStopRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := startServer(t, dir)
	if err := s.CreateDatabase(t.Context(), "gantry"); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateDatabase(t.Context(), "gantry"); err != nil {
		t.Fatalf("CreateDatabase of an existing database: %v", err)
	}
	exec1(t, s.URL("gantry"), "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('still here')")
	if got := query(t, s.URL("gantry"), "SHOW server_encoding"); got != "UTF8" {
		t.Errorf("server_encoding = %q, want UTF8", got)
	}
	if got := query(t, s.URL("gantry"), "SHOW listen_addresses"); got != "" {
		t.Errorf("listen_addresses = %q, want empty (no TCP)", got)
	}

	if err := s.Stop(t.Context()); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	select {
	case <-s.Done():
	default:
		t.Fatal("Done not closed after Stop")
	}
	if err := s.Stop(t.Context()); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if _, err := pgx.Connect(t.Context(), s.URL("gantry")); err == nil {
		t.Fatal("connected to a stopped server")
	}

	s2 := startServer(t, dir)
	if got := query(t, s2.URL("gantry"), "SELECT v FROM kept"); got != "still here" {
		t.Fatalf("after restart got %q", got)
	}
	if err := s2.DropDatabase(t.Context(), "gantry"); err != nil {
		t.Fatal(err)
	}
	if got := query(t, s2.URL("postgres"), "SELECT count(*)::text FROM pg_database WHERE datname = 'gantry'"); got != "0" {
		t.Fatalf("database still listed after DropDatabase: %s", got)
	}
	if log, err := os.ReadFile(s2.LogPath()); err != nil || !strings.Contains(string(log), "database system is ready") {
		t.Errorf("log %s lacks the server output (err %v)", s2.LogPath(), err)
	}
}

func TestLiveServerOnSameDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := startServer(t, dir)
	_, err := Start(t.Context(), Config{Dir: dir, DisableFsync: true})
	if !errors.Is(err, ErrAlreadyRunning) {
		t.Fatalf("second Start on a live dir: err = %v, want ErrAlreadyRunning", err)
	}
	if !strings.Contains(err.Error(), strconv.Itoa(s.pid)) {
		t.Errorf("error %q does not name pid %d", err, s.pid)
	}
	// The first server is untouched.
	if got := query(t, s.URL("postgres"), "SELECT 'ok'"); got != "ok" {
		t.Fatal(got)
	}
}

func TestStalePidFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := startServer(t, dir)
	if err := s.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	// A postmaster.pid left by a process that has exited, as after a crash.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(dir, dataSubdir, "postmaster.pid")
	stale := strconv.Itoa(dead.Process.Pid) + "\n" + filepath.Join(dir, dataSubdir) + "\n"
	if err := os.WriteFile(pidFile, []byte(stale), 0o600); err != nil {
		t.Fatal(err)
	}
	// As root, Start gives the file written here to the postgres user.
	s2 := startServer(t, dir)
	if got := query(t, s2.URL("postgres"), "SELECT 'ok'"); got != "ok" {
		t.Fatal(got)
	}
}

// TestStartWhileStopping starts a server on a data dir whose previous
// postgres is still shutting down, as after the gantryd that ran it was
// killed (its parent-death signal is SIGINT): Start waits for it.
func TestStartWhileStopping(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := startServer(t, dir)
	if err := syscall.Kill(s.pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	pgdata := filepath.Join(dir, dataSubdir)
	for {
		pid, status, err := livePostmaster(pgdata)
		if err != nil {
			t.Fatal(err)
		}
		if pid == 0 || status == "stopping" {
			break // Start would not fail either way
		}
		select {
		case <-t.Context().Done():
			t.Fatalf("postgres pid %d did not start stopping after SIGINT (status %q)", pid, status)
		case <-time.After(10 * time.Millisecond):
		}
	}
	s2 := startServer(t, dir)
	if got := query(t, s2.URL("postgres"), "SELECT 'ok'"); got != "ok" {
		t.Fatal(got)
	}
}

func TestStartFailureShowsLog(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := startServer(t, dir)
	if err := s.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, dataSubdir, "postgresql.conf")
	f, err := os.OpenFile(conf, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("\nshared_buffers = 'plenty'\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, err = Start(t.Context(), Config{Dir: dir, DisableFsync: true})
	if err == nil {
		t.Fatal("Start succeeded with a broken postgresql.conf")
	}
	for _, want := range []string{"exited during start-up", "postgres.log ends with", "shared_buffers"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestOwnership(t *testing.T) {
	t.Parallel()
	parent := filepath.Join(t.TempDir(), "private")
	if err := os.Mkdir(parent, 0o700); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(parent, "pg")
	s := startServer(t, dir)
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(s.Dir(), dataSubdir), &st); err != nil {
		t.Fatal(err)
	}
	pfi, err := os.Stat(parent)
	if err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		if int(st.Uid) != os.Geteuid() {
			t.Errorf("data dir owned by uid %d, want %d", st.Uid, os.Geteuid())
		}
		if pfi.Mode().Perm() != 0o700 {
			t.Errorf("parent mode changed to %v without need", pfi.Mode().Perm())
		}
		return
	}
	cred, name, err := lookupRunAs()
	if err != nil {
		t.Fatal(err)
	}
	if st.Uid != cred.Uid || st.Uid == 0 {
		t.Errorf("data dir owned by uid %d, want %d (%s)", st.Uid, cred.Uid, name)
	}
	if got := query(t, s.URL("postgres"), "SELECT current_setting('data_directory')"); got != filepath.Join(dir, dataSubdir) {
		t.Errorf("data_directory = %q", got)
	}
	if pfi.Mode().Perm() != 0o701 {
		t.Errorf("parent mode = %v, want 0701 (o+x only, never read)", pfi.Mode().Perm())
	}
}

func TestGrantSearch(t *testing.T) {
	top := t.TempDir()
	deep := filepath.Join(top, "a", "b", "c")
	if err := os.MkdirAll(deep, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(top, "a"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := grantSearch(discard(), deep); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path string
		want os.FileMode
	}{
		{filepath.Join(top, "a"), 0o751},
		{filepath.Join(top, "a", "b"), 0o701},
		{deep, 0o700}, // dir itself is chowned, not opened to others
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.path), func(t *testing.T) {
			fi, err := os.Stat(tt.path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != tt.want {
				t.Errorf("mode %v, want %v", fi.Mode().Perm(), tt.want)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	long := "/tmp/" + strings.Repeat("d", maxSocketPath)
	tests := []struct {
		name string
		cfg  Config
		is   error
		want string
	}{
		{"no dir", Config{}, nil, "Dir is required"},
		{"comma", Config{Dir: "/tmp/a,b"}, nil, "must not contain"},
		{"negative timeout", Config{Dir: "/tmp/x", StartTimeout: -1}, nil, "negative"},
		{"socket path too long", Config{Dir: long}, ErrSocketPathTooLong, "limit is 107"},
		{"no binaries in BinDir", Config{Dir: filepath.Join(t.TempDir(), "pg"), BinDir: t.TempDir()}, ErrNoBinaries, "apt-get install postgresql"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Start(t.Context(), tt.cfg)
			if err == nil {
				t.Fatal("Start succeeded")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("err = %v, want %v", err, tt.is)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err %q lacks %q", err, tt.want)
			}
		})
	}
	if _, err := os.Stat(long); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Start created %s despite the error", long)
	}
}

func TestFindBinaries(t *testing.T) {
	root := t.TempDir()
	mk := func(dir string, names ...string) string {
		t.Helper()
		d := filepath.Join(root, dir)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			if err := os.WriteFile(filepath.Join(d, n), []byte("#!/bin/sh\n"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	mk("lib/9.6/bin", "initdb", "postgres")
	mk("lib/16/bin", "initdb", "postgres")
	mk("lib/15/bin", "initdb", "postgres")
	mk("lib/17/bin", "initdb") // incomplete: skipped
	glob := filepath.Join(root, "lib/*/bin")
	pathDir := mk("path", "initdb", "postgres")
	onlyInitdb := mk("half", "initdb")
	linkDir := mk("links")
	for _, n := range []string{"initdb", "postgres"} {
		if err := os.Symlink(filepath.Join(root, "lib/9.6/bin", n), filepath.Join(linkDir, n)); err != nil {
			t.Fatal(err)
		}
	}

	tests := []struct {
		name    string
		pathEnv string
		glob    string
		want    string // directory of the binaries; "" for ErrNoBinaries
	}{
		{"PATH first", pathDir, glob, pathDir},
		{"highest version", mk("empty"), glob, filepath.Join(root, "lib/16/bin")},
		{"initdb without postgres in PATH", onlyInitdb, glob, filepath.Join(root, "lib/16/bin")},
		{"symbolic links in PATH", linkDir, glob, filepath.Join(root, "lib/9.6/bin")},
		{"nothing", "", filepath.Join(root, "none/*/bin"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := findBinaries(tt.pathEnv, tt.glob)
			if tt.want == "" {
				if !errors.Is(err, ErrNoBinaries) {
					t.Fatalf("err = %v, want ErrNoBinaries", err)
				}
				if !strings.Contains(err.Error(), "apt-get install postgresql") {
					t.Errorf("message lacks the install hint: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if filepath.Dir(b.InitDB) != tt.want || filepath.Dir(b.Postgres) != tt.want {
				t.Errorf("got %+v, want both in %s", b, tt.want)
			}
		})
	}
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// childDirEnv makes the test binary act as a parent process that starts a
// server in the named directory, prints the postgres pid and waits to be
// killed.
const childDirEnv = "PGSERVER_TEST_PARENT_DIR"

func TestServerDiesWithParent(t *testing.T) {
	if dir := os.Getenv(childDirEnv); dir != "" {
		s, err := Start(context.Background(), Config{Dir: dir, DisableFsync: true})
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println("pid", s.pid)
		select {}
	}
	if testing.Short() {
		t.Skip("starts PostgreSQL; skipped under -short")
	}
	t.Parallel()
	dir := t.TempDir()
	parent := exec.Command(os.Args[0], "-test.run=^TestServerDiesWithParent$")
	parent.Env = append(os.Environ(), childDirEnv+"="+dir)
	out, err := parent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = parent.Process.Kill(); _ = parent.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("read from parent: %v", err)
	}
	var pid int
	if _, err := fmt.Sscanf(line, "pid %d", &pid); err != nil {
		t.Fatalf("parent said %q", line)
	}
	if err := parent.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = parent.Wait()
	// postgres gets SIGINT from the kernel and shuts down on its own.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for alive(pid) {
		select {
		case <-t.Context().Done():
			t.Fatal("test ended with postgres still running")
		case <-tick.C:
		}
	}
}

// alive reports whether pid is a live (not zombie) postgres process.
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command in parentheses: "pid (comm) S ...".
	_, rest, ok := strings.Cut(string(stat), ") ")
	return ok && !strings.HasPrefix(rest, "Z") && strings.Contains(string(stat), "(postgres)")
}
