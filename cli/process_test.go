package cli

import (
	"strconv"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/layer1/controller/types"
)

func TestParseCount(t *testing.T) {
	t.Parallel()
	tests := []struct {
		arg     string
		wantTyp string
		wantN   int
		wantErr string
	}{
		{arg: "web=3", wantTyp: "web", wantN: 3},
		{arg: "worker=0", wantTyp: "worker", wantN: 0},
		{arg: "web=007", wantTyp: "web", wantN: 7},
		{arg: "clock_2-b=10", wantTyp: "clock_2-b", wantN: 10},
		{arg: "web", wantErr: `invalid argument "web": expected TYPE=N`},
		{arg: "", wantErr: `invalid argument "": expected TYPE=N`},
		{arg: "=3", wantErr: `invalid argument "=3": the process type is empty`},
		{arg: "Web=3", wantErr: `"Web" is not a valid process type`},
		{arg: "1web=3", wantErr: `"1web" is not a valid process type`},
		{arg: "web=", wantErr: `invalid argument "web=": the count "" is not a non-negative integer`},
		{arg: "web=-1", wantErr: `the count "-1" is not a non-negative integer`},
		{arg: "web=+1", wantErr: `the count "+1" is not a non-negative integer`},
		{arg: "web=1.5", wantErr: `the count "1.5" is not a non-negative integer`},
		{arg: "web= 1", wantErr: `the count " 1" is not a non-negative integer`},
		{arg: "web=three", wantErr: `the count "three" is not a non-negative integer`},
		{arg: "web=99999999999999999999", wantErr: `the count 99999999999999999999 is too large`},
	}
	for _, tt := range tests {
		t.Run(tt.arg, func(t *testing.T) {
			t.Parallel()
			typ, n, err := parseCount(tt.arg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseCount(%q) = %q, %d, %v; want error %q", tt.arg, typ, n, err, tt.wantErr)
				}
				return
			}
			if err != nil || typ != tt.wantTyp || n != tt.wantN {
				t.Fatalf("parseCount(%q) = %q, %d, %v; want %q, %d", tt.arg, typ, n, err, tt.wantTyp, tt.wantN)
			}
		})
	}
}

func TestParseCounts(t *testing.T) {
	t.Parallel()
	got, err := parseCounts([]string{"web=3", "worker=1"})
	if err != nil || len(got) != 2 || got["web"] != 3 || got["worker"] != 1 {
		t.Fatalf("parseCounts = %v, %v", got, err)
	}
	if _, err := parseCounts([]string{"web=1", "web=2"}); err == nil || err.Error() != `invalid argument "web=2": web is named twice` {
		t.Fatalf("duplicate type: %v", err)
	}
	if s := formatCounts(map[string]int{"worker": 1, "web": 3, "clock": 0}); s != "clock=0 web=3 worker=1" {
		t.Fatalf("formatCounts = %q", s)
	}
}

func TestParseCommand(t *testing.T) {
	t.Parallel()
	tests := []struct {
		arg     string
		wantTyp string
		wantCmd string
		wantErr string
	}{
		{arg: "web=/server -port $PORT", wantTyp: "web", wantCmd: "/server -port $PORT"},
		{arg: "worker=env A=1 B==2 /worker", wantTyp: "worker", wantCmd: "env A=1 B==2 /worker"},
		{arg: "web=  /server  ", wantTyp: "web", wantCmd: "/server"},
		{arg: "web=sh -c 'echo a,b'", wantTyp: "web", wantCmd: "sh -c 'echo a,b'"},
		{arg: "web", wantErr: `invalid argument "web": expected TYPE=COMMAND`},
		{arg: "=/server", wantErr: `invalid argument "=/server": the process type is empty`},
		{arg: "we b=/server", wantErr: `"we b" is not a valid process type`},
		{arg: "web=", wantErr: `invalid argument "web=": the command of web is empty`},
		{arg: "web=   ", wantErr: `the command of web is empty`},
		{arg: "web=a\x00b", wantErr: `the command of web holds a NUL byte`},
	}
	for _, tt := range tests {
		t.Run(tt.arg, func(t *testing.T) {
			t.Parallel()
			typ, cmd, err := parseCommand(tt.arg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseCommand(%q) = %q, %q, %v; want error %q", tt.arg, typ, cmd, err, tt.wantErr)
				}
				return
			}
			if err != nil || typ != tt.wantTyp || cmd != tt.wantCmd {
				t.Fatalf("parseCommand(%q) = %q, %q, %v; want %q, %q", tt.arg, typ, cmd, err, tt.wantTyp, tt.wantCmd)
			}
		})
	}
}

