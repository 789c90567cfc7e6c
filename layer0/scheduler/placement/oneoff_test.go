package placement

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/gantryhq/gantry/layer0/keyspace"
)

// oneOff returns a one-off formation: the jobs of a build or `gantry run`.
func oneOff(count int) keyspace.Formation {
	f := form("blog", "r1", 1, "run", count)
	f.Template.OneOff = true
	return f
}

// down is the state of a job that exited with status 0.
func down(a keyspace.Assignment) keyspace.JobState {
	code := 0
	st := jobState(a, keyspace.StateDown)
	st.ExitCode, st.StartedAt, st.UpdatedAt = &code, t0.Add(-time.Minute), t0.Add(-time.Second)
	return st
}

func TestOneOff(t *testing.T) {
	f := oneOff(2)
	r1, r2 := assign(f, "a", "r1", 1, t0.Add(-time.Hour)), assign(f, "a", "r2", 2, t0.Add(-time.Hour))
	crashedNow := func(a keyspace.Assignment) keyspace.JobState {
		return crashed(a, t0.Add(-time.Minute), t0.Add(-time.Second)) // back-off 0: a service job would be replaced now
	}
	restarted := func(at time.Time) keyspace.Formation {
		f := oneOff(2)
		f.RestartedAt = at
		return f
	}
	web := form("blog", "r1", 1, "web", 1)
	w1 := assign(web, "a", "w1", 1, t0.Add(-time.Hour))
	hosts := []keyspace.Host{host("a", 8*gib)}

	tests := []struct {
		name string
		snap Snapshot
		// want is the plan's summary, every reason shown.
		want string
	}{
		{
			name: "count N starts N jobs",
			snap: Snapshot{Hosts: hosts, Formations: []keyspace.Formation{f}},
			want: "+run.1(new) +run.2(new)",
		},
		{
			name: "running jobs are left alone",
			snap: Snapshot{Hosts: hosts, Formations: []keyspace.Formation{f}, Assignments: []keyspace.Assignment{r1, r2},
				Jobs: map[string]keyspace.JobState{"r1": jobState(r1, keyspace.StateUp), "r2": jobState(r2, keyspace.StateStarting)}},
		},
		{
			name: "crashed job is not replaced",
			snap: Snapshot{Hosts: hosts, Formations: []keyspace.Formation{f}, Assignments: []keyspace.Assignment{r1, r2},
				Jobs: map[string]keyspace.JobState{"r1": jobState(r1, keyspace.StateUp), "r2": crashedNow(r2)}},
		},
		{
			name: "job that exited is not replaced",
			snap: Snapshot{Hosts: hosts, Formations: []keyspace.Formation{f}, Assignments: []keyspace.Assignment{r1, r2},
				Jobs: map[string]keyspace.JobState{"r1": down(r1), "r2": jobState(r2, keyspace.StateUp)}},
		},
		{
			name: "every job finished: nothing starts",
			snap: Snapshot{Hosts: hosts, Formations: []keyspace.Formation{f}, Assignments: []keyspace.Assignment{r1, r2},
				Jobs: map[string]keyspace.JobState{"r1": down(r1), "r2": crashedNow(r2)}},
		},
		{
			name: "job on a lost host is not replaced",
			snap: Snapshot{Hosts: hosts, Formations: []keyspace.Formation{f},
				Assignments: []keyspace.Assignment{r1, assign(f, "gone", "r2", 2, t0.Add(-time.Hour))},
				Jobs:        map[string]keyspace.JobState{"r1": jobState(r1, keyspace.StateUp)}},
		},
		{
			name: "count raised: only the missing index starts",
			snap: Snapshot{Hosts: hosts, Formations: []keyspace.Formation{f}, Assignments: []keyspace.Assignment{r1},
				Jobs: map[string]keyspace.JobState{"r1": down(r1)}},
			want: "+run.2(new)",
		},
		{
			name: "count lowered: the finished job stops first",
			snap: Snapshot{Hosts: hosts, Formations: []keyspace.Formation{oneOff(1)}, Assignments: []keyspace.Assignment{r1, r2},
				Jobs: map[string]keyspace.JobState{"r1": jobState(r1, keyspace.StateUp), "r2": crashedNow(r2)}},
			want: "-r2(surplus)",
		},
		{
			name: "formation removed by its owner: its jobs stop",
			snap: Snapshot{Hosts: hosts, Assignments: []keyspace.Assignment{r1, r2},
				Jobs: map[string]keyspace.JobState{"r1": down(r1), "r2": crashedNow(r2)}},
			want: "-r2(no-formation) -r1(no-formation)",
		},
		{
			name: "RestartedAt does not restart one-off jobs",
			snap: Snapshot{Hosts: hosts, Formations: []keyspace.Formation{restarted(t0.Add(-time.Minute))}, Assignments: []keyspace.Assignment{r1, r2},
				Jobs: map[string]keyspace.JobState{"r1": jobState(r1, keyspace.StateUp), "r2": down(r2)}},
		},
		{
			name: "RestartedAt in the future sets no wake",
			snap: Snapshot{Hosts: hosts, Formations: []keyspace.Formation{restarted(t0.Add(time.Minute))}, Assignments: []keyspace.Assignment{r1, r2},
				Jobs: map[string]keyspace.JobState{"r1": jobState(r1, keyspace.StateUp), "r2": jobState(r2, keyspace.StateUp)}},
		},
		{
			name: "a service job beside it is still replaced",
			snap: Snapshot{Hosts: hosts, Formations: []keyspace.Formation{f, web}, Assignments: []keyspace.Assignment{r1, r2, w1},
				Jobs: map[string]keyspace.JobState{"r1": crashedNow(r1), "r2": jobState(r2, keyspace.StateUp), "w1": crashedNow(w1)}},
			want: "+web.1(crashed) -w1(crashed)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.snap.Now = t0
			p := Place(tt.snap)
			if got := summary(p, ""); got != tt.want {
				t.Errorf("plan %q, want %q", got, tt.want)
			}
			if !p.NextWake.IsZero() || len(p.Unplaced) != 0 {
				t.Errorf("next wake %s, unplaced %+v; want neither", p.NextWake, p.Unplaced)
			}
			for _, st := range p.Start {
				if a := st.Assignment; a.Spec.Type == "run" && (!a.Spec.OneOff || a.Restarts != 0 || st.Replaces != "") {
					t.Errorf("start %+v, want a new one-off job", st)
				}
			}
			if again := Place(tt.snap); !reflect.DeepEqual(p, again) {
				t.Errorf("second plan differs:\n%+v\n%+v", p, again)
			}
		})
	}
}

