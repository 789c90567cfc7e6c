package placement

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/gantryhq/gantry/layer0/keyspace"
)

// randomSnapshot builds a cluster: hosts of mixed size, health and zone;
// apps whose process types share memory and constraints across releases,
// some being restarted (RestartedAt in the past or, for a skewed clock, in
// the future); and, unless empty, existing jobs (some on gone hosts, some
// crashed, up or starting, some created after the restart).
func randomSnapshot(r *rand.Rand, empty bool) Snapshot {
	s := Snapshot{Now: t0, Seed: r.Uint64(), GoneSince: map[string]time.Time{}, Jobs: map[string]keyspace.JobState{}}
	zones := []string{"a", "b", "c"}
	// pr draws the hosts that jobs prefer, apart from r, so that the
	// rest of the snapshot of a seed stays what it was without them.
	pr := rand.New(rand.NewPCG(s.Seed, 1))
	for i := range 1 + r.IntN(20) {
		h := host(fmt.Sprintf("h%02d", i), int64(1+r.IntN(8))*gib/2, "zone", zones[r.IntN(3)])
		h.Healthy = r.IntN(8) > 0
		s.Hosts = append(s.Hosts, h)
	}
	for _, app := range []string{"api", "blog", "cron", "db", "shop"}[:1+r.IntN(5)] {
		for _, typ := range []string{"web", "worker"}[:1+r.IntN(2)] {
			mem := []int64{0, 256 << 20, 1 << 30}[r.IntN(3)]
			var constraints map[string]string
			if r.IntN(3) == 0 {
				constraints = map[string]string{"zone": zones[r.IntN(3)]}
			}
			prefer := ""
			if pr.IntN(4) == 0 { // a host of the cluster, or one that is gone
				prefer = fmt.Sprintf("h%02d", pr.IntN(len(s.Hosts)+2))
			}
			for v := range 1 + r.IntN(3) {
				f := form(app, fmt.Sprintf("r%d", v+1), v+1, typ, r.IntN(12))
				f.Template.Resources.Memory = mem
				f.Template.Constraints = constraints
				f.Template.PreferHost = prefer
				switch r.IntN(6) {
				case 0, 1:
					f.RestartedAt = t0.Add(-time.Duration(r.IntN(3600)) * time.Second)
				case 2:
					f.RestartedAt = t0.Add(time.Duration(1+r.IntN(60)) * time.Second)
				}
				if r.IntN(6) > 0 { // else the formation is gone
					s.Formations = append(s.Formations, f)
				}
				if empty {
					continue
				}
				for j := range r.IntN(8) {
					hostID := s.Hosts[r.IntN(len(s.Hosts))].ID
					if r.IntN(6) == 0 {
						hostID = fmt.Sprintf("gone%d", r.IntN(3))
						if r.IntN(2) == 0 {
							s.GoneSince[hostID] = t0.Add(-time.Duration(r.IntN(30)) * time.Second)
						}
					}
					a := assign(f, hostID, fmt.Sprintf("%s-%s-%d-%d", app, typ, v, j), 1+r.IntN(10), t0.Add(-time.Duration(r.IntN(3600))*time.Second))
					a.Restarts = r.IntN(8)
					s.Assignments = append(s.Assignments, a)
					switch r.IntN(5) {
					case 0:
						start := t0.Add(-time.Duration(r.IntN(600)) * time.Second)
						s.Jobs[a.JobID] = crashed(a, start, start.Add(time.Duration(r.IntN(120))*time.Second))
					case 1, 2:
						s.Jobs[a.JobID] = jobState(a, keyspace.StateUp)
					case 3:
						s.Jobs[a.JobID] = jobState(a, keyspace.StateStarting)
					}
				}
			}
		}
	}
	// Some hosts are drained, some gone hosts removed.
	s.Flags = map[string]keyspace.HostFlags{}
	for _, h := range s.Hosts {
		if r.IntN(8) == 0 {
			s.Flags[h.ID] = keyspace.HostFlags{Drain: true, DrainedAt: t0}
		}
	}
	for i := range 3 {
		if r.IntN(4) == 0 {
			s.Flags[fmt.Sprintf("gone%d", i)] = keyspace.HostFlags{Remove: true, RemovedAt: t0}
		}
	}
	return s
}

