package cli

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gantryhq/gantry/layer0/host/attach"
	"github.com/gantryhq/gantry/layer1/controller/types"
)

func TestProtectRunArgs(t *testing.T) {
	t.Parallel()
	app := (&runner{}).newApp()
	tests := []struct {
		name string
		in   []string
		want []string
	}{
		{"command with its flags", []string{"gantry", "run", "sh", "-c", "exit 3"}, []string{"gantry", "run", "--", "sh", "-c", "exit 3"}},
		{"run's flags first", []string{"gantry", "run", "-a", "demo", "-e", "K=V", "--detach", "ls", "-l"}, []string{"gantry", "run", "-a", "demo", "-e", "K=V", "--detach", "--", "ls", "-l"}},
		{"flags before run", []string{"gantry", "-a", "demo", "run", "echo", "-a"}, []string{"gantry", "-a", "demo", "run", "--", "echo", "-a"}},
		{"flag=value", []string{"gantry", "run", "--app=demo", "env"}, []string{"gantry", "run", "--app=demo", "--", "env"}},
		{"dashdash already", []string{"gantry", "run", "--", "ls"}, []string{"gantry", "run", "--", "ls"}},
		{"no command", []string{"gantry", "run", "-a", "demo"}, []string{"gantry", "run", "-a", "demo"}},
		{"another command", []string{"gantry", "scale", "web=1", "-a", "demo"}, []string{"gantry", "scale", "web=1", "-a", "demo"}},
		{"run as an argument", []string{"gantry", "help", "run"}, []string{"gantry", "help", "run"}},
		{"nothing", []string{"gantry"}, []string{"gantry"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := protectRunArgs(app, tc.in); !slices.Equal(got, tc.want) {
				t.Fatalf("protectRunArgs(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestParseRunEnv(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      []string
		want    map[string]string
		wantErr string
	}{
		{"none", nil, nil, ""},
		{"some", []string{"A=1", "B=x=y", "C="}, map[string]string{"A": "1", "B": "x=y", "C": ""}, ""},
		{"last wins", []string{"A=1", "A=2"}, map[string]string{"A": "2"}, ""},
		{"no equals", []string{"A"}, nil, "KEY=VALUE"},
		{"bad name", []string{"1A=x"}, nil, `"1A" is not a variable name`},
		{"empty name", []string{"=x"}, nil, "not a variable name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseRunEnv(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one saying %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || len(got) != len(tc.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Fatalf("got %v, want %v", got, tc.want)
				}
			}
		})
	}
}

// runServer answers POST /v1/apps/{app}/run like the controller, running
// a few scripted commands instead of jobs: it is a seam the CLI tests
// own, for the CLI's side of the attach protocol.
type runServer struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []types.RunRequest
}

func newRunServer(t *testing.T) *runServer {
	s := &runServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *runServer) requests() []types.RunRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.reqs)
}

func (s *runServer) serve(w http.ResponseWriter, r *http.Request) {
	fail := func(status int, code, msg string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(types.ErrorBody{Error: &types.Error{Code: code, Message: msg}})
	}
	if r.Header.Get("Authorization") != "Bearer "+testToken {
		fail(401, "unauthorized", "missing or wrong API token")
		return
	}
	if r.Method != http.MethodPost || r.URL.Path != "/v1/apps/demo/run" {
		fail(404, "app_not_found", `no app named "nosuch"`)
		return
	}
	var req types.RunRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		fail(400, "bad_request", err.Error())
		return
	}
	s.mu.Lock()
	s.reqs = append(s.reqs, req)
	s.mu.Unlock()
	if req.Detach {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(types.RunJob{ID: "demo.run.1.abc", App: "demo", Release: 3, Host: "h1"})
		return
	}
	if !attach.IsUpgrade(r) {
		fail(400, "bad_request", "no upgrade")
		return
	}
	w.Header().Set("Gantry-Job", "demo.run.1.abc")
	conn, err := attach.Upgrade(w)
	if err != nil {
		return
	}
	defer conn.Close()
	fw, fr := attach.NewWriter(conn), attach.NewReader(conn)
	out := func(t attach.Type, text string) { fw.Write(attach.Frame{Type: t, Data: []byte(text)}) }
	switch req.Command[0] {
	case "echo":
		out(attach.Stdout, strings.Join(req.Command[1:], " ")+"\n")
		fw.Write(attach.ExitFrame(0))
	case "exit":
		code, _ := strconv.Atoi(req.Command[1])
		out(attach.Stderr, "exiting\n")
		fw.Write(attach.ExitFrame(code))
	case "cat":
		for {
			f, err := fr.Read()
			if err != nil {
				return
			}
			if f.Type == attach.Stdin && len(f.Data) == 0 {
				fw.Write(attach.ExitFrame(0))
				return
			}
			out(attach.Stdout, string(f.Data))
		}
	case "no-such-command":
		fw.Write(attach.ErrorFrame(`cannot run the command: "no-such-command": executable file not found in $PATH`))
		fw.Write(attach.ExitFrame(127))
	case "drop":
		out(attach.Stdout, "partial\n")
	case "reset":
		// Closing with linger 0 sends a reset instead of the end of the
		// stream: the client sees "connection reset by peer".
		if tc, ok := conn.Conn.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
	}
}

