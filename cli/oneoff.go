package cli

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/term"

	"github.com/gantryhq/gantry/layer0/host/attach"
	"github.com/gantryhq/gantry/layer1/controller/types"
	urfave "github.com/urfave/cli/v2"
)

// maxInterrupts is how many SIGINTs a run forwards before it gives up on
// the job: the next one disconnects, which kills it.
const maxInterrupts = 3

// exitStatusError makes the gantry process exit with code, after printing
// err when it is not nil.
type exitStatusError struct {
	code int
	err  error
}

func (e *exitStatusError) Error() string {
	if e.err != nil {
		return e.err.Error()
	}
	return fmt.Sprintf("exit status %d", e.code)
}

func (e *exitStatusError) Unwrap() error { return e.err }

func (r *runner) oneOffCommand() *urfave.Command {
	return &urfave.Command{
		Name:      "run",
		Usage:     "run a one-off command with the app's current release and config",
		ArgsUsage: "COMMAND [ARGUMENTS...]",
		Description: "The command runs in a new container of the app's current release, with its\n" +
			"config vars, attached to this terminal: a terminal of its own when stdin and\n" +
			"stdout are terminals (resized with this one; Ctrl-C reaches the command),\n" +
			"else stdin is passed on and SIGINT and SIGTERM are forwarded. gantry exits\n" +
			"with the command's exit status. The job never receives router traffic and\n" +
			"is removed when it ends.\n\n" +
			"Everything after COMMAND belongs to it: put gantry's own flags before it\n" +
			"(gantry run -a demo sh -c 'echo $HOME'). For an app built from source, one\n" +
			"argument is shell code run like a Procfile command; for an image release the\n" +
			"arguments are the container's command.\n\n" +
			"With --detach the job runs in the background and its ID is printed; its\n" +
			"output goes to the app's logs (gantry log -j ID).",
		Flags: []urfave.Flag{
			clusterFlag(), appFlag(),
			&urfave.BoolFlag{Name: "detach", Aliases: []string{"d"}, Usage: "run in the background and print the job ID", DisableDefaultText: true},
			&urfave.StringSliceFlag{Name: "env", Aliases: []string{"e"}, Usage: "set `KEY=VALUE` for this run only (repeatable)"},
			&urfave.BoolFlag{Name: "no-tty", Usage: "no terminal for the command, even when this one is a terminal", DisableDefaultText: true},
		},
		Action: r.runOneOff,
	}
}

func (r *runner) runOneOff(c *urfave.Context) error {
	if c.NArg() == 0 {
		return usagef(c, "missing the command to run")
	}
	env, err := parseRunEnv(c.StringSlice("env"))
	if err != nil {
		return usagef(c, "%s", err)
	}
	req := types.RunRequest{Command: c.Args().Slice(), Env: env}
	if c.Bool("detach") && c.Bool("no-tty") {
		return usagef(c, "--detach runs without a terminal already; drop --no-tty")
	}
	app, err := r.app(c)
	if err != nil {
		return err
	}
	cl, err := r.client(c)
	if err != nil {
		return err
	}
	if c.Bool("detach") {
		job, err := cl.RunDetached(c.Context, app, req)
		if err != nil {
			return err
		}
		fmt.Fprintln(r.stdout, job.ID)
		fmt.Fprintf(r.stderr, "Running in the background on %s; its output: gantry log -a %s -j %s\n", job.Host, app, job.ID)
		return nil
	}

	in, out := terminalFile(r.stdin), terminalFile(r.stdout)
	req.TTY = !c.Bool("no-tty") && in != nil && out != nil
	if req.TTY {
		if cols, rows, err := term.GetSize(int(out.Fd())); err == nil {
			req.Rows, req.Cols = rows, cols
		}
	}
	conn, _, err := cl.Run(c.Context, app, req)
	if err != nil {
		return err
	}
	defer conn.Close()
	s := &runSession{conn: conn, stdin: r.stdin, stdout: r.stdout, stderr: r.stderr, tty: req.TTY}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGWINCH)
	defer signal.Stop(sigs)
	if req.TTY {
		state, err := term.MakeRaw(int(in.Fd()))
		if err != nil {
			return fmt.Errorf("cannot put the terminal in raw mode: %w", err)
		}
		defer term.Restore(int(in.Fd()), state)
		s.size = func() (uint16, uint16, bool) {
			cols, rows, err := term.GetSize(int(out.Fd()))
			return uint16(rows), uint16(cols), err == nil && rows > 0 && cols > 0
		}
	}
	code, err := s.run(sigs)
	if err != nil {
		return err
	}
	return &exitStatusError{code: code, err: s.jobErr}
}

// parseRunEnv parses the KEY=VALUE values of --env.
func parseRunEnv(values []string) (map[string]string, error) {
	if len(values) == 0 {
		return nil, nil
	}
	env := make(map[string]string, len(values))
	for _, v := range values {
		name, value, ok := strings.Cut(v, "=")
		if !ok {
			return nil, fmt.Errorf("invalid --env %q: expected KEY=VALUE", v)
		}
		if !types.ConfigVarNameRegexp.MatchString(name) {
			return nil, fmt.Errorf("invalid --env %q: %q is not a variable name (letters, digits and underscores, not starting with a digit)", v, name)
		}
		env[name] = value
	}
	return env, nil
}