func shuffled(r *rand.Rand, s Snapshot) Snapshot {
	s.Hosts = append([]keyspace.Host(nil), s.Hosts...)
	s.Formations = append([]keyspace.Formation(nil), s.Formations...)
	s.Assignments = append([]keyspace.Assignment(nil), s.Assignments...)
	r.Shuffle(len(s.Hosts), func(i, j int) { s.Hosts[i], s.Hosts[j] = s.Hosts[j], s.Hosts[i] })
	r.Shuffle(len(s.Formations), func(i, j int) { s.Formations[i], s.Formations[j] = s.Formations[j], s.Formations[i] })
	r.Shuffle(len(s.Assignments), func(i, j int) { s.Assignments[i], s.Assignments[j] = s.Assignments[j], s.Assignments[i] })
	return s
}

func TestPlaceProperties(t *testing.T) {
	for seed := range uint64(400) {
		r := rand.New(rand.NewPCG(seed, 0x5eed))
		empty := seed%2 == 0
		s := randomSnapshot(r, empty)
		t.Run(fmt.Sprintf("seed %d", seed), func(t *testing.T) {
			p := Place(s)
			checkDeterministic(t, r, s, p)
			checkMemory(t, s, p)
			checkCounts(t, s, p)
			checkUp(t, s, p)
			checkRestartJobs(t, s, p)
			checkChanges(t, s, p)
			if empty {
				checkSpread(t, s, p)
			}
		})
	}
}

func checkDeterministic(t *testing.T, r *rand.Rand, s Snapshot, p Plan) {
	t.Helper()
	if again := Place(shuffled(r, s)); !reflect.DeepEqual(p, again) {
		t.Errorf("the same snapshot in another order gives another plan:\n%+v\n%+v", p, again)
	}
}

// checkMemory: a host that receives a job is within its capacity after the
// plan.
func checkMemory(t *testing.T, s Snapshot, p Plan) {
	t.Helper()
	used := map[string]int64{}
	for _, a := range applied(s, p) {
		used[a.HostID] += memory(a.Spec)
	}
	for _, h := range s.Hosts {
		got := false
		for _, st := range p.Start {
			got = got || st.Assignment.HostID == h.ID
		}
		if got && used[h.ID] > h.Memory {
			t.Errorf("host %s: %d bytes used of %d", h.ID, used[h.ID], h.Memory)
		}
	}
}

// checkCounts: after the plan no formation has more jobs than its count,
// except one more for a formation with RestartedAt up to Now that still has
// stale jobs (created before RestartedAt), and one more for each of its
// jobs on a drained host (it keeps running until its successor is up).
func checkCounts(t *testing.T, s Snapshot, p Plan) {
	t.Helper()
	forms := map[formKey]keyspace.Formation{}
	for _, f := range s.Formations {
		forms[formKey{f.App, f.Release, f.Type}] = f
	}
	got, stale, drained := map[formKey]int{}, map[formKey]int{}, map[formKey]int{}
	for _, a := range applied(s, p) {
		k := formKey{a.Spec.App, a.Spec.Release, a.Spec.Type}
		got[k]++
		if a.CreatedAt.Before(forms[k].RestartedAt) {
			stale[k]++
		}
		if s.Flags[a.HostID].Drain {
			drained[k]++
		}
	}
	for k, n := range got {
		f := forms[k]
		if f.PerHost {
			continue // see checkPerHost
		}
		limit := f.Count
		if f.Count > 0 && !f.RestartedAt.IsZero() && !s.Now.Before(f.RestartedAt) && stale[k] > 0 {
			limit = f.Count + 1
		}
		limit += drained[k]
		if n > limit {
			t.Errorf("%v: %d jobs (%d stale), count %d, restarted at %s", k, n, stale[k], f.Count, f.RestartedAt)
		}
	}
	for _, st := range p.Start {
		k := formKey{st.Assignment.Spec.App, st.Assignment.Spec.Release, st.Assignment.Spec.Type}
		if _, ok := forms[k]; !ok {
			t.Errorf("job %s started for a formation that does not exist", st.Assignment.JobID)
		}
	}
}

