package gitreceiver

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// Environment variables the server gives git receive-pack, and so the hook.
const (
	envHookSocket = "GANTRY_HOOK_SOCKET"
	envPushID     = "GANTRY_PUSH_ID"
)

// hookRequest is what the hook sends to the server.
type hookRequest struct {
	PushID  string            `json:"push_id"`
	Updates []RefUpdate       `json:"updates"`
	GitEnv  map[string]string `json:"git_env"`
}

// gitEnvNames are the variables git sets for a hook that the server needs to
// read the pushed (still quarantined) objects.
var gitEnvNames = []string{"GIT_DIR", "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_QUARANTINE_PATH"}

// Frames from the server to the hook: "o <line>" is output, "x <code>
// [reason]" ends the stream; code 0 accepts the push, anything else rejects
// it with reason (shown by git as "! [remote rejected] main -> main
// (reason)").

// RunHook is git's proc-receive hook (`gantryd gitreceiver hook`). The
// server runs git receive-pack with receive.procReceiveRefs=refs, so git
// hands every ref update of a push to this hook instead of updating the refs
// itself. The hook speaks git's proc-receive protocol (pkt-lines) on stdin
// and stdout, relays the updates to the server over its unix socket, prints
// the build's output on stderr (which git relays to the client as
// "remote: ..." lines), and then reports "ok" for each ref (the server has
// deployed the commit and moved the ref) or "ng <ref> <reason>" (it did
// neither). It returns the hook's exit code.
func RunHook(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer, environ []string) int {
	env := envMap(environ)
	sock, push := env[envHookSocket], env[envPushID]
	if sock == "" || push == "" {
		fmt.Fprintln(stderr, " !     this hook only runs inside a push to Gantry")
		return 1
	}
	in := bufio.NewReader(stdin)
	updates, err := procReceiveHandshake(in, stdout)
	if err != nil {
		fmt.Fprintf(stderr, " !     git hook protocol: %v\n", err)
		return 1
	}
	// The server moves the ref itself, under the app's push lock, once the
	// commit is deployed: code 0 means that both happened.
	code, reason := relayPush(ctx, sock, hookRequest{PushID: push, Updates: updates, GitEnv: gitEnv(env)}, stderr)
	var report []string
	for _, u := range updates {
		if code == 0 {
			report = append(report, "ok "+u.Name)
		} else {
			report = append(report, "ng "+u.Name+" "+reason)
		}
	}
	if err := writePktLines(stdout, report...); err != nil {
		fmt.Fprintf(stderr, " !     git hook protocol: %v\n", err)
		return 1
	}
	return 0
}

// procReceiveHandshake reads git's version line and the ref updates from
// in and answers the version, as the proc-receive protocol (version 1)
// requires. Push options are not asked for, so none follow.
func procReceiveHandshake(in *bufio.Reader, out io.Writer) ([]RefUpdate, error) {
	lines, err := readPktLines(in)
	if err != nil {
		return nil, fmt.Errorf("read version: %w", err)
	}
	if len(lines) == 0 {
		return nil, errors.New("no version line from git")
	}
	version, _, _ := strings.Cut(lines[0], "\x00")
	if version != "version=1" {
		return nil, fmt.Errorf("unsupported %q from git", version)
	}
	if err := writePktLines(out, "version=1"); err != nil {
		return nil, fmt.Errorf("write version: %w", err)
	}
	if lines, err = readPktLines(in); err != nil {
		return nil, fmt.Errorf("read ref updates: %w", err)
	}
	return ParseRefUpdates(strings.Join(lines, "\n"))
}

