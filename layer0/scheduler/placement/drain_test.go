package placement

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/gantryhq/gantry/layer0/keyspace"
)

var (
	drained = map[string]keyspace.HostFlags{"a": {Drain: true, DrainedAt: t0}}
	removed = map[string]keyspace.HostFlags{"gone": {Remove: true, RemovedAt: t0}}
)

func TestDrain(t *testing.T) {
	web := form("blog", "r1", 1, "web", 2)
	web1 := assign(web, "a", "w1", 1, t0.Add(-time.Hour))
	web2 := assign(web, "b", "w2", 2, t0.Add(-time.Hour))
	// next1 is the successor of web1 on c.
	next1 := assign(web, "c", "n1", 1, t0.Add(-time.Minute))
	up := func(as ...keyspace.Assignment) map[string]keyspace.JobState {
		m := map[string]keyspace.JobState{}
		for _, a := range as {
			m[a.JobID] = jobState(a, keyspace.StateUp)
		}
		return m
	}
	oneOff := form("blog", "build", 1, "build", 1)
	oneOff.Template.OneOff = true
	tests := []struct {
		name  string
		snap  Snapshot
		check func(t *testing.T, s Snapshot, p Plan)
	}{
		{
			name: "a drained host takes no new job",
			snap: Snapshot{
				Hosts:      []keyspace.Host{host("a", 8*gib), host("b", 8*gib)},
				Flags:      drained,
				Formations: []keyspace.Formation{form("blog", "r1", 1, "web", 3)},
			},
			check: func(t *testing.T, s Snapshot, p Plan) {
				if got := perHost(s, p); got["a"] != 0 || got["b"] != 3 {
					t.Errorf("jobs per host = %v, want all 3 on b", got)
				}
			},
		},
		{
			name: "a job of a drained host gets a successor elsewhere and keeps running",
			snap: Snapshot{
				Hosts:       []keyspace.Host{host("a", 8*gib), host("b", 8*gib), host("c", 8*gib)},
				Flags:       drained,
				Formations:  []keyspace.Formation{web},
				Assignments: []keyspace.Assignment{web1, web2},
				Jobs:        up(web1, web2),
			},
			check: func(t *testing.T, s Snapshot, p Plan) {
				if got := summary(p, ReasonDrain); got != "+web.1" {
					t.Errorf("plan %q, want +web.1", got)
				}
				st := p.Start[0]
				if st.Assignment.HostID != "c" || st.Replaces != "" {
					t.Errorf("start %+v: want on c, the spread's choice, replacing nothing yet", st)
				}
			},
		},
		{
			name: "the successor is starting: nothing stops",
			snap: Snapshot{
				Hosts:       []keyspace.Host{host("a", 8*gib), host("b", 8*gib), host("c", 8*gib)},
				Flags:       drained,
				Formations:  []keyspace.Formation{web},
				Assignments: []keyspace.Assignment{web1, web2, next1},
				Jobs: map[string]keyspace.JobState{
					"w1": jobState(web1, keyspace.StateUp), "w2": jobState(web2, keyspace.StateUp),
					"n1": jobState(next1, keyspace.StateStarting),
				},
			},
			check: func(t *testing.T, s Snapshot, p Plan) {
				if !p.Empty() {
					t.Errorf("plan %q, want none", summary(p, ReasonDrain))
				}
			},
		},
		{
			name: "the successor is up: the job of the drained host stops",
			snap: Snapshot{
				Hosts:       []keyspace.Host{host("a", 8*gib), host("b", 8*gib), host("c", 8*gib)},
				Flags:       drained,
				Formations:  []keyspace.Formation{web},
				Assignments: []keyspace.Assignment{web1, web2, next1},
				Jobs:        up(web1, web2, next1),
			},
			check: func(t *testing.T, s Snapshot, p Plan) {
				if got := summary(p, ReasonDrain); got != "-w1" {
					t.Errorf("plan %q, want -w1", got)
				}
			},
		},
		{
			name: "nowhere to move: unplaced, the job keeps running",
			snap: Snapshot{
				Hosts:       []keyspace.Host{host("a", 8*gib), host("b", 512<<20)},
				Flags:       drained,
				Formations:  []keyspace.Formation{web},
				Assignments: []keyspace.Assignment{web1, web2},
				Jobs:        up(web1, web2),
			},
			check: func(t *testing.T, s Snapshot, p Plan) {
				if !p.Empty() {
					t.Errorf("plan %q, want none", summary(p, ReasonDrain))
				}
				want := []Unplaced{{App: "blog", Release: "r1", Type: "web", Index: 1, Reason: ReasonDrain, Replaces: "w1"}}
				if !slices.Equal(p.Unplaced, want) {
					t.Errorf("unplaced = %+v, want %+v", p.Unplaced, want)
				}
			},
		},
		{
			name: "the only host drained: every job stays",
			snap: Snapshot{
				Hosts:       []keyspace.Host{host("a", 8*gib)},
				Flags:       drained,
				Formations:  []keyspace.Formation{form("blog", "r1", 1, "web", 1)},
				Assignments: []keyspace.Assignment{web1},
				Jobs:        up(web1),
			},
			check: func(t *testing.T, s Snapshot, p Plan) {
				if !p.Empty() || len(p.Unplaced) != 1 || p.Unplaced[0].Replaces != "w1" {
					t.Errorf("plan %q, unplaced %+v: want no change, w1 unplaced", summary(p, ReasonDrain), p.Unplaced)
				}
			},
		},
		{
			name: "a one-off job runs to its end on a drained host",
			snap: Snapshot{
				Hosts:       []keyspace.Host{host("a", 8*gib), host("b", 8*gib)},
				Flags:       drained,
				Formations:  []keyspace.Formation{oneOff},
				Assignments: []keyspace.Assignment{assign(oneOff, "a", "b1", 1, t0)},
				Jobs:        map[string]keyspace.JobState{"b1": {JobID: "b1", HostID: "a", State: keyspace.StateUp}},
			},
			check: func(t *testing.T, s Snapshot, p Plan) {
				if !p.Empty() || len(p.Unplaced) != 0 {
					t.Errorf("plan %q, unplaced %+v: want none", summary(p, ReasonDrain), p.Unplaced)
				}
			},
		},
		{
			name: "a crashed job of a drained host is replaced elsewhere",
			snap: Snapshot{
				Hosts:       []keyspace.Host{host("a", 8*gib), host("b", 8*gib)},
				Flags:       drained,
				Formations:  []keyspace.Formation{form("blog", "r1", 1, "web", 1)},
				Assignments: []keyspace.Assignment{web1},
				Jobs:        map[string]keyspace.JobState{"w1": crashed(web1, t0.Add(-time.Hour), t0.Add(-time.Minute))},
			},
			check: func(t *testing.T, s Snapshot, p Plan) {
				if got := summary(p, ReasonCrashed); got != "+web.1 -w1" || p.Start[0].Assignment.HostID != "b" {
					t.Errorf("plan %q on %s, want +web.1 -w1 on b", got, p.Start[0].Assignment.HostID)
				}
			},
		},
		{
			name: "the count went down: the job of the drained host stops first",
			snap: Snapshot{
				Hosts:       []keyspace.Host{host("a", 8*gib), host("b", 8*gib)},
				Flags:       drained,
				Formations:  []keyspace.Formation{form("blog", "r1", 1, "web", 1)},
				Assignments: []keyspace.Assignment{web1, web2},
				Jobs:        up(web1, web2),
			},
			check: func(t *testing.T, s Snapshot, p Plan) {
				if got := summary(p, ReasonSurplus); got != "-w1" {
					t.Errorf("plan %q, want -w1", got)
				}
			},
		},
		{
			name: "undrained with a successor up: one of the index stops",
			snap: Snapshot{
				Hosts:       []keyspace.Host{host("a", 8*gib), host("b", 8*gib), host("c", 8*gib)},
				Formations:  []keyspace.Formation{web},
				Assignments: []keyspace.Assignment{web1, web2, next1},
				Jobs:        up(web1, web2, next1),
			},
			check: func(t *testing.T, s Snapshot, p Plan) {
				if got := summary(p, ReasonSurplus); got != "-n1" {
					t.Errorf("plan %q, want -n1 (the newest)", got)
				}
			},
		},
		{
			name: "a removed host loses its assignments at once, one-off jobs' aside",
			snap: Snapshot{
				Now:        t0,
				Hosts:      []keyspace.Host{host("b", 8*gib)},
				GoneSince:  map[string]time.Time{"gone": t0.Add(-time.Second)}, // well within the grace
				Flags:      removed,
				Formations: []keyspace.Formation{web, oneOff},
				Assignments: []keyspace.Assignment{
					assign(web, "gone", "w1", 1, t0.Add(-time.Hour)), web2, assign(oneOff, "gone", "b1", 1, t0),
				},
				Jobs: up(web2),
			},
			check: func(t *testing.T, s Snapshot, p Plan) {
				if got := summary(p, ""); got != "+web.1(new) -w1(host-removed)" {
					t.Errorf("plan %q, want +web.1(new) -w1(host-removed)", got)
				}
				if p.Start[0].Assignment.HostID != "b" {
					t.Errorf("web.1 on %s, want b", p.Start[0].Assignment.HostID)
				}
			},
		},
		{
			name: "a removed host that is registered again keeps its jobs",
			snap: Snapshot{
				Hosts:       []keyspace.Host{host("gone", 8*gib), host("b", 8*gib)},
				Flags:       removed,
				Formations:  []keyspace.Formation{web},
				Assignments: []keyspace.Assignment{assign(web, "gone", "w1", 1, t0.Add(-time.Hour)), web2},
				Jobs:        map[string]keyspace.JobState{"w1": {JobID: "w1", HostID: "gone", State: keyspace.StateUp}, "w2": jobState(web2, keyspace.StateUp)},
			},
			check: func(t *testing.T, s Snapshot, p Plan) {
				if !p.Empty() {
					t.Errorf("plan %q, want none", summary(p, ""))
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.snap.Now.IsZero() {
				tc.snap.Now = t0
			}
			p := Place(tc.snap)
			checkCounts(t, tc.snap, p)
			checkUp(t, tc.snap, p)
			checkChanges(t, tc.snap, p)
			tc.check(t, tc.snap, p)
		})
	}
}

// TestDrainConverges drains a host of random clusters whose jobs are all
// up and plays the host agents. The jobs up never drop below their count
// or what was up before, and in the end the drained host runs no job but
// one-off jobs and those reported unplaced.
func TestDrainConverges(t *testing.T) {
	for seed := range uint64(60) {
		r := rand.New(rand.NewPCG(seed, 0xd7a1))
		t.Run(fmt.Sprintf("seed %d", seed), func(t *testing.T) {
			s := randomSnapshot(r, true)
			s.Flags = nil
			c := newSim(t, s)
			settle := func(steps int) Plan {
				t.Helper()
				var p Plan
				for range steps {
					if p = c.step(); p.Empty() && c.settled() {
						return p
					}
					c.agents()
				}
				t.Fatalf("not settled after %d steps: %s", steps, c)
				return p
			}
			settle(100)
			upBefore := c.upPerFormation()
			target := c.s.Hosts[r.IntN(len(c.s.Hosts))].ID
			c.s.Flags = map[string]keyspace.HostFlags{target: {Drain: true, DrainedAt: c.s.Now}}
			var last Plan
			for range 400 {
				last = c.step()
				for k, n := range c.upPerFormation() {
					if n < upBefore[k] {
						t.Fatalf("%v: %d jobs up, %d before the drain: %s", k, n, upBefore[k], c)
					}
				}
				if last.Empty() && c.settled() {
					break
				}
				c.agents()
			}
			if !last.Empty() || !c.settled() {
				t.Fatalf("drain not settled after 400 steps: %s", c)
			}
			stuck := map[string]bool{}
			for _, u := range last.Unplaced {
				stuck[u.Replaces] = u.Reason == ReasonDrain
			}
			for _, a := range c.s.Assignments {
				if a.HostID == target && !a.Spec.OneOff && !stuck[a.JobID] {
					t.Errorf("job %s left on drained host %s and not reported unplaced", a.JobID, target)
				}
			}
		})
	}
}