// terminalFile returns f as a file when it is a terminal, else nil.
func terminalFile(f any) *os.File {
	file, ok := f.(*os.File)
	if !ok || !term.IsTerminal(int(file.Fd())) {
		return nil
	}
	return file
}

// runSession is the CLI's side of an attached run: it sends stdin, resizes
// and signals, and writes the job's output until its exit frame.
type runSession struct {
	conn   io.ReadWriteCloser
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	tty    bool
	// size reads the terminal's size; nil without a terminal.
	size func() (rows, cols uint16, ok bool)
	// jobErr is why the job did not run, from its error frame.
	jobErr error
}

// run carries the session until the job's exit frame and returns its
// status. Signals from sigs are forwarded (SIGWINCH resizes the terminal);
// after maxInterrupts SIGINTs the session ends, and the job is killed.
func (s *runSession) run(sigs <-chan os.Signal) (int, error) {
	w := attach.NewWriter(s.conn)
	done := make(chan struct{})
	defer close(done)
	go s.sendStdin(w)
	lost := make(chan struct{})
	go func() {
		interrupts := 0
		for {
			select {
			case <-done:
				return
			case sig := <-sigs:
				if sig == syscall.SIGWINCH {
					if s.size == nil {
						continue
					}
					if rows, cols, ok := s.size(); ok {
						w.Write(attach.ResizeFrame(rows, cols))
					}
					continue
				}
				if sig == syscall.SIGINT {
					interrupts++
					if interrupts > maxInterrupts {
						close(lost)
						s.conn.Close()
						return
					}
				}
				w.Write(attach.SignalFrame(signalName(sig)))
			}
		}
	}()
	r := attach.NewReader(s.conn)
	for {
		f, err := r.Read()
		if err != nil {
			select {
			case <-lost:
				return 0, &exitStatusError{code: 130, err: errors.New("interrupted; the job was killed")}
			default:
			}
			if connectionEnded(err) {
				return 0, &streamCutError{cause: err}
			}
			return 0, fmt.Errorf("the job's stream is garbled: %w", err)
		}
		switch f.Type {
		case attach.Stdout:
			s.stdout.Write(f.Data)
		case attach.Stderr:
			s.stderr.Write(f.Data)
		case attach.Error:
			s.jobErr = errors.New(string(f.Data))
		case attach.Exit:
			return f.ExitCode(), nil
		}
	}
}

// sendStdin sends stdin to the job, then its end.
func (s *runSession) sendStdin(w *attach.Writer) {
	if s.stdin == nil {
		w.Write(attach.Frame{Type: attach.Stdin, Data: []byte{}})
		return
	}
	if _, err := io.Copy(w.Stream(attach.Stdin), s.stdin); err != nil {
		return
	}
	w.Write(attach.Frame{Type: attach.Stdin, Data: []byte{}})
}

// signalName is the protocol's name of sig ("INT" for SIGINT).
func signalName(sig os.Signal) string {
	switch sig {
	case syscall.SIGINT:
		return "INT"
	case syscall.SIGTERM:
		return "TERM"
	case syscall.SIGHUP:
		return "HUP"
	case syscall.SIGQUIT:
		return "QUIT"
	}
	return "TERM"
}

// protectRunArgs marks the command of `gantry run` as positional (with a
// "--" in front of it), so that hoistFlags leaves the command's own flags
// to it: `gantry run sh -c 'exit 3'` runs sh with -c, and the flags of
// gantry run go before the command. Other command lines are returned as
// they are. args[0] is the program name.
func protectRunArgs(app *urfave.App, args []string) []string {
	valued := valueFlags(app.Flags, app.Commands, map[string]bool{})
	skipFlags := func(i int) int {
		for i < len(args) && isFlagArg(args[i]) {
			if !strings.Contains(args[i], "=") && valued[flagName(args[i])] {
				i++
			}
			i++
		}
		return i
	}
	i := skipFlags(1)
	if i >= len(args) || args[i] != "run" {
		return args
	}
	i = skipFlags(i + 1)
	if i >= len(args) || args[i] == "--" {
		return args
	}
	return slices.Concat(args[:i], []string{"--"}, args[i:])
}

// streamCutError is the error of a job's stream that ended before the job's
// exit status. The connection's end and a reset say the same to the user:
// which of the two the client sees depends on timing, not on what happened.
type streamCutError struct{ cause error }

func (e *streamCutError) Error() string {
	return "the job's stream ended without its exit status (its host agent or the controller stopped?)"
}

func (e *streamCutError) Unwrap() error { return e.cause }

// connectionEnded reports whether err says that the connection ended or was
// cut (its end, a reset, a broken pipe, a closed socket), as opposed to a
// malformed stream.
func connectionEnded(err error) bool {
	var opErr *net.OpError
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.As(err, &opErr)
}