func TestRunCommand(t *testing.T) {
	srv := newRunServer(t)
	tests := []struct {
		name       string
		args       []string
		stdin      string
		wantCode   int
		wantStdout string
		wantStderr string
		check      func(t *testing.T, req types.RunRequest)
	}{
		{name: "echo", args: []string{"run", "-a", "demo", "echo", "hi"}, wantStdout: "hi\n"},
		{name: "exit status", args: []string{"run", "-a", "demo", "exit", "3"}, wantCode: 3, wantStderr: "exiting\n"},
		{name: "stdin", args: []string{"run", "-a", "demo", "cat"}, stdin: "one\ntwo\n", wantStdout: "one\ntwo\n"},
		{name: "command's flags are its own", args: []string{"run", "-a", "demo", "-e", "K=V", "echo", "-c", "-a", "x"}, wantStdout: "-c -a x\n",
			check: func(t *testing.T, req types.RunRequest) {
				if !slices.Equal(req.Command, []string{"echo", "-c", "-a", "x"}) || req.Env["K"] != "V" || req.TTY || req.Detach {
					t.Errorf("request %+v", req)
				}
			}},
		{name: "app from GANTRY_APP's flag position", args: []string{"-a", "demo", "run", "echo", "x"}, wantStdout: "x\n"},
		{name: "command not found", args: []string{"run", "-a", "demo", "no-such-command"}, wantCode: 127,
			wantStderr: " !    cannot run the command: \"no-such-command\": executable file not found in $PATH\n"},
		{name: "stream cut", args: []string{"run", "-a", "demo", "drop"}, wantCode: 1, wantStdout: "partial\n",
			wantStderr: " !    the job's stream ended without its exit status (its host agent or the controller stopped?)\n"},
		{name: "stream reset", args: []string{"run", "-a", "demo", "reset"}, wantCode: 1,
			wantStderr: " !    the job's stream ended without its exit status (its host agent or the controller stopped?)\n"},
		{name: "detach", args: []string{"run", "-a", "demo", "--detach", "sleep", "10"}, wantStdout: "demo.run.1.abc\n",
			wantStderr: "Running in the background on h1; its output: gantry log -a demo -j demo.run.1.abc\n",
			check: func(t *testing.T, req types.RunRequest) {
				if !req.Detach || req.TTY {
					t.Errorf("request %+v", req)
				}
			}},
		{name: "no command", args: []string{"run", "-a", "demo"}, wantCode: 1,
			wantStderr: " !    missing the command to run\n !    Usage: gantry run [options] COMMAND [ARGUMENTS...]\n"},
		{name: "bad env", args: []string{"run", "-a", "demo", "-e", "NOPE", "echo"}, wantCode: 1,
			wantStderr: " !    invalid --env \"NOPE\": expected KEY=VALUE\n !    Usage: gantry run [options] COMMAND [ARGUMENTS...]\n"},
		{name: "detach without a terminal twice", args: []string{"run", "-a", "demo", "-d", "--no-tty", "echo"}, wantCode: 1,
			wantStderr: " !    --detach runs without a terminal already; drop --no-tty\n !    Usage: gantry run [options] COMMAND [ARGUMENTS...]\n"},
		{name: "unknown app", args: []string{"run", "-a", "nosuch", "echo"}, wantCode: 1, wantStderr: " !    no app named \"nosuch\"\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			isolate(t, srv.URL)
			before := len(srv.requests())
			res := runCLI(t, tc.stdin, tc.args...)
			if res.code != tc.wantCode || res.stdout != tc.wantStdout || res.stderr != tc.wantStderr {
				t.Fatalf("exit %d, stdout %q, stderr %q\nwant exit %d, stdout %q, stderr %q",
					res.code, res.stdout, res.stderr, tc.wantCode, tc.wantStdout, tc.wantStderr)
			}
			if tc.check != nil {
				reqs := srv.requests()
				if len(reqs) != before+1 {
					t.Fatalf("%d requests, want 1", len(reqs)-before)
				}
				tc.check(t, reqs[len(reqs)-1])
			}
		})
	}
	t.Run("controller unreachable", func(t *testing.T) {
		isolate(t, closedURL(t))
		res := runCLI(t, "", "run", "-a", "demo", "echo", "hi")
		if res.code != 1 || !strings.Contains(res.stderr, "cannot reach the controller at") {
			t.Fatalf("exit %d, stderr %q", res.code, res.stderr)
		}
	})
}

