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

// everyHost returns a per-host formation of the router kind; its count
// is meaningless and set to 1, as the controller does.
func everyHost(release string, version int) keyspace.Formation {
	f := form("gantry-router", release, version, "router", 1)
	f.PerHost = true
	return f
}

// hostsOf describes where the jobs are after p: "a:r1 b:r1,r2" lists, by
// host, the job IDs (new jobs as "+index").
func hostsOf(s Snapshot, p Plan) string {
	started := map[string]bool{}
	for _, st := range p.Start {
		started[st.Assignment.JobID] = true
	}
	by := map[string][]string{}
	for _, a := range applied(s, p) {
		id := a.JobID
		if started[id] {
			id = fmt.Sprintf("+%d", a.Index)
		}
		by[a.HostID] = append(by[a.HostID], id)
	}
	var parts []string
	for _, h := range slices.Sorted(maps.Keys(by)) {
		slices.Sort(by[h])
		parts = append(parts, h+":"+strings.Join(by[h], ","))
	}
	return strings.Join(parts, " ")
}

func TestPerHost(t *testing.T) {
	r1 := everyHost("r1", 1)
	old := t0.Add(-time.Hour)
	onA := assign(r1, "a", "ja", 1, old)
	onB := assign(r1, "b", "jb", 2, old)
	up := func(as ...keyspace.Assignment) map[string]keyspace.JobState {
		m := map[string]keyspace.JobState{}
		for _, a := range as {
			m[a.JobID] = jobState(a, keyspace.StateUp)
		}
		return m
	}
	zoned := everyHost("r1", 1)
	zoned.Template.Constraints = map[string]string{"zone": "x"}
	big := everyHost("r1", 1)
	big.Template.Resources.Memory = 2 * gib
	five := everyHost("r1", 1)
	five.Count = 5
	restarted := everyHost("r1", 1)
	restarted.RestartedAt = t0.Add(-time.Minute)
	// freshA replaced onA in the restart, on a.
	freshA := assign(restarted, "a", "fa", 1, t0.Add(-time.Second))

	unhealthy := host("c", 8*gib)
	unhealthy.Healthy = false
	tests := []struct {
		name     string
		snap     Snapshot
		want     string // hostsOf after the plan
		stops    string // the stops, "id(reason) ..."
		unplaced []Unplaced
	}{
		{
			name: "one job on each eligible host",
			snap: Snapshot{
				Hosts:      []keyspace.Host{host("a", 8*gib), host("b", 8*gib), unhealthy, host("d", 8*gib)},
				Flags:      map[string]keyspace.HostFlags{"d": {Drain: true}},
				Formations: []keyspace.Formation{r1},
			},
			want: "a:+1 b:+2",
		},
		{
			name: "the count is ignored",
			snap: Snapshot{
				Hosts:      []keyspace.Host{host("a", 8*gib), host("b", 8*gib)},
				Formations: []keyspace.Formation{five},
			},
			want: "a:+1 b:+2",
		},
		{
			name: "only hosts whose tags match",
			snap: Snapshot{
				Hosts:      []keyspace.Host{host("a", 8*gib, "zone", "x"), host("b", 8*gib, "zone", "y")},
				Formations: []keyspace.Formation{zoned},
			},
			want: "a:+1",
		},
		{
			name: "a host that registers later gets one",
			snap: Snapshot{
				Hosts:       []keyspace.Host{host("a", 8*gib), host("b", 8*gib), host("c", 8*gib)},
				Formations:  []keyspace.Formation{r1},
				Assignments: []keyspace.Assignment{onA, onB},
				Jobs:        up(onA, onB),
			},
			want: "a:ja b:jb c:+3",
		},
		{
			name: "two on one host: the one up stays",
			snap: Snapshot{
				Hosts:       []keyspace.Host{host("a", 8*gib)},
				Formations:  []keyspace.Formation{r1},
				Assignments: []keyspace.Assignment{onA, assign(r1, "a", "older", 2, old.Add(-time.Hour))},
				Jobs:        up(onA),
			},
			want:  "a:ja",
			stops: "older(surplus)",
		},
		{
			name: "two up on one host: the oldest stays",
			snap: Snapshot{
				Hosts:       []keyspace.Host{host("a", 8*gib)},
				Formations:  []keyspace.Formation{r1},
				Assignments: []keyspace.Assignment{onA, assign(r1, "a", "newer", 2, old.Add(time.Minute))},
				Jobs:        up(onA, assign(r1, "a", "newer", 2, old.Add(time.Minute))),
			},
			want:  "a:ja",
			stops: "newer(surplus)",
		},
		{
			name: "a job on a lost host goes and is not replaced",
			snap: Snapshot{
				Hosts:       []keyspace.Host{host("a", 8*gib)},
				Formations:  []keyspace.Formation{r1},
				Assignments: []keyspace.Assignment{onA, onB},
				Jobs:        up(onA, onB),
			},
			want:  "a:ja",
			stops: "jb(host-lost)",
		},
		{
			name: "a job on a host gone within the grace stays",
			snap: Snapshot{
				Hosts:       []keyspace.Host{host("a", 8*gib)},
				GoneSince:   map[string]time.Time{"b": t0.Add(-time.Second)},
				Formations:  []keyspace.Formation{r1},
				Assignments: []keyspace.Assignment{onA, onB},
				Jobs:        up(onA, onB),
			},
			want: "a:ja b:jb",
		},
		{
			name: "a job on a drained host stops and nothing moves",
			snap: Snapshot{
				Hosts:       []keyspace.Host{host("a", 8*gib), host("b", 8*gib)},
				Flags:       map[string]keyspace.HostFlags{"a": {Drain: true}},
				Formations:  []keyspace.Formation{r1},
				Assignments: []keyspace.Assignment{onA, onB},
				Jobs:        up(onA, onB),
			},
			want:  "b:jb",
			stops: "ja(drain)",
		},
		{
			name: "a job on a host whose tags no longer match stops",
			snap: Snapshot{
				Hosts:       []keyspace.Host{host("a", 8*gib, "zone", "y")},
				Formations:  []keyspace.Formation{zoned},
				Assignments: []keyspace.Assignment{assign(zoned, "a", "ja", 1, old)},
				Jobs:        up(assign(zoned, "a", "ja", 1, old)),
			},
			stops: "ja(surplus)",
		},
		{
			name: "a job on an unhealthy host stays",
			snap: Snapshot{
				Hosts:       []keyspace.Host{unhealthy},
				Formations:  []keyspace.Formation{r1},
				Assignments: []keyspace.Assignment{assign(r1, "c", "jc", 1, old)},
				Jobs:        up(assign(r1, "c", "jc", 1, old)),
			},
			want: "c:jc",
		},
		{
			name: "a crashed job is replaced on its own host",
			snap: Snapshot{
				// b has more room: a count formation's replacement would go there.
				Hosts:       []keyspace.Host{host("a", 1*gib), host("b", 8*gib)},
				Formations:  []keyspace.Formation{r1},
				Assignments: []keyspace.Assignment{onA, onB},
				Jobs: map[string]keyspace.JobState{
					"ja": crashed(onA, old, t0.Add(-time.Minute)), "jb": jobState(onB, keyspace.StateUp),
				},
			},
			want:  "a:+1 b:jb",
			stops: "ja(crashed)",
		},
		{
			name: "no room on a host: unplaced there",
			snap: Snapshot{
				Hosts:      []keyspace.Host{host("a", 1*gib), host("b", 4*gib)},
				Formations: []keyspace.Formation{big},
			},
			want:     "b:+2",
			unplaced: []Unplaced{{App: "gantry-router", Release: "r1", Type: "router", Index: 1, Reason: ReasonNew}},
		},
		{
			name: "a restart starts on one host at a time, beside the job it replaces",
			snap: Snapshot{
				Hosts:       []keyspace.Host{host("a", 8*gib), host("b", 8*gib)},
				Formations:  []keyspace.Formation{restarted},
				Assignments: []keyspace.Assignment{onA, onB},
				Jobs:        up(onA, onB),
			},
			want: "a:+1,ja b:jb",
		},
		{
			name: "a restart job not up yet: the old job stays, the next host waits",
			snap: Snapshot{
				Hosts:       []keyspace.Host{host("a", 8*gib), host("b", 8*gib)},
				Formations:  []keyspace.Formation{restarted},
				Assignments: []keyspace.Assignment{onA, onB, freshA},
				Jobs:        map[string]keyspace.JobState{"ja": jobState(onA, keyspace.StateUp), "jb": jobState(onB, keyspace.StateUp), "fa": jobState(freshA, keyspace.StateStarting)},
			},
			want: "a:fa,ja b:jb",
		},
		{
			name: "a restart job up: its old job stops and the next host's starts",
			snap: Snapshot{
				Hosts:       []keyspace.Host{host("a", 8*gib), host("b", 8*gib)},
				Formations:  []keyspace.Formation{restarted},
				Assignments: []keyspace.Assignment{onA, onB, freshA},
				Jobs:        up(onA, onB, freshA),
			},
			want:  "a:fa b:+2,jb",
			stops: "ja(restart)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.snap.Now = t0
			p := Place(tt.snap)
			checkPerHost(t, tt.snap, p)
			checkChanges(t, tt.snap, p)
			if got := hostsOf(tt.snap, p); got != tt.want {
				t.Errorf("jobs after the plan %q, want %q", got, tt.want)
			}
			var stops []string
			for _, st := range p.Stop {
				stops = append(stops, fmt.Sprintf("%s(%s)", st.Assignment.JobID, st.Reason))
			}
			if got := strings.Join(stops, " "); got != tt.stops {
				t.Errorf("stops %q, want %q", got, tt.stops)
			}
			if !slices.Equal(p.Unplaced, tt.unplaced) {
				t.Errorf("unplaced %+v, want %+v", p.Unplaced, tt.unplaced)
			}
			for _, st := range p.Start {
				if st.Replaces == "" {
					continue
				}
				for _, a := range tt.snap.Assignments {
					if a.JobID == st.Replaces && a.HostID != st.Assignment.HostID {
						t.Errorf("%s on %s replaces %s of %s", st.Assignment.JobID, st.Assignment.HostID, a.JobID, a.HostID)
					}
				}
			}
		})
	}
}

