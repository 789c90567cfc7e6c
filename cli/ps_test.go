package cli

import (
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/gantryhq/gantry/layer1/controller/types"
)

func TestJobStateAndLastExit(t *testing.T) {
	exit1, exit137 := 1, 137
	ago := func(d time.Duration) time.Time { return testNow.Add(-d) }
	tests := []struct {
		name      string
		job       types.Job
		wantState string
		wantExit  string
		wantLines []string
	}{
		{
			name:      "up",
			job:       types.Job{State: types.JobUp, StartedAt: ago(3 * time.Minute), UpdatedAt: ago(time.Minute)},
			wantState: "up 3m", wantExit: "-",
		},
		{
			name: "up after crashes: the last exit, no lines",
			job: types.Job{State: types.JobUp, StartedAt: ago(time.Hour), Restarts: 2,
				LastExit: &types.JobExit{ExitCode: &exit1, At: ago(61 * time.Minute), LastLines: []string{"boom"}}},
			wantState: "up 1h", wantExit: "exit 1, 1h ago",
		},
		{
			name:      "pending",
			job:       types.Job{State: types.JobPending, UpdatedAt: ago(2 * time.Second)},
			wantState: "pending 2s", wantExit: "-",
		},
		{
			name: "crashed, waiting for its back-off",
			job: types.Job{State: types.JobCrashed, ExitCode: &exit1, UpdatedAt: ago(40 * time.Second), RestartAt: testNow.Add(20 * time.Second),
				LastExit: &types.JobExit{ExitCode: &exit1, At: ago(40 * time.Second), LastLines: []string{"a", "b"}}},
			wantState: "crashed (exit 1, restarting in 20s)", wantExit: "exit 1, 40s ago", wantLines: []string{"a", "b"},
		},
		{
			name: "crashed, a wait rounded up to the second",
			job: types.Job{State: types.JobCrashed, ExitCode: &exit1, UpdatedAt: ago(time.Second),
				RestartAt: testNow.Add(4*time.Minute + 29*time.Second + time.Millisecond)},
			wantState: "crashed (exit 1, restarting in 4m30s)", wantExit: "exit 1, 1s ago",
		},
		{
			name:      "crashed, its replacement due",
			job:       types.Job{State: types.JobCrashed, ExitCode: &exit1, UpdatedAt: ago(5 * time.Minute), RestartAt: ago(time.Second)},
			wantState: "crashed (exit 1, restarting)", wantExit: "exit 1, 5m ago",
		},
		{
			name:      "crashed, not replaced",
			job:       types.Job{State: types.JobCrashed, ExitCode: &exit1, UpdatedAt: ago(10 * time.Second)},
			wantState: "crashed (exit 1)", wantExit: "exit 1, 10s ago",
		},
		{
			name:      "a crashed one-off job is never restarted",
			job:       types.Job{State: types.JobCrashed, ExitCode: &exit1, OneOff: true, RestartAt: testNow.Add(time.Minute), UpdatedAt: ago(10 * time.Second)},
			wantState: "crashed (exit 1)", wantExit: "exit 1, 10s ago",
		},
		{
			name:      "crashed with an error and a code",
			job:       types.Job{State: types.JobCrashed, ExitCode: &exit137, Error: "out of memory", UpdatedAt: ago(10 * time.Second)},
			wantState: "crashed (exit 137: out of memory)", wantExit: "exit 137: out of memory, 10s ago",
		},
		{
			name: "crashed without a start, a long error",
			job: types.Job{State: types.JobCrashed, UpdatedAt: ago(10 * time.Second), RestartAt: testNow.Add(time.Hour + 5*time.Minute),
				Error: "image not found: registry.example.test/some/very/long/image/name:with-a-long-tag"},
			wantState: "crashed (image not found: registry.example.test/some/very/long/ima..., restarting in 1h05m)",
			wantExit:  "image not found: registry.example.tes..., 10s ago",
		},
		{
			name:      "crashed, from a controller without last_exit",
			job:       types.Job{State: types.JobCrashed, ExitCode: &exit1, UpdatedAt: ago(3 * time.Second), LastLines: []string{"x"}},
			wantState: "crashed (exit 1)", wantExit: "exit 1, 3s ago", wantLines: []string{"x"},
		},
		{
			name:      "crashed, nothing known",
			job:       types.Job{State: types.JobCrashed},
			wantState: "crashed", wantExit: "crashed",
		},
		{
			name: "starting after a crash: the last five lines, printable and cut",
			job: types.Job{State: types.JobStarting, StartedAt: ago(time.Second), Restarts: 4,
				LastExit: &types.JobExit{ExitCode: &exit1, At: ago(3 * time.Second),
					LastLines: []string{"1", "2", "3", "\x1b[31mred\x1b[0m\tand\r", "", "\u202eevil", strings.Repeat("x", 200)}}},
			wantState: "starting 1s", wantExit: "exit 1, 3s ago",
			wantLines: []string{"3", "[31mred [0m and", "", "evil", strings.Repeat("x", psLineWidth-3) + "..."},
		},
		{
			name: "stopping after a crash: no lines",
			job: types.Job{State: types.JobStopping, UpdatedAt: ago(time.Second),
				LastExit: &types.JobExit{ExitCode: &exit1, At: ago(time.Minute), LastLines: []string{"boom"}}},
			wantState: "stopping 1s", wantExit: "exit 1, 1m ago",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := jobState(tt.job, testNow); got != tt.wantState {
				t.Errorf("jobState = %q, want %q", got, tt.wantState)
			}
			if got := lastExitText(tt.job, testNow); got != tt.wantExit {
				t.Errorf("lastExitText = %q, want %q", got, tt.wantExit)
			}
			if got := crashLines(tt.job); strings.Join(got, "|") != strings.Join(tt.wantLines, "|") || len(got) != len(tt.wantLines) {
				t.Errorf("crashLines = %q, want %q", got, tt.wantLines)
			}
		})
	}
}