// TestRunSessionSignals checks what the session sends for signals: a
// resize for SIGWINCH, the signal's name for the others, and a disconnect
// after too many SIGINTs.
func TestRunSessionSignals(t *testing.T) {
	tests := []struct {
		name     string
		signals  []os.Signal
		want     []attach.Frame
		wantCode int
		wantErr  string
	}{
		{"forwarded", []os.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT},
			[]attach.Frame{attach.SignalFrame("TERM"), attach.SignalFrame("INT"), attach.SignalFrame("HUP"), attach.SignalFrame("QUIT")}, 143, ""},
		{"resize", []os.Signal{syscall.SIGWINCH}, []attach.Frame{attach.ResizeFrame(50, 160)}, 0, ""},
		{"too many interrupts", []os.Signal{syscall.SIGINT, syscall.SIGINT, syscall.SIGINT, syscall.SIGINT},
			[]attach.Frame{attach.SignalFrame("INT"), attach.SignalFrame("INT"), attach.SignalFrame("INT")}, 130, "interrupted"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			client, server := net.Pipe()
			defer server.Close()
			sigs := make(chan os.Signal, len(tc.signals))
			s := &runSession{conn: client, stdin: nil, stdout: io.Discard, stderr: io.Discard,
				size: func() (uint16, uint16, bool) { return 50, 160, true }}
			type result struct {
				code int
				err  error
			}
			done := make(chan result, 1)
			go func() {
				code, err := s.run(sigs)
				done <- result{code, err}
			}()
			r, w := attach.NewReader(server), attach.NewWriter(server)
			if f, err := r.Read(); err != nil || f.Type != attach.Stdin || len(f.Data) != 0 {
				t.Fatalf("first frame %v %q %v, want the end of stdin", f.Type, f.Data, err)
			}
			for _, sig := range tc.signals {
				sigs <- sig
			}
			for _, want := range tc.want {
				f, err := r.Read()
				if err != nil || f.Type != want.Type || string(f.Data) != string(want.Data) {
					t.Fatalf("got %v %q %v, want %v %q", f.Type, f.Data, err, want.Type, want.Data)
				}
			}
			if tc.wantErr == "" {
				w.Write(attach.ExitFrame(tc.wantCode))
			}
			var res result
			select {
			case res = <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("the session did not end")
			}
			var status *exitStatusError
			switch {
			case tc.wantErr == "" && (res.err != nil || res.code != tc.wantCode):
				t.Fatalf("code %d, err %v; want %d", res.code, res.err, tc.wantCode)
			case tc.wantErr != "" && (!errors.As(res.err, &status) || status.code != tc.wantCode || !strings.Contains(res.err.Error(), tc.wantErr)):
				t.Fatalf("err %v, want exit %d saying %q", res.err, tc.wantCode, tc.wantErr)
			}
		})
	}
}