// checkPerHost: after the plan, a per-host formation has on each host at
// most one job, or during its rolling restart at most one fresh and one
// stale job; none on a drained or lost host; a job on every eligible
// host, or one unplaced; a host that is registered, not drained and
// matches keeps a job up if it had one up; a replacement goes on the
// host of the job it replaces.
func checkPerHost(t *testing.T, s Snapshot, p Plan) {
	t.Helper()
	forms := map[formKey]keyspace.Formation{}
	for _, f := range s.Formations {
		if f.PerHost {
			forms[formKey{f.App, f.Release, f.Type}] = f
		}
	}
	hosts := map[string]keyspace.Host{}
	for _, h := range s.Hosts {
		hosts[h.ID] = h
	}
	stopped := map[string]bool{}
	for _, st := range p.Stop {
		stopped[st.Assignment.JobID] = true
	}
	type slot struct {
		k    formKey
		host string
	}
	fresh, stale, upAfter := map[slot]int{}, map[slot]int{}, map[slot]bool{}
	for _, a := range applied(s, p) {
		k := formKey{a.Spec.App, a.Spec.Release, a.Spec.Type}
		f, ok := forms[k]
		if !ok {
			continue
		}
		sl := slot{k, a.HostID}
		if !f.RestartedAt.IsZero() && !s.Now.Before(f.RestartedAt) && a.CreatedAt.Before(f.RestartedAt) {
			stale[sl]++
		} else {
			fresh[sl]++
		}
		if s.Flags[a.HostID].Drain || lostHost(s, a.HostID) {
			t.Errorf("%v: job %s stays on %s, drained or lost", k, a.JobID, a.HostID)
		}
		if st, ok := s.Jobs[a.JobID]; ok && st.State == keyspace.StateUp && !stopped[a.JobID] {
			upAfter[sl] = true
		}
	}
	for sl, n := range fresh {
		if n > 1 || stale[sl] > 1 {
			t.Errorf("%v on %s: %d fresh and %d stale jobs", sl.k, sl.host, n, stale[sl])
		}
	}
	for sl, n := range stale {
		if n > 1 {
			t.Errorf("%v on %s: %d stale jobs", sl.k, sl.host, n)
		}
	}
	for k, f := range forms {
		for _, h := range s.Hosts {
			sl := slot{k, h.ID}
			if !h.Healthy || s.Flags[h.ID].Drain || !matches(h.Tags, f.Template.Constraints) || fresh[sl]+stale[sl] > 0 {
				continue
			}
			if !slices.ContainsFunc(p.Unplaced, func(u Unplaced) bool { return (formKey{u.App, u.Release, u.Type}) == k }) {
				t.Errorf("%v: eligible host %s has no job and none is unplaced", k, h.ID)
			}
		}
	}
	for _, a := range s.Assignments {
		k := formKey{a.Spec.App, a.Spec.Release, a.Spec.Type}
		f, ok := forms[k]
		h, registered := hosts[a.HostID]
		if !ok || !registered || s.Flags[a.HostID].Drain || !matches(h.Tags, f.Template.Constraints) {
			continue
		}
		if st, ok := s.Jobs[a.JobID]; ok && st.State == keyspace.StateUp && !upAfter[slot{k, a.HostID}] {
			t.Errorf("%v: host %s had %s up and has no job up after the plan", k, a.HostID, a.JobID)
		}
	}
	byID := map[string]keyspace.Assignment{}
	for _, a := range s.Assignments {
		byID[a.JobID] = a
	}
	for _, st := range p.Start {
		if _, ok := forms[formKey{st.Assignment.Spec.App, st.Assignment.Spec.Release, st.Assignment.Spec.Type}]; !ok || st.Replaces == "" {
			continue
		}
		if old := byID[st.Replaces]; old.HostID != st.Assignment.HostID {
			t.Errorf("%s on %s replaces %s of %s", st.Assignment.JobID, st.Assignment.HostID, old.JobID, old.HostID)
		}
	}
}

