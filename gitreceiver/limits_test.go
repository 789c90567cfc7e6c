package gitreceiver

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// silentConn opens a TCP connection from the loopback address from to the
// server and sends nothing.
func (e *env) silentConn(from string) net.Conn {
	e.t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 30 * time.Second}
	c, err := d.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", e.port))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	return c
}

// uploadPack returns the command of an ssh client (no shell between, so
// that ctx ends it) that runs git-upload-pack of demo.
func (e *env) uploadPack(ctx context.Context) *exec.Cmd {
	args := strings.Fields(e.sshCommand(e.key))
	args = append(args[1:], "-p", fmt.Sprint(e.port), "git@127.0.0.1", "git-upload-pack 'demo.git'")
	return exec.CommandContext(ctx, "ssh", args...)
}

// readAll reads c until it ends (EOF or reset). It fails the test when c
// stays open for the polling deadline.
func readAll(t *testing.T, c net.Conn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(60 * time.Second))
	b, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection from %s still open after 60 s (read %q)", c.LocalAddr(), b)
	}
	return string(b)
}

// TestSilentConnectionsTimeOut opens TCP connections that never start SSH:
// the server ends each after the handshake timeout.
func TestSilentConnectionsTimeOut(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.HandshakeTimeout = 500 * time.Millisecond })
	var conns []net.Conn
	for range 5 {
		conns = append(conns, e.silentConn("127.0.0.1"))
	}
	for i, c := range conns {
		if got := readAll(t, c); !strings.HasPrefix(got, "SSH-2.0-Gantry") {
			t.Errorf("connection %d: read %q, want the server's banner and then its end", i, got)
		}
	}
}

// TestUnauthenticatedConnectionCaps fills the caps on unauthenticated
// connections, per source address and in total, with silent connections:
// connections beyond them are closed at once (no banner), and an
// authenticated session does not count.
func TestUnauthenticatedConnectionCaps(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.HandshakeTimeout = 10 * time.Minute // the silent connections keep their places
		c.MaxUnauthenticated = 3
		c.MaxUnauthenticatedPerSource = 2
	})
	banner := func(c net.Conn) bool {
		c.SetReadDeadline(time.Now().Add(60 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("connection from %s: neither a banner nor its end in 60 s", c.LocalAddr())
			}
		}
		return strings.HasPrefix(line, "SSH-2.0-Gantry")
	}
	repo := e.newRepo(map[string]string{"index.html": "x"})
	if out, code := e.git(repo, e.key, "push", e.url("demo"), "main"); code != 0 {
		t.Fatalf("push: %d\n%s", code, out)
	}
	first := e.silentConn("127.0.0.1")
	steps := []struct {
		from string
		want bool
	}{
		{"127.0.0.1", true},  // with first: 2 from 127.0.0.1
		{"127.0.0.1", false}, // over the per-source cap
		{"127.0.0.2", true},  // 3 in total
		{"127.0.0.3", false}, // over the total cap
	}
	if !banner(first) {
		t.Fatal("the first connection got no banner")
	}
	for i, st := range steps {
		if got := banner(e.silentConn(st.from)); got != st.want {
			t.Fatalf("step %d, from %s: admitted = %v, want %v", i, st.from, got, st.want)
		}
	}

	// A real client is refused until a place is free.
	if out, code := e.git(repo, e.key, "ls-remote", e.url("demo")); code == 0 {
		t.Fatalf("ls-remote over the caps succeeded:\n%s", out)
	}
	first.Close()
	eventually(t, "a real client gets in once a place is free", func() bool {
		_, code := e.git(repo, e.key, "ls-remote", e.url("demo"))
		return code == 0
	})

	// An authenticated session holds no place: with one open, a silent
	// connection from its address still gets in.
	ctx, cancel := context.WithCancel(context.Background())
	sess := e.uploadPack(ctx)
	stdin, err := sess.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := sess.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		sess.Wait()
	}()
	if _, err := bufio.NewReader(stdout).ReadString('\n'); err != nil {
		t.Fatalf("no advertisement from upload-pack: %v", err)
	}
	if !banner(e.silentConn("127.0.0.1")) {
		t.Fatal("an authenticated session took a place among the unauthenticated ones")
	}
}

// TestIdleSessionTimesOut keeps an authenticated session open and silent
// (git-upload-pack of an empty repository waits for the client): the
// server ends it after the idle timeout.
func TestIdleSessionTimesOut(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.IdleTimeout = 2 * time.Second })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sess := e.uploadPack(ctx)
	stdin, err := sess.StdinPipe() // open and silent
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	var stderr strings.Builder
	sess.Stderr = &stderr
	err = sess.Run()
	if ctx.Err() != nil {
		t.Fatal("the idle session was still open after 60 s")
	}
	if err == nil {
		t.Fatal("ssh exited 0; want the session cut")
	}
	if strings.Contains(stderr.String(), " !     ") {
		t.Fatalf("the server refused the session instead of letting it idle:\n%s", stderr.String())
	}
}
