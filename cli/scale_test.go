package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gantryhq/gantry/layer1/controller/types"
)

// job is a job of release 3 for the tests of this file.
func job(typ string, index int, state string, restarts int) types.Job {
	return types.Job{Release: 3, Type: typ, Index: index, State: state, Restarts: restarts}
}

func TestConvergence(t *testing.T) {
	t.Parallel()
	old := job("web", 1, types.JobUp, 0)
	old.Release = 2
	tests := []struct {
		name string
		want map[string]int
		jobs []types.Job
		out  []typeState
	}{
		{
			name: "converged",
			want: map[string]int{"web": 2},
			jobs: []types.Job{job("web", 1, types.JobUp, 0), job("web", 2, types.JobUp, 0), job("worker", 1, types.JobPending, 0)},
			out:  []typeState{{Type: "web", Want: 2, Up: 2}},
		},
		{
			name: "coming up",
			want: map[string]int{"web": 3, "worker": 1},
			jobs: []types.Job{job("web", 1, types.JobUp, 0), job("web", 2, types.JobStarting, 0), job("web", 3, types.JobPending, 0), job("worker", 1, types.JobCrashed, 1)},
			out:  []typeState{{Type: "web", Want: 3, Up: 1, Coming: 2}, {Type: "worker", Want: 1, Coming: 1}},
		},
		{
			name: "old release and surplus stopping",
			want: map[string]int{"web": 1},
			jobs: []types.Job{old, job("web", 1, types.JobUp, 0), job("web", 2, types.JobStopping, 0), job("web", 3, types.JobDown, 0)},
			out:  []typeState{{Type: "web", Want: 1, Up: 1, Old: 2}},
		},
		{
			name: "scaled to zero",
			want: map[string]int{"worker": 0},
			jobs: []types.Job{job("worker", 1, types.JobDown, 0)},
			out:  []typeState{{Type: "worker"}},
		},
		{
			name: "too many up",
			want: map[string]int{"web": 1},
			jobs: []types.Job{job("web", 1, types.JobUp, 0), job("web", 2, types.JobUp, 0)},
			out:  []typeState{{Type: "web", Want: 1, Up: 2}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := convergence(3, tt.want, tt.jobs)
			if !reflect.DeepEqual(got, tt.out) {
				t.Fatalf("convergence = %+v, want %+v", got, tt.out)
			}
		})
	}
	if s := formatWaiting([]typeState{{Type: "web", Want: 3, Up: 2}, {Type: "worker", Want: 0, Old: 1}}); s != "web: 2/3 up, worker: 0/0 up (1 old)" {
		t.Errorf("formatWaiting = %q", s)
	}
}

func TestCrashTracker(t *testing.T) {
	t.Parallel()
	exit2 := 2
	crashed := func(index, restarts int) types.Job {
		j := job("web", index, types.JobCrashed, restarts)
		j.ExitCode, j.LastLines = &exit2, []string{"boom"}
		return j
	}
	want := map[string]int{"web": 2}
	tests := []struct {
		name string
		// polls are the job lists seen, in order.
		polls [][]types.Job
		// failAt is the poll whose observation fails, -1 for none.
		failAt  int
		wantErr string
	}{
		{
			name: "crash loop of one index",
			polls: [][]types.Job{
				{job("web", 1, types.JobUp, 0), job("web", 2, types.JobPending, 0)},
				{job("web", 1, types.JobUp, 0), crashed(2, 0)},
				{job("web", 1, types.JobUp, 0), crashed(2, 0), job("web", 2, types.JobPending, 1)},
				{job("web", 1, types.JobUp, 0), crashed(2, 1)},
				{job("web", 1, types.JobUp, 0), job("web", 2, types.JobStarting, 2)},
				{job("web", 1, types.JobUp, 0), crashed(2, 2)},
			},
			failAt:  5,
			wantErr: "web keeps crashing: 3 crashes while waiting\nweb.2 exited with status 2\nLast lines of web.2:\n  boom\n",
		},
		{
			name: "crashes before the wait do not count",
			polls: [][]types.Job{
				{crashed(1, 6), crashed(2, 4)},
				{job("web", 1, types.JobPending, 7), crashed(2, 4)},
				{job("web", 1, types.JobUp, 7), job("web", 2, types.JobPending, 5)},
				{job("web", 1, types.JobUp, 7), job("web", 2, types.JobUp, 5)},
			},
			failAt: -1,
		},
		{
			name: "crashes of several indexes add up, unseen ones included",
			polls: [][]types.Job{
				{job("web", 1, types.JobPending, 0), job("web", 2, types.JobPending, 0)},
				{job("web", 1, types.JobStarting, 1), job("web", 2, types.JobStarting, 0)},
				{job("web", 1, types.JobStarting, 1), crashed(2, 1)},
			},
			failAt:  2,
			wantErr: "web keeps crashing: 3 crashes while waiting\nweb.2 exited with status 2",
		},
		{
			name: "a run that ends and starts again",
			polls: [][]types.Job{
				{job("web", 1, types.JobUp, 0)},
				{job("web", 1, types.JobStarting, 2)},
				{job("web", 1, types.JobUp, 0)},
				{crashed(1, 0)},
			},
			failAt:  3,
			wantErr: "web keeps crashing: 3 crashes while waiting",
		},
		{
			name: "other releases and types do not count",
			polls: [][]types.Job{
				{},
				{{Release: 2, Type: "web", Index: 1, State: types.JobCrashed, Restarts: 5}, crashedOther(9)},
			},
			failAt: -1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var ct crashTracker
			for i, jobs := range tt.polls {
				err := ct.observe(3, want, jobs)
				if i != tt.failAt {
					if err != nil {
						t.Fatalf("poll %d: %v", i, err)
					}
					continue
				}
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("poll %d: error %v, want %q", i, err, tt.wantErr)
				}
				return
			}
		})
	}
}