// TestPerHostProperties checks the properties of every plan, and those
// of per-host formations, on random clusters where about half the
// formations are per-host.
func TestPerHostProperties(t *testing.T) {
	for seed := range uint64(400) {
		r := rand.New(rand.NewPCG(seed, 0x5eed))
		empty := seed%2 == 0
		s := randomSnapshot(r, empty)
		pick := rand.New(rand.NewPCG(seed, 0x9e4))
		for i := range s.Formations {
			s.Formations[i].PerHost = pick.IntN(2) == 0
		}
		t.Run(fmt.Sprintf("seed %d", seed), func(t *testing.T) {
			p := Place(s)
			checkDeterministic(t, r, s, p)
			checkMemory(t, s, p)
			checkCounts(t, s, p)
			checkUp(t, s, p)
			checkRestartJobs(t, s, p)
			checkChanges(t, s, p)
			checkPerHost(t, s, p)
			if empty {
				checkSpread(t, s, p)
			}
		})
	}
}

// TestPerHostConverges runs a per-host formation through a cluster's
// life: hosts register, a rolling restart, a crash, a drain and an
// undrain, a lost host. At every step each host has at most two jobs,
// and once settled exactly one on each eligible host.
func TestPerHostConverges(t *testing.T) {
	f := everyHost("r1", 1)
	c := newSim(t, Snapshot{
		Hosts:      []keyspace.Host{host("a", 8*gib), host("b", 8*gib)},
		Formations: []keyspace.Formation{f},
	})
	settle := func(want string) {
		t.Helper()
		for range 30 {
			settled := c.settled()
			p := c.step()
			c.agents()
			if settled && p.Empty() {
				break
			}
		}
		if got := c.hostList(); got != want {
			t.Fatalf("jobs on %q, want on %q: %s", got, want, c)
		}
	}
	settle("a b")

	c.s.Hosts = append(c.s.Hosts, host("c", 8*gib))
	settle("a b c")

	before := c.s.Assignments
	c.restart(c.s.Now)
	c.s.Now = c.s.Now.Add(time.Second)
	settle("a b c")
	if len(c.stale()) > 0 {
		t.Fatalf("stale jobs left after the restart: %v", c.stale())
	}
	for _, a := range c.s.Assignments {
		if slices.ContainsFunc(before, func(b keyspace.Assignment) bool { return b.JobID == a.JobID }) {
			t.Errorf("job %s was not restarted", a.JobID)
		}
	}

	crashedOn := c.set(2, keyspace.StateCrashed).HostID
	c.step()
	c.agents()
	settle("a b c")
	if i := slices.IndexFunc(c.s.Assignments, func(a keyspace.Assignment) bool { return a.Index == 2 }); i < 0 || c.s.Assignments[i].HostID != crashedOn {
		t.Errorf("the crashed job of %s was not replaced there: %s", crashedOn, c)
	}

	c.s.Flags = map[string]keyspace.HostFlags{"b": {Drain: true}}
	settle("a c")
	c.s.Flags = nil
	settle("a b c")

	c.s.Hosts = slices.DeleteFunc(slices.Clone(c.s.Hosts), func(h keyspace.Host) bool { return h.ID == "c" })
	c.s.GoneSince = map[string]time.Time{"c": c.s.Now}
	settle("a b c") // within the grace
	c.s.Now = c.s.Now.Add(DefaultHostGrace)
	settle("a b")
}

// hostList returns the hosts of the jobs, sorted, one entry per job.
func (c *sim) hostList() string {
	var hs []string
	for _, a := range c.s.Assignments {
		hs = append(hs, a.HostID)
	}
	slices.Sort(hs)
	return strings.Join(hs, " ")
}