// checkUp: in every formation, the jobs up after the plan (those up before
// that it does not stop; new jobs are not up yet) are at least the smaller
// of the count and the jobs up before. During a restart, a plan stops a
// stale job that is up only when the jobs left up make the count. A job of
// a drained host stopped for its successor up (checkChanges) counts as
// the successor: the two served one index.
func checkUp(t *testing.T, s Snapshot, p Plan) {
	t.Helper()
	up := func(a keyspace.Assignment) bool {
		st, ok := s.Jobs[a.JobID]
		return ok && st.State == keyspace.StateUp && !lostHost(s, a.HostID)
	}
	stopped, moved := map[string]bool{}, map[string]bool{}
	for _, st := range p.Stop {
		stopped[st.Assignment.JobID] = true
		moved[st.Assignment.JobID] = st.Reason == ReasonDrain
	}
	forms := map[formKey]keyspace.Formation{}
	for _, f := range s.Formations {
		forms[formKey{f.App, f.Release, f.Type}] = f
	}
	before, after, staleUpStopped := map[formKey]int{}, map[formKey]int{}, map[formKey]int{}
	for _, a := range s.Assignments {
		k := formKey{a.Spec.App, a.Spec.Release, a.Spec.Type}
		if !up(a) || moved[a.JobID] {
			continue
		}
		before[k]++
		switch {
		case !stopped[a.JobID]:
			after[k]++
		case a.CreatedAt.Before(forms[k].RestartedAt):
			staleUpStopped[k]++
		}
	}
	for k, n := range before {
		if forms[k].PerHost {
			continue // see checkPerHost
		}
		count := forms[k].Count
		if after[k] < min(count, n) {
			t.Errorf("%v: %d jobs up after the plan, %d before, count %d", k, after[k], n, count)
		}
		f := forms[k]
		restarting := count > 0 && !f.RestartedAt.IsZero() && !s.Now.Before(f.RestartedAt)
		if restarting && staleUpStopped[k] > 0 && after[k] < count {
			t.Errorf("%v: %d stale jobs up stopped with only %d up left, count %d", k, staleUpStopped[k], after[k], count)
		}
	}
}

// checkRestartJobs: a plan starts at most one restart job per formation,
// with no other new job of it, and only when the formation's fresh jobs
// (created at or after RestartedAt) that it keeps are all up.
func checkRestartJobs(t *testing.T, s Snapshot, p Plan) {
	t.Helper()
	forms := map[formKey]keyspace.Formation{}
	for _, f := range s.Formations {
		forms[formKey{f.App, f.Release, f.Type}] = f
	}
	stopped := map[string]bool{}
	for _, st := range p.Stop {
		stopped[st.Assignment.JobID] = true
	}
	restarts, news := map[formKey]int{}, map[formKey]int{}
	for _, st := range p.Start {
		k := formKey{st.Assignment.Spec.App, st.Assignment.Spec.Release, st.Assignment.Spec.Type}
		switch st.Reason {
		case ReasonRestart:
			restarts[k]++
		case ReasonNew:
			news[k]++
		}
	}
	for k, n := range restarts {
		f := forms[k]
		// A per-host formation starts the jobs of hosts that have none
		// whatever its restart.
		if n > 1 || news[k] > 0 && !f.PerHost || f.RestartedAt.IsZero() || s.Now.Before(f.RestartedAt) {
			t.Errorf("%v: %d restart jobs and %d new jobs in one plan, restarted at %s", k, n, news[k], f.RestartedAt)
		}
		for _, a := range s.Assignments {
			if (formKey{a.Spec.App, a.Spec.Release, a.Spec.Type}) != k || stopped[a.JobID] || a.CreatedAt.Before(f.RestartedAt) {
				continue
			}
			if st, ok := s.Jobs[a.JobID]; !ok || st.State != keyspace.StateUp {
				t.Errorf("%v: restart job started while fresh job %s is not up", k, a.JobID)
			}
		}
	}
}