// crashedOther is a crashed worker job with restarts restarts.
func crashedOther(restarts int) types.Job {
	return job("worker", 1, types.JobCrashed, restarts)
}

func TestCrashCause(t *testing.T) {
	t.Parallel()
	exit1 := 1
	tests := []struct {
		job  types.Job
		want string
	}{
		{types.Job{ExitCode: &exit1}, "exited with status 1"},
		{types.Job{Error: "image not found: demo:v9"}, "image not found: demo:v9"},
		{types.Job{ExitCode: &exit1, Error: "out of memory"}, "exited with status 1: out of memory"},
		{types.Job{}, "crashed"},
	}
	for _, tt := range tests {
		if got := crashCause(tt.job); got != tt.want {
			t.Errorf("crashCause(%+v) = %q, want %q", tt.job, got, tt.want)
		}
	}
}

// staticJobs is a jobLister that always lists the same jobs.
type staticJobs []types.Job

func (s staticJobs) ListJobs(context.Context, string) ([]types.Job, error) { return s, nil }

var _ jobLister = staticJobs(nil)

// scriptedJobs is a jobLister that answers each call with the next of its
// answers, and with the last one once they run out.
type scriptedJobs struct {
	mu      sync.Mutex
	answers []jobsAnswer
	calls   int
}

type jobsAnswer struct {
	jobs []types.Job
	err  error
}

func (s *scriptedJobs) ListJobs(context.Context, string) ([]types.Job, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.answers[min(s.calls, len(s.answers)-1)]
	s.calls++
	return a.jobs, a.err
}

var _ jobLister = (*scriptedJobs)(nil)

// plainWaiter returns a formationWaiter of demo's release 3 that prints
// its progress to out as plain lines.
func plainWaiter(jobs jobLister, want map[string]int, out io.Writer) *formationWaiter {
	return &formationWaiter{
		jobs: jobs, app: "demo", release: 3, want: want,
		progress: &progressLine{w: out},
		now:      func() time.Time { return testNow },
		start:    testNow,
	}
}

func TestWaitTimesOut(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	w := plainWaiter(staticJobs{job("web", 1, types.JobUp, 0), job("web", 2, types.JobStarting, 0)}, map[string]int{"web": 2}, &out)
	err := w.wait(t.Context(), 20*time.Millisecond)
	if err == nil || !strings.HasPrefix(err.Error(), "timed out after 20ms waiting for web: 1/2 up\n") {
		t.Fatalf("wait = %v", err)
	}
	if out.String() != "Waiting for web: 1/2 up\n" {
		t.Errorf("progress %q", out.String())
	}
}

func TestWaitInterrupted(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	w := plainWaiter(staticJobs{}, map[string]int{"web": 1}, &bytes.Buffer{})
	if err := w.wait(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("wait = %v, want context.Canceled", err)
	}
}

