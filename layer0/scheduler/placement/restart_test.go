package placement

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/layer0/keyspace"
)

// sim is a cluster in a test: each step plans, checks the plan against the
// properties, applies it and moves the clock on by a second. The test plays
// the host agents by setting job states.
type sim struct {
	t *testing.T
	s Snapshot
	// restartJobs holds the IDs of the jobs started with ReasonRestart.
	restartJobs map[string]bool
}

func newSim(t *testing.T, s Snapshot) *sim {
	t.Helper()
	if s.Now.IsZero() {
		s.Now = t0
	}
	s.Jobs = maps.Clone(s.Jobs)
	if s.Jobs == nil {
		s.Jobs = map[string]keyspace.JobState{}
	}
	return &sim{t: t, s: s, restartJobs: map[string]bool{}}
}

// step makes one plan, checks it, applies it and returns it. A stopped
// job's state goes with it, as its host agent removes it.
func (c *sim) step() Plan {
	c.t.Helper()
	p := Place(c.s)
	checkCounts(c.t, c.s, p)
	checkUp(c.t, c.s, p)
	checkRestartJobs(c.t, c.s, p)
	checkChanges(c.t, c.s, p)
	checkPerHost(c.t, c.s, p)
	for _, st := range p.Stop {
		delete(c.s.Jobs, st.Assignment.JobID)
	}
	for _, st := range p.Start {
		if st.Reason == ReasonRestart {
			c.restartJobs[st.Assignment.JobID] = true
		}
	}
	c.s.Assignments = applied(c.s, p)
	c.s.Now = c.s.Now.Add(time.Second)
	c.s.Seed++
	return p
}

// set sets the state of the job that has index i and was created last.
func (c *sim) set(i int, state string) keyspace.Assignment {
	c.t.Helper()
	var a keyspace.Assignment
	for _, b := range c.s.Assignments {
		if b.Index == i && (a.JobID == "" || b.CreatedAt.After(a.CreatedAt)) {
			a = b
		}
	}
	if a.JobID == "" {
		c.t.Fatalf("no job with index %d: %s", i, c)
	}
	c.s.Jobs[a.JobID] = keyspace.JobState{JobID: a.JobID, HostID: a.HostID, State: state, StartedAt: c.s.Now, UpdatedAt: c.s.Now}
	return a
}

// agents plays every host agent for one step: a job with no state starts,
// a starting job comes up.
func (c *sim) agents() {
	for _, a := range c.s.Assignments {
		st, ok := c.s.Jobs[a.JobID]
		switch {
		case !ok:
			c.s.Jobs[a.JobID] = keyspace.JobState{JobID: a.JobID, HostID: a.HostID, State: keyspace.StateStarting, StartedAt: c.s.Now, UpdatedAt: c.s.Now}
		case st.State == keyspace.StateStarting:
			st.State, st.UpdatedAt = keyspace.StateUp, c.s.Now
			c.s.Jobs[a.JobID] = st
		}
	}
}

// restart sets RestartedAt of every formation to at.
func (c *sim) restart(at time.Time) {
	c.s.Formations = slices.Clone(c.s.Formations)
	for i := range c.s.Formations {
		c.s.Formations[i].RestartedAt = at
	}
}

// stale returns the IDs of the jobs created before their formation's
// RestartedAt.
func (c *sim) stale() []string {
	at := map[formKey]time.Time{}
	for _, f := range c.s.Formations {
		at[formKey{f.App, f.Release, f.Type}] = f.RestartedAt
	}
	var out []string
	for _, a := range c.s.Assignments {
		if a.CreatedAt.Before(at[formKey{a.Spec.App, a.Spec.Release, a.Spec.Type}]) {
			out = append(out, a.JobID)
		}
	}
	slices.Sort(out)
	return out
}

func (c *sim) up() int {
	n := 0
	for _, a := range c.s.Assignments {
		if c.s.Jobs[a.JobID].State == keyspace.StateUp {
			n++
		}
	}
	return n
}

func (c *sim) String() string {
	var b strings.Builder
	for _, a := range c.s.Assignments {
		fmt.Fprintf(&b, "[%s #%d on %s %s created %s] ", a.JobID, a.Index, a.HostID, c.s.Jobs[a.JobID].State, a.CreatedAt.Format(time.TimeOnly))
	}
	return b.String()
}