// relayPush sends req to the server and copies its output to out. It
// returns the exit code and the rejection reason the server sent.
func relayPush(ctx context.Context, sock string, req hookRequest, out io.Writer) (int, string) {
	var d net.Dialer
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := d.DialContext(dctx, "unix", sock)
	cancel()
	if err != nil {
		fmt.Fprintf(out, " !     cannot reach the git receiver: %v\n", err)
		return 1, "git receiver unreachable"
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		fmt.Fprintf(out, " !     send ref updates: %v\n", err)
		return 1, "git receiver unreachable"
	}
	sc := bufio.NewScanner(conn)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "o "):
			fmt.Fprintln(out, line[2:])
		case strings.HasPrefix(line, "x "):
			num, reason, _ := strings.Cut(line[2:], " ")
			code, err := strconv.Atoi(num)
			if err != nil {
				return 1, "bad answer from the git receiver"
			}
			if code != 0 && reason == "" {
				reason = "rejected"
			}
			return code, reason
		}
	}
	fmt.Fprintln(out, " !     the git receiver closed the connection before the build finished")
	return 1, "build interrupted"
}

func gitEnv(env map[string]string) map[string]string {
	m := map[string]string{}
	for _, name := range gitEnvNames {
		if v, ok := env[name]; ok {
			m[name] = v
		}
	}
	return m
}

// maxPktLine is the largest pkt-line git sends or accepts (LARGE_PACKET_MAX).
const maxPktLine = 65520

// readPktLines reads pkt-lines up to a flush packet and returns their
// payloads without the trailing newline.
func readPktLines(r *bufio.Reader) ([]string, error) {
	var lines []string
	for {
		var head [4]byte
		if _, err := io.ReadFull(r, head[:]); err != nil {
			return nil, err
		}
		n, err := strconv.ParseUint(string(head[:]), 16, 16)
		if err != nil {
			return nil, fmt.Errorf("bad pkt-line length %q", head[:])
		}
		if n == 0 {
			return lines, nil
		}
		if n < 4 || n > maxPktLine {
			return nil, fmt.Errorf("bad pkt-line length %d", n)
		}
		buf := make([]byte, n-4)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		lines = append(lines, strings.TrimSuffix(string(buf), "\n"))
	}
}

// writePktLines writes each line as a pkt-line, then a flush packet.
func writePktLines(w io.Writer, lines ...string) error {
	var b strings.Builder
	for _, l := range lines {
		if len(l)+5 > maxPktLine {
			return fmt.Errorf("pkt-line too long (%d bytes)", len(l))
		}
		fmt.Fprintf(&b, "%04x%s\n", len(l)+5, l)
	}
	b.WriteString("0000")
	_, err := io.WriteString(w, b.String())
	return err
}

func envMap(environ []string) map[string]string {
	m := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

// frameWriter turns output into "o <line>" frames on the hook connection.
type frameWriter struct {
	w       io.Writer
	partial []byte
}

func (f *frameWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := indexByte(p, '\n')
		if i < 0 {
			f.partial = append(f.partial, p...)
			break
		}
		line := append(f.partial, p[:i]...)
		f.partial = f.partial[:0]
		if err := f.frame(line); err != nil {
			return 0, err
		}
		p = p[i+1:]
	}
	return n, nil
}

func (f *frameWriter) frame(line []byte) error {
	buf := make([]byte, 0, len(line)+3)
	buf = append(buf, 'o', ' ')
	for _, c := range line {
		if c != '\r' {
			buf = append(buf, c)
		}
	}
	buf = append(buf, '\n')
	_, err := f.w.Write(buf)
	return err
}

// finish flushes a partial line and writes the exit frame; reason says why
// a non-zero code rejects the push.
func (f *frameWriter) finish(code int, reason string) error {
	if len(f.partial) > 0 {
		if err := f.frame(f.partial); err != nil {
			return err
		}
		f.partial = nil
	}
	_, err := fmt.Fprintf(f.w, "x %d %s\n", code, reason)
	return err
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// errClientGone is returned when the pushing client disconnected.
var errClientGone = errors.New("the git client disconnected")

// isExecutable reports whether path is an executable file.
func isExecutable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}