func TestWaitControllerErrors(t *testing.T) {
	t.Parallel()
	refused := fmt.Errorf("cannot reach the controller at http://127.0.0.1:1: %w", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED})
	unavailable := types.ErrUnavailable.WithMessage("PostgreSQL is unreachable")
	badGateway := types.ErrorForStatus(http.StatusBadGateway).WithMessage("502 Bad Gateway")
	badGateway.Status = http.StatusBadGateway
	up := []types.Job{job("web", 1, types.JobUp, 0)}
	tests := []struct {
		name    string
		answers []jobsAnswer
		// wantErr is the start of the error; empty for none.
		wantErr string
		// wantProgress is what the progress line printed.
		wantProgress string
	}{
		{
			name:         "connection refused, then up",
			answers:      []jobsAnswer{{err: refused}, {err: refused}, {jobs: up}},
			wantProgress: "The controller does not answer; retrying\n",
		},
		{
			name:         "503 and 502, then up",
			answers:      []jobsAnswer{{jobs: []types.Job{job("web", 1, types.JobStarting, 0)}}, {err: unavailable}, {err: badGateway}, {jobs: up}},
			wantProgress: "Waiting for web: 0/1 up\nThe controller does not answer; retrying\n",
		},
		{
			name:         "unreachable until the timeout",
			answers:      []jobsAnswer{{err: refused}},
			wantErr:      "timed out after 20ms waiting for the controller: cannot reach the controller at http://127.0.0.1:1: dial tcp: connection refused\n",
			wantProgress: "The controller does not answer; retrying\n",
		},
		{
			name:    "the app is gone",
			answers: []jobsAnswer{{err: types.ErrAppNotFound.WithMessage(`no app named "demo"`)}},
			wantErr: `list the jobs of demo: app_not_found: no app named "demo"`,
		},
		{
			name:    "a controller bug is not retried",
			answers: []jobsAnswer{{err: types.ErrInternal}},
			wantErr: "list the jobs of demo: internal",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			timeout := time.Hour
			if tt.wantErr != "" {
				timeout = 20 * time.Millisecond
			}
			err := plainWaiter(&scriptedJobs{answers: tt.answers}, map[string]int{"web": 1}, &out).wait(t.Context(), timeout)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("wait = %v", err)
			case tt.wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.wantErr)):
				t.Fatalf("wait = %v, want %q", err, tt.wantErr)
			}
			if out.String() != tt.wantProgress {
				t.Errorf("progress %q, want %q", out.String(), tt.wantProgress)
			}
		})
	}
}

func TestProgressLine(t *testing.T) {
	t.Parallel()
	type step struct {
		line    string
		elapsed time.Duration
	}
	tests := []struct {
		name  string
		tty   bool
		cols  int
		steps []step
		// fail ends the line as a failed wait does, not as a success.
		fail bool
		want string
	}{
		{
			name: "terminal rewrites the line with the time elapsed",
			tty:  true,
			steps: []step{
				{"Waiting for web: 0/3 up", 0},
				{"Waiting for web: 0/3 up", 300 * time.Millisecond},
				{"Waiting for web: 0/3 up", 1200 * time.Millisecond},
				{"Waiting for web: 12/13 up", 2 * time.Second},
				{"Waiting for web: 3/3", 65 * time.Second},
			},
			fail: true,
			want: "\rWaiting for web: 0/3 up [0s]" +
				"\rWaiting for web: 0/3 up [1s]" +
				"\rWaiting for web: 12/13 up [2s]" +
				"\rWaiting for web: 3/3 [1m5s]" + strings.Repeat(" ", len("12/13 up [2s]")-len("3/3 [1m5s]")) +
				"\rWaiting for web: 3/3 [1m5s]\n",
		},
		{
			name:  "terminal line erased on success",
			tty:   true,
			steps: []step{{"Waiting for web: 0/1 up", time.Second}},
			want:  "\rWaiting for web: 0/1 up [1s]\r" + strings.Repeat(" ", len("Waiting for web: 0/1 up [1s]")) + "\r",
		},
		{
			name:  "terminal line cut to the width",
			tty:   true,
			cols:  25,
			steps: []step{{"Waiting for web: 0/1 up, worker: 0/1 up", 0}, {"Waiting for web: 1/1 up, worker: 0/1 up", 0}, {"Waiting for web: 1/1 up, worker: 0/1 up", 11 * time.Second}},
			fail:  true,
			want:  "\rWaiting for web: 0/ [0s]\rWaiting for web: 1/ [0s]\rWaiting for web: 1 [11s]\n",
		},
		{
			name:  "plain output prints changes, without times",
			steps: []step{{"Waiting for web: 0/3 up", 0}, {"Waiting for web: 0/3 up", time.Second}, {"Waiting for web: 1/3 up", 2 * time.Second}},
			want:  "Waiting for web: 0/3 up\nWaiting for web: 1/3 up\n",
		},
		{
			name: "nothing shown, nothing ended",
			tty:  true,
			fail: true,
			want: "",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var b bytes.Buffer
			p := &progressLine{w: &b, tty: tt.tty, cols: tt.cols}
			for _, s := range tt.steps {
				p.set(s.line, s.elapsed)
			}
			for range 2 {
				if tt.fail {
					p.done()
				} else {
					p.clear()
				}
			}
			if b.String() != tt.want {
				t.Errorf("got %q, want %q", b.String(), tt.want)
			}
		})
	}
}