// TestOneOffRunsOnce follows a one-off formation of two jobs: they start,
// one exits with status 0, the other crashes, and however long the
// scheduler keeps planning, no other job starts until the owner removes
// the formation.
func TestOneOffRunsOnce(t *testing.T) {
	c := newSim(t, Snapshot{Hosts: []keyspace.Host{host("a", 8*gib), host("b", 8*gib)}, Formations: []keyspace.Formation{oneOff(2)}})
	if got := summary(c.step(), ReasonNew); got != "+run.1 +run.2" {
		t.Fatalf("first plan %q, want both jobs started", got)
	}
	c.agents()
	c.agents()
	first := c.set(1, keyspace.StateDown)
	second := c.set(2, keyspace.StateCrashed)
	for range 20 {
		if p := c.step(); !p.Empty() || !p.NextWake.IsZero() {
			t.Fatalf("plan %+v after the jobs finished, want nothing: %s", p, c)
		}
	}
	c.s.Formations = nil
	if got, want := summary(c.step(), ReasonNoFormation), "-"+second.JobID+" -"+first.JobID; got != want {
		t.Fatalf("plan %q once the formation is removed, want %q", got, want)
	}
	if len(c.s.Assignments) != 0 {
		t.Fatalf("assignments left: %s", c)
	}
}

// TestOneOffProperties marks random formations of random clusters one-off:
// besides the usual properties, a plan starts only new jobs for them and
// never more than their count, and stops their jobs only as surplus or
// for a missing formation.
func TestOneOffProperties(t *testing.T) {
	for seed := range uint64(300) {
		r := rand.New(rand.NewPCG(seed, 0x0ff))
		s := randomSnapshot(r, seed%2 == 0)
		oneOffs := map[formKey]bool{}
		s.Formations = append([]keyspace.Formation(nil), s.Formations...)
		for i, f := range s.Formations {
			if r.IntN(2) == 0 {
				oneOffs[formKey{f.App, f.Release, f.Type}] = true
				s.Formations[i].Template.OneOff = true
			}
		}
		s.Assignments = append([]keyspace.Assignment(nil), s.Assignments...)
		for i, a := range s.Assignments {
			if oneOffs[formKey{a.Spec.App, a.Spec.Release, a.Spec.Type}] {
				s.Assignments[i].Spec.OneOff = true
			}
		}
		t.Run(fmt.Sprintf("seed %d", seed), func(t *testing.T) {
			p := Place(s)
			checkDeterministic(t, r, s, p)
			checkMemory(t, s, p)
			checkCounts(t, s, p)
			checkUp(t, s, p)
			checkRestartJobs(t, s, p)
			checkChanges(t, s, p)
			for _, st := range p.Start {
				if a := st.Assignment; a.Spec.OneOff && (st.Reason != ReasonNew || st.Replaces != "") {
					t.Errorf("one-off job %s started for %s replacing %q", a.JobID, st.Reason, st.Replaces)
				}
			}
			for _, st := range p.Stop {
				if a := st.Assignment; a.Spec.OneOff && st.Reason != ReasonSurplus && st.Reason != ReasonNoFormation {
					t.Errorf("one-off job %s stopped for %s", a.JobID, st.Reason)
				}
			}
			counts := map[formKey]int{}
			for _, f := range s.Formations {
				counts[formKey{f.App, f.Release, f.Type}] = f.Count
			}
			after := map[formKey]int{}
			for _, a := range applied(s, p) {
				after[formKey{a.Spec.App, a.Spec.Release, a.Spec.Type}]++
			}
			for k := range oneOffs {
				if after[k] > counts[k] {
					t.Errorf("%v: %d jobs after the plan, count %d", k, after[k], counts[k])
				}
			}
		})
	}
}