func TestFormatWait(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{time.Millisecond, "1s"},
		{time.Second, "1s"},
		{20 * time.Second, "20s"},
		{59*time.Second + time.Millisecond, "1m00s"},
		{5 * time.Minute, "5m00s"},
		{61 * time.Minute, "1h01m"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := formatWait(tt.d); got != tt.want {
				t.Errorf("formatWait(%s) = %q, want %q", tt.d, got, tt.want)
			}
		})
	}
}

func TestFormatBytes(t *testing.T) {
	for _, tt := range []struct {
		n    uint64
		want string
	}{
		{0, "0 B"},
		{1023, "1023 B"},
		{1024, "1.0 KiB"},
		{4608, "4.5 KiB"},
		{48<<20 + 200<<10, "48.2 MiB"},
		{64 << 20, "64 MiB"},
		{128 << 20, "128 MiB"},
		{1536 << 20, "1.5 GiB"},
		{5 << 40, "5.0 TiB"},
	} {
		t.Run(tt.want, func(t *testing.T) {
			if got := formatBytes(tt.n); got != tt.want {
				t.Errorf("formatBytes(%d) = %q, want %q", tt.n, got, tt.want)
			}
		})
	}
}

// TestJobTable checks the layout: a header, one line per job, the lines of
// a crash indented under the state column.
func TestJobTable(t *testing.T) {
	exit1 := 1
	jobs := []types.Job{
		{Type: "worker", Index: 1, State: types.JobCrashed, ExitCode: &exit1, Restarts: 5, Host: "host-1", Release: 7,
			UpdatedAt: testNow.Add(-40 * time.Second), RestartAt: testNow.Add(20 * time.Second),
			LastExit: &types.JobExit{ExitCode: &exit1, At: testNow.Add(-40 * time.Second), LastLines: []string{"connecting", "fatal"}}},
		{Type: "worker", Index: 12, State: types.JobUp, Host: "host-2", Addr: "127.0.0.1:49153", Release: 7, StartedAt: testNow.Add(-time.Hour),
			Usage: &types.JobUsage{CPU: 0.523, MemoryRSS: 48<<20 + 200<<10, MemoryLimit: 512 << 20}},
	}
	var b strings.Builder
	if err := writeJobTable(&b, jobs, testNow); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"JOB        STATE                                RESTARTS  LAST EXIT        HOST    ADDRESS          RELEASE  CPU  MEM\n" +
		"worker.1   crashed (exit 1, restarting in 20s)  5         exit 1, 40s ago  host-1  -                v7       -    -\n" +
		"           connecting\n" +
		"           fatal\n" +
		"worker.12  up 1h                                0         -                host-2  127.0.0.1:49153  v7       52%  48.2 MiB / 512 MiB\n"
	if b.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", b.String(), want)
	}
}

// FuzzJobTable feeds arbitrary job fields and output lines to the table:
// whatever they hold, every job is one row, every crash line one line, and
// nothing but newlines is a control character.
func FuzzJobTable(f *testing.F) {
	f.Add("web", "host-1", "127.0.0.1:1", "crashed", "image not found", "line one\nline two", 1)
	f.Add("w\teb", "h\x1b[2J", "\r\n", "up", "\u202e", "\x00\x7f\u0085", 0)
	f.Fuzz(func(t *testing.T, typ, hostID, addr, state, msg, output string, code int) {
		lines := strings.Split(output, "\n")
		jobs := []types.Job{{Type: typ, Index: 1, Host: hostID, Addr: addr, State: state, Error: msg, ExitCode: &code,
			UpdatedAt: testNow, RestartAt: testNow.Add(time.Second),
			LastExit: &types.JobExit{ExitCode: &code, Error: msg, At: testNow, LastLines: lines}}}
		var b strings.Builder
		if err := writeJobTable(&b, jobs, testNow); err != nil {
			t.Fatal(err)
		}
		out := b.String()
		if strings.ContainsFunc(out, func(r rune) bool { return r != '\n' && (unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r)) }) {
			t.Fatalf("control character in %q", out)
		}
		want := 2 + len(crashLines(jobs[0]))
		if got := strings.Count(out, "\n"); got != want || !strings.HasSuffix(out, "\n") {
			t.Fatalf("%d lines, want %d: %q", got, want, out)
		}
	})
}