// lostHost reports whether the host id is not registered and has been gone
// for the host grace (for ever when GoneSince does not know it), or was
// removed.
func lostHost(s Snapshot, id string) bool {
	for _, h := range s.Hosts {
		if h.ID == id {
			return false
		}
	}
	if s.Flags[id].Remove {
		return true
	}
	since, ok := s.GoneSince[id]
	grace := s.HostGrace
	if grace == 0 {
		grace = DefaultHostGrace
	}
	return !ok || !s.Now.Before(since.Add(grace))
}

// checkChanges: starts have fresh unique IDs and go to healthy matching
// hosts; stops name existing jobs once; each replaced job is stopped in the
// same plan and replaced once; updates name existing crashed jobs that are
// not stopped, once, and change only their restart time.
func checkChanges(t *testing.T, s Snapshot, p Plan) {
	t.Helper()
	existing := map[string]bool{}
	byID := map[string]keyspace.Assignment{}
	for _, a := range s.Assignments {
		existing[a.JobID] = true
		if _, dup := byID[a.JobID]; !dup {
			byID[a.JobID] = a
		}
	}
	defer func() {
		updated := map[string]bool{}
		for _, a := range p.Update {
			orig, ok := byID[a.JobID]
			if !ok || updated[a.JobID] || s.Jobs[a.JobID].State != keyspace.StateCrashed || a.Spec.OneOff {
				t.Errorf("update of %s: unknown, twice, not crashed or one-off", a.JobID)
				continue
			}
			updated[a.JobID] = true
			for _, st := range p.Stop {
				if st.Assignment.JobID == a.JobID {
					t.Errorf("%s is both updated and stopped", a.JobID)
				}
			}
			if a.RestartAt.Equal(orig.RestartAt) {
				t.Errorf("update of %s changes nothing", a.JobID)
			}
			orig.RestartAt = a.RestartAt
			if !reflect.DeepEqual(a, orig) {
				t.Errorf("update %+v changes more than the restart time of %+v", a, orig)
			}
		}
	}()
	hosts := map[string]keyspace.Host{}
	for _, h := range s.Hosts {
		hosts[h.ID] = h
	}
	stopped := map[string]bool{}
	for _, st := range p.Stop {
		id := st.Assignment.JobID
		if !existing[id] || stopped[id] {
			t.Errorf("stop of %s: unknown or twice", id)
		}
		stopped[id] = true
	}
	perHost := map[formKey]bool{}
	for _, f := range s.Formations {
		perHost[formKey{f.App, f.Release, f.Type}] = perHost[formKey{f.App, f.Release, f.Type}] || f.PerHost
	}
	for _, st := range p.Stop {
		a := st.Assignment
		switch {
		case st.Reason == ReasonDrain && perHost[formKey{a.Spec.App, a.Spec.Release, a.Spec.Type}]:
			// Nothing moves: the other hosts have theirs.
			if !s.Flags[a.HostID].Drain {
				t.Errorf("drain stop of %s on %s, which is not drained", a.JobID, a.HostID)
			}
		case st.Reason == ReasonDrain:
			// Its successor, the job of its index elsewhere, is up and stays.
			successor := false
			for _, b := range s.Assignments {
				successor = successor || b.Index == a.Index && b.JobID != a.JobID && b.Spec.App == a.Spec.App &&
					b.Spec.Release == a.Spec.Release && b.Spec.Type == a.Spec.Type && !stopped[b.JobID] &&
					s.Jobs[b.JobID].State == keyspace.StateUp && !s.Flags[b.HostID].Drain
			}
			if !s.Flags[a.HostID].Drain || !successor {
				t.Errorf("drain stop of %s on %s without a successor up", a.JobID, a.HostID)
			}
		case st.Reason == ReasonHostRemoved:
			if _, registered := hosts[a.HostID]; registered || !s.Flags[a.HostID].Remove {
				t.Errorf("removal stop of %s on %s, which is registered or not removed", a.JobID, a.HostID)
			}
		}
	}
	ids, replaced := map[string]bool{}, map[string]bool{}
	for _, st := range p.Start {
		a := st.Assignment
		if existing[a.JobID] || ids[a.JobID] {
			t.Errorf("start of %s: ID not fresh", a.JobID)
		}
		ids[a.JobID] = true
		h := hosts[a.HostID]
		if !h.Healthy || s.Flags[h.ID].Drain || !matches(h.Tags, a.Spec.Constraints) {
			t.Errorf("%s on host %+v", a.JobID, h)
		}
		if st.Replaces != "" {
			if replaced[st.Replaces] || !stopped[st.Replaces] {
				t.Errorf("%s replaces %s twice or without stopping it", a.JobID, st.Replaces)
			}
			replaced[st.Replaces] = true
		}
	}
}