func TestParseHealthPath(t *testing.T) {
	t.Parallel()
	tests := []struct {
		arg      string
		wantTyp  string
		wantPath string
		wantErr  string
	}{
		{arg: "web=/healthz", wantTyp: "web", wantPath: "/healthz"},
		{arg: "web=/", wantTyp: "web", wantPath: "/"},
		{arg: "api=/status?full=1", wantTyp: "api", wantPath: "/status?full=1"},
		{arg: "web", wantErr: `invalid argument "web": expected TYPE=/PATH`},
		{arg: "web=healthz", wantErr: `invalid argument "web=healthz": the health check path "healthz" does not start with /`},
		{arg: "web=", wantErr: `the health check path "" does not start with /`},
		{arg: "web=/a b", wantErr: `the health check path holds a space or control character`},
		{arg: "web=/a\tb", wantErr: `holds a space or control character`},
		{arg: "WEB=/", wantErr: `"WEB" is not a valid process type`},
	}
	for _, tt := range tests {
		t.Run(tt.arg, func(t *testing.T) {
			t.Parallel()
			typ, path, err := parseHealthPath(tt.arg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseHealthPath(%q) = %q, %q, %v; want error %q", tt.arg, typ, path, err, tt.wantErr)
				}
				return
			}
			if err != nil || typ != tt.wantTyp || path != tt.wantPath {
				t.Fatalf("parseHealthPath(%q) = %q, %q, %v; want %q, %q", tt.arg, typ, path, err, tt.wantTyp, tt.wantPath)
			}
		})
	}
}

// checkProcessArg checks what every TYPE=VALUE parser promises: errors
// name the argument, and an accepted type is valid and holds no '='.
func checkProcessArg(t *testing.T, arg, typ string, err error) bool {
	t.Helper()
	if err != nil {
		if !strings.Contains(err.Error(), strconv.Quote(arg)) {
			t.Fatalf("error %q does not name the argument %q", err, arg)
		}
		return false
	}
	if !types.ProcessTypeRegexp.MatchString(typ) || strings.Contains(typ, "=") {
		t.Fatalf("%q: accepted the invalid type %q", arg, typ)
	}
	if !strings.HasPrefix(arg, typ+"=") {
		t.Fatalf("%q: type %q is not the argument's prefix", arg, typ)
	}
	return true
}

func FuzzParseCount(f *testing.F) {
	for _, s := range []string{"web=1", "web=0", "web=-1", "web=", "=1", "web", "a=99999999999999999999", "web=1=2", "web=+1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, arg string) {
		typ, n, err := parseCount(arg)
		if !checkProcessArg(t, arg, typ, err) {
			return
		}
		if n < 0 {
			t.Fatalf("parseCount(%q) = %d: negative", arg, n)
		}
		value := strings.TrimPrefix(arg, typ+"=")
		if strings.TrimLeft(value, "0") == "" {
			if n != 0 {
				t.Fatalf("parseCount(%q) = %d, want 0", arg, n)
			}
		} else if strconv.Itoa(n) != strings.TrimLeft(value, "0") {
			t.Fatalf("parseCount(%q) = %d: does not match the argument", arg, n)
		}
	})
}

func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"web=/server -port $PORT", "web=", "web= ", "=x", "w=a=b", "web=\x00", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, arg string) {
		typ, cmd, err := parseCommand(arg)
		if !checkProcessArg(t, arg, typ, err) {
			return
		}
		if cmd == "" || cmd != strings.TrimSpace(cmd) || strings.ContainsRune(cmd, 0) {
			t.Fatalf("parseCommand(%q) accepted the command %q", arg, cmd)
		}
		if !strings.Contains(strings.TrimPrefix(arg, typ+"="), cmd) {
			t.Fatalf("parseCommand(%q) = %q: not taken from the argument", arg, cmd)
		}
	})
}

func FuzzParseHealthPath(f *testing.F) {
	for _, s := range []string{"web=/healthz", "web=/", "web=x", "web=/a b", "=/", "web=/\x7f"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, arg string) {
		typ, path, err := parseHealthPath(arg)
		if !checkProcessArg(t, arg, typ, err) {
			return
		}
		if typ+"="+path != arg || !strings.HasPrefix(path, "/") || strings.ContainsAny(path, " \t\r\n") {
			t.Fatalf("parseHealthPath(%q) accepted the path %q", arg, path)
		}
	})
}

func TestFormatFormation(t *testing.T) {
	tests := []struct {
		name string
		f    types.Formation
		want string
	}{
		{"counts only", types.Formation{Processes: map[string]int{"web": 2, "worker": 0}}, "web=2 worker=0"},
		{"a per-host type that runs", types.Formation{Processes: map[string]int{"router": 1, "web": 2}, PerHost: []string{"router"}}, "router=per-host web=2"},
		{"a per-host type that does not run", types.Formation{Processes: map[string]int{"router": 0}, PerHost: []string{"router"}}, "router=0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := formatFormation(tt.f); got != tt.want {
				t.Errorf("formatFormation = %q, want %q", got, tt.want)
			}
		})
	}
}