// summary describes a plan's changes as "+web.1 -w1": starts by type and
// index, stops by job ID, each with its reason when it is not want.
func summary(p Plan, want Reason) string {
	var parts []string
	for _, st := range p.Start {
		s := fmt.Sprintf("+%s.%d", st.Assignment.Spec.Type, st.Assignment.Index)
		if st.Reason != want {
			s += "(" + string(st.Reason) + ")"
		}
		parts = append(parts, s)
	}
	for _, st := range p.Stop {
		s := "-" + st.Assignment.JobID
		if st.Reason != want {
			s += "(" + string(st.Reason) + ")"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

// upJobs returns assignments of f created an hour before t0 with their
// states up, one per host in turn.
func upJobs(f keyspace.Formation, hosts []string, ids ...string) ([]keyspace.Assignment, map[string]keyspace.JobState) {
	var as []keyspace.Assignment
	jobs := map[string]keyspace.JobState{}
	for i, id := range ids {
		a := assign(f, hosts[i%len(hosts)], id, i+1, t0.Add(-time.Hour))
		as = append(as, a)
		jobs[id] = jobState(a, keyspace.StateUp)
	}
	return as, jobs
}

func TestRestart(t *testing.T) {
	restarted := func(count int, at time.Time) keyspace.Formation {
		f := form("blog", "r1", 1, "web", count)
		f.RestartedAt = at
		return f
	}
	tests := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"count 1: the new job is up before the old one stops", func(t *testing.T) {
			f := restarted(1, t0)
			as, jobs := upJobs(f, []string{"a"}, "w1")
			c := newSim(t, Snapshot{Hosts: []keyspace.Host{host("a", 8*gib)}, Formations: []keyspace.Formation{f}, Assignments: as, Jobs: jobs})
			if got := summary(c.step(), ReasonRestart); got != "+web.1" {
				t.Fatalf("first plan %q, want the restart job web.1", got)
			}
			if got := summary(c.step(), ReasonRestart); got != "" {
				t.Fatalf("plan %q while the new job has no state, want nothing", got)
			}
			c.set(1, keyspace.StateStarting)
			if got := summary(c.step(), ReasonRestart); got != "" {
				t.Fatalf("plan %q while the new job starts, want nothing", got)
			}
			c.set(1, keyspace.StateUp)
			if got := summary(c.step(), ReasonRestart); got != "-w1" {
				t.Fatalf("plan %q once the new job is up, want w1 stopped", got)
			}
			if p := c.step(); !p.Empty() || !p.NextWake.IsZero() || len(c.stale()) != 0 || c.up() != 1 {
				t.Fatalf("after the restart: plan %+v, cluster %s", p, c)
			}
		}},
		{"count 3 rolls one job at a time, each index and host kept", func(t *testing.T) {
			f := restarted(3, t0)
			as, jobs := upJobs(f, []string{"a", "b", "c"}, "w1", "w2", "w3")
			c := newSim(t, Snapshot{
				Hosts:       []keyspace.Host{host("a", 8*gib), host("b", 8*gib), host("c", 8*gib)},
				Formations:  []keyspace.Formation{f},
				Assignments: as, Jobs: jobs,
			})
			var got []string
			for range 20 {
				if s := summary(c.step(), ReasonRestart); s != "" {
					got = append(got, s)
				}
				if c.up() < 3 {
					t.Fatalf("%d jobs up: %s", c.up(), c)
				}
				c.agents()
			}
			want := []string{"+web.1", "+web.2 -w1", "+web.3 -w2", "-w3"}
			if !slices.Equal(got, want) {
				t.Fatalf("plans %q, want %q", got, want)
			}
			if got := indexes(c.s.Assignments); !slices.Equal(got, []int{1, 2, 3}) {
				t.Errorf("indexes %v after the restart", got)
			}
			if want := map[string]int{"a": 1, "b": 1, "c": 1}; !maps.Equal(perHost(c.s, Plan{}), want) {
				t.Errorf("jobs per host %v, want %v", perHost(c.s, Plan{}), want)
			}
		}},
		{"stale crashed job stopped at once", func(t *testing.T) {
			f := restarted(2, t0)
			as, jobs := upJobs(f, []string{"a"}, "w1", "w2")
			as[1].Restarts = 9 // its back-off would be minutes
			jobs["w2"] = crashed(as[1], t0.Add(-time.Minute), t0.Add(-time.Second))
			c := newSim(t, Snapshot{Hosts: []keyspace.Host{host("a", 8*gib)}, Formations: []keyspace.Formation{f}, Assignments: as, Jobs: jobs})
			p := c.step()
			if got := summary(p, ReasonRestart); got != "+web.2(new) -w2" {
				t.Fatalf("plan %q, want w2 stopped and web.2 started", got)
			}
			if p.Start[0].Assignment.Restarts != 0 || p.Start[0].Replaces != "" {
				t.Errorf("start %+v, want a new job", p.Start[0])
			}
			// The restart job waits for the new web.2 to be up.
			if got := summary(c.step(), ReasonRestart); got != "" {
				t.Fatalf("plan %q while web.2 starts, want nothing", got)
			}
			c.set(2, keyspace.StateUp)
			if got := summary(c.step(), ReasonRestart); got != "+web.1" {
				t.Fatalf("plan %q, want the restart job web.1", got)
			}
		}},
		{"fresh job that crashes follows the back-off; no stale job stops", func(t *testing.T) {
			f := restarted(2, t0)
			as, jobs := upJobs(f, []string{"a"}, "w1", "w2")
			c := newSim(t, Snapshot{
				Hosts: []keyspace.Host{host("a", 8*gib)}, Formations: []keyspace.Formation{f}, Assignments: as, Jobs: jobs,
				Backoff: Backoff{Free: -1, Base: 10 * time.Second, Cap: time.Minute},
			})
			if got := summary(c.step(), ReasonRestart); got != "+web.1" {
				t.Fatalf("plan %q, want the restart job web.1", got)
			}
			fresh := c.set(1, keyspace.StateCrashed)
			p := c.step()
			due := c.s.Now.Add(9 * time.Second)
			if len(p.Start)+len(p.Stop) != 0 || !p.NextWake.Equal(due) {
				t.Fatalf("plan %+v during the back-off, want nothing until %s", p, due)
			}
			if len(p.Update) != 1 || p.Update[0].JobID != fresh.JobID || !p.Update[0].RestartAt.Equal(due) {
				t.Fatalf("updates %+v during the back-off, want %s to restart at %s", p.Update, fresh.JobID, due)
			}
			c.s.Now = p.NextWake
			p = c.step()
			if got := summary(p, ReasonCrashed); got != "+web.1 -"+fresh.JobID {
				t.Fatalf("plan %q after the back-off, want the crashed job replaced", got)
			}
			if p.Start[0].Assignment.Restarts != 1 {
				t.Errorf("replacement restarts %d, want 1", p.Start[0].Assignment.Restarts)
			}
			c.set(1, keyspace.StateUp)
			if got := summary(c.step(), ReasonRestart); got != "+web.2 -w1" {
				t.Fatalf("plan %q, want w1 stopped and web.2 started", got)
			}
		}},
		{"restart and scale down at once", func(t *testing.T) {
			f := restarted(1, t0)
			as, jobs := upJobs(f, []string{"a", "b"}, "w1", "w2", "w3")
			c := newSim(t, Snapshot{Hosts: []keyspace.Host{host("a", 8*gib), host("b", 8*gib)}, Formations: []keyspace.Formation{f}, Assignments: as, Jobs: jobs})
			if got := summary(c.step(), ReasonRestart); got != "+web.1 -w3 -w2" {
				t.Fatalf("plan %q, want w2 and w3 stopped and the restart job web.1", got)
			}
			if c.up() != 1 {
				t.Fatalf("%d jobs up, want w1 kept: %s", c.up(), c)
			}
			c.agents()
			c.step()
			c.agents()
			if got := summary(c.step(), ReasonRestart); got != "-w1" {
				t.Fatalf("plan %q, want w1 stopped", got)
			}
		}},
		{"restart and scale up at once", func(t *testing.T) {
			f := restarted(3, t0)
			as, jobs := upJobs(f, []string{"a"}, "w1")
			c := newSim(t, Snapshot{Hosts: []keyspace.Host{host("a", 8*gib)}, Formations: []keyspace.Formation{f}, Assignments: as, Jobs: jobs})
			if got := summary(c.step(), ReasonNew); got != "+web.2 +web.3" {
				t.Fatalf("plan %q, want the new jobs only", got)
			}
			c.agents()
			c.step()
			c.agents()
			if got := summary(c.step(), ReasonRestart); got != "+web.1" {
				t.Fatalf("plan %q once they are up, want the restart job web.1", got)
			}
		}},
		{"RestartedAt in the future", func(t *testing.T) {
			f := restarted(2, t0.Add(10*time.Second))
			as, jobs := upJobs(f, []string{"a"}, "w1")
			c := newSim(t, Snapshot{Hosts: []keyspace.Host{host("a", 8*gib)}, Formations: []keyspace.Formation{f}, Assignments: as, Jobs: jobs})
			p := c.step()
			if got := summary(p, ReasonNew); got != "+web.2" || !p.NextWake.Equal(f.RestartedAt) {
				t.Fatalf("plan %q waking at %s; want only the missing web.2, and a wake at %s", got, p.NextWake, f.RestartedAt)
			}
			c.agents()
			c.agents()
			c.s.Now = f.RestartedAt.Add(-time.Nanosecond)
			if p := c.step(); !p.Empty() {
				t.Fatalf("plan %+v just before RestartedAt, want nothing", p)
			}
			// web.2 was created before RestartedAt: it is stale too.
			c.s.Now = f.RestartedAt
			if got := c.stale(); len(got) != 2 {
				t.Fatalf("stale jobs %v, want both", got)
			}
			p = c.step()
			if got := summary(p, ReasonRestart); got != "+web.1" || !p.Start[0].Assignment.CreatedAt.Equal(f.RestartedAt) {
				t.Fatalf("plan %q at RestartedAt, want the restart job web.1 created then", got)
			}
		}},
		{"complete restart is idempotent", func(t *testing.T) {
			f := restarted(2, t0.Add(-time.Hour))
			as, jobs := upJobs(f, []string{"a"}, "w1", "w2") // created at RestartedAt: fresh
			c := newSim(t, Snapshot{Hosts: []keyspace.Host{host("a", 8*gib)}, Formations: []keyspace.Formation{f}, Assignments: as, Jobs: jobs})
			for range 3 {
				if p := c.step(); !p.Empty() || !p.NextWake.IsZero() {
					t.Fatalf("plan %+v, want nothing", p)
				}
			}
		}},
		{"count 0 does nothing but stop", func(t *testing.T) {
			f := restarted(0, t0)
			as, jobs := upJobs(f, []string{"a"}, "w1", "w2")
			c := newSim(t, Snapshot{Hosts: []keyspace.Host{host("a", 8*gib)}, Formations: []keyspace.Formation{f}, Assignments: as, Jobs: jobs})
			if got := summary(c.step(), ReasonSurplus); got != "-w2 -w1" {
				t.Fatalf("plan %q, want both jobs stopped as surplus", got)
			}
			if p := c.step(); !p.Empty() {
				t.Fatalf("plan %+v, want nothing", p)
			}
		}},
		{"restart asked again during a restart", func(t *testing.T) {
			f := restarted(2, t0)
			as, jobs := upJobs(f, []string{"a"}, "w1", "w2")
			c := newSim(t, Snapshot{Hosts: []keyspace.Host{host("a", 8*gib)}, Formations: []keyspace.Formation{f}, Assignments: as, Jobs: jobs})
			c.step() // the restart job web.1 starts
			c.restart(c.s.Now)
			// The starting web.1 is now stale and not up: it goes, and a
			// restart job of the new restart takes its place.
			p := c.step()
			if got := summary(p, ReasonRestart); got != "+web.1 -"+p.Stop[0].Assignment.JobID || p.Stop[0].Assignment.JobID == "w1" {
				t.Fatalf("plan %q, want the first restart job stopped and another web.1 started", got)
			}
			if c.up() != 2 {
				t.Fatalf("%d jobs up: %s", c.up(), c)
			}
		}},
		{"no room for the restart job: it waits", func(t *testing.T) {
			f := restarted(2, t0)
			as, jobs := upJobs(f, []string{"a"}, "w1", "w2")
			c := newSim(t, Snapshot{Hosts: []keyspace.Host{host("a", 1*gib)}, Formations: []keyspace.Formation{f}, Assignments: as, Jobs: jobs})
			p := c.step()
			want := []Unplaced{{App: "blog", Release: "r1", Type: "web", Index: 1, Reason: ReasonRestart}}
			if !p.Empty() || !slices.Equal(p.Unplaced, want) {
				t.Fatalf("plan %+v, want nothing changed and %+v unplaced", p, want)
			}
		}},
		{"stale job on a lost host stopped at once", func(t *testing.T) {
			f := restarted(2, t0)
			as, jobs := upJobs(f, []string{"a", "gone"}, "w1", "w2")
			delete(jobs, "w2") // its state went with its host's lease
			c := newSim(t, Snapshot{Hosts: []keyspace.Host{host("a", 8*gib)}, Formations: []keyspace.Formation{f}, Assignments: as, Jobs: jobs})
			if got := summary(c.step(), ReasonRestart); got != "+web.2(new) -w2" {
				t.Fatalf("plan %q, want w2 stopped and a new web.2", got)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, tt.run)
	}
}

// TestRestartConverges restarts random clusters whose jobs are all up and
// plays the host agents (a new job starts in one step and is up in the
// next). Every plan holds the properties; the jobs up never drop below
// their count; at most one restart job per formation is on its way at a
// time; and in the end no stale job is left except in formations that
// cannot get a job placed.
func TestRestartConverges(t *testing.T) {
	for seed := range uint64(60) {
		r := rand.New(rand.NewPCG(seed, 0x7e57))
		t.Run(fmt.Sprintf("seed %d", seed), func(t *testing.T) {
			c := newSim(t, randomSnapshot(r, true))
			c.restart(time.Time{})
			settle := func() Plan {
				var p Plan
				for range 100 {
					if p = c.step(); p.Empty() && c.settled() {
						return p
					}
					c.agents()
				}
				t.Fatalf("not settled after 100 steps: %s", c)
				return p
			}
			settle()
			upBefore := c.upPerFormation()
			c.restart(c.s.Now)
			var last Plan
			for range 400 {
				last = c.step()
				for k, n := range c.upPerFormation() {
					if n < upBefore[k] {
						t.Fatalf("%v: %d jobs up, %d before the restart: %s", k, n, upBefore[k], c)
					}
				}
				for k, n := range c.restartJobsStarting() {
					if n > 1 {
						t.Fatalf("%v: %d restart jobs starting at once; plan %s: %s", k, n, summary(last, ""), c)
					}
				}
				if last.Empty() && c.settled() {
					break
				}
				c.agents()
			}
			if !last.Empty() || !c.settled() {
				t.Fatalf("restart not settled after 400 steps: %s", c)
			}
			blocked := map[formKey]bool{}
			for _, u := range last.Unplaced {
				blocked[formKey{u.App, u.Release, u.Type}] = true
			}
			for _, a := range c.s.Assignments {
				k := formKey{a.Spec.App, a.Spec.Release, a.Spec.Type}
				if slices.Contains(c.stale(), a.JobID) && !blocked[k] {
					t.Errorf("stale job %s left in %v, which has nothing unplaced", a.JobID, k)
				}
			}
		})
	}
}

// settled reports whether every job is up.
func (c *sim) settled() bool { return c.up() == len(c.s.Assignments) }

func (c *sim) upPerFormation() map[formKey]int {
	n := map[formKey]int{}
	for _, a := range c.s.Assignments {
		if c.s.Jobs[a.JobID].State == keyspace.StateUp {
			n[formKey{a.Spec.App, a.Spec.Release, a.Spec.Type}]++
		}
	}
	return n
}

// restartJobsStarting counts per formation the restart jobs not yet up.
func (c *sim) restartJobsStarting() map[formKey]int {
	n := map[formKey]int{}
	for _, a := range c.s.Assignments {
		if c.restartJobs[a.JobID] && c.s.Jobs[a.JobID].State != keyspace.StateUp {
			n[formKey{a.Spec.App, a.Spec.Release, a.Spec.Type}]++
		}
	}
	return n
}