// checkSpread: within an app/type, when a host has two jobs more than
// another host that could run them, that other host has no room left.
// The app/types whose jobs prefer a host are left out: they gather on it.
func checkSpread(t *testing.T, s Snapshot, p Plan) {
	t.Helper()
	type group struct {
		mem         int64
		constraints map[string]string
		perHost     map[string]int
	}
	groups := map[appType]*group{}
	for _, st := range p.Start {
		a := st.Assignment
		if a.Spec.PreferHost != "" {
			continue
		}
		k := appType{a.Spec.App, a.Spec.Type}
		if groups[k] == nil {
			groups[k] = &group{mem: memory(a.Spec), constraints: a.Spec.Constraints, perHost: map[string]int{}}
		}
		groups[k].perHost[a.HostID]++
	}
	free := map[string]int64{}
	for _, h := range s.Hosts {
		free[h.ID] = h.Memory
	}
	for _, st := range p.Start {
		free[st.Assignment.HostID] -= memory(st.Assignment.Spec)
	}
	for k, g := range groups {
		for _, h1 := range s.Hosts {
			for _, h2 := range s.Hosts {
				if !h2.Healthy || s.Flags[h2.ID].Drain || !matches(h2.Tags, g.constraints) {
					continue
				}
				if g.perHost[h1.ID] > g.perHost[h2.ID]+1 && free[h2.ID] >= g.mem {
					t.Errorf("%v: %s has %d jobs, %s has %d and room for more", k, h1.ID, g.perHost[h1.ID], h2.ID, g.perHost[h2.ID])
				}
			}
		}
	}
}

// BenchmarkPlace10kJobs1kHosts places 10,000 jobs (500 apps with a web and
// a worker type of 10 jobs each) onto 1,000 empty hosts.
func BenchmarkPlace10kJobs1kHosts(b *testing.B) {
	s := Snapshot{Now: t0, Seed: 1}
	for i := range 1000 {
		s.Hosts = append(s.Hosts, host(fmt.Sprintf("host-%04d", i), 16*gib, "zone", fmt.Sprint(i%3)))
	}
	for i := range 500 {
		for _, typ := range []string{"web", "worker"} {
			f := form(fmt.Sprintf("app-%03d", i), "r1", 1, typ, 10)
			f.Template.Env = map[string]string{"PORT": "8080"}
			s.Formations = append(s.Formations, f)
		}
	}
	jobs := 0
	for range b.N {
		jobs += len(Place(s).Start)
	}
	if jobs != 10000*b.N {
		b.Fatalf("placed %d jobs in %d runs, want 10000 each", jobs, b.N)
	}
	b.ReportMetric(float64(jobs)/b.Elapsed().Seconds(), "jobs/s")
}
