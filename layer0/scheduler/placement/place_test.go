package placement

import (
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/gantryhq/gantry/layer0/keyspace"
)

const gib = int64(1) << 30

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func host(id string, mem int64, tags ...string) keyspace.Host {
	h := keyspace.Host{ID: id, Memory: mem, Healthy: true}
	for i := 0; i+1 < len(tags); i += 2 {
		if h.Tags == nil {
			h.Tags = map[string]string{}
		}
		h.Tags[tags[i]] = tags[i+1]
	}
	return h
}

func form(app, release string, version int, typ string, count int) keyspace.Formation {
	return keyspace.Formation{
		App: app, Release: release, Type: typ, Count: count,
		Template: keyspace.JobSpec{ReleaseVersion: version, Image: "img:" + release},
	}
}

func assign(f keyspace.Formation, hostID, jobID string, index int, created time.Time) keyspace.Assignment {
	spec := f.Template
	spec.App, spec.Release, spec.Type = f.App, f.Release, f.Type
	return keyspace.Assignment{JobID: jobID, HostID: hostID, Spec: spec, Index: index, CreatedAt: created}
}

func jobState(a keyspace.Assignment, state string) keyspace.JobState {
	return keyspace.JobState{JobID: a.JobID, HostID: a.HostID, State: state}
}

func crashed(a keyspace.Assignment, started, at time.Time) keyspace.JobState {
	return keyspace.JobState{JobID: a.JobID, HostID: a.HostID, State: keyspace.StateCrashed, StartedAt: started, UpdatedAt: at}
}

// perHost counts the jobs per host after applying p to s.
func perHost(s Snapshot, p Plan) map[string]int {
	n := map[string]int{}
	for _, a := range applied(s, p) {
		n[a.HostID]++
	}
	return n
}

// applied returns the assignments of s after p.
func applied(s Snapshot, p Plan) []keyspace.Assignment {
	stopped := map[string]bool{}
	for _, st := range p.Stop {
		stopped[st.Assignment.JobID] = true
	}
	updated := map[string]keyspace.Assignment{}
	for _, a := range p.Update {
		updated[a.JobID] = a
	}
	var out []keyspace.Assignment
	for _, a := range s.Assignments {
		if u, ok := updated[a.JobID]; ok {
			a = u
		}
		if !stopped[a.JobID] {
			out = append(out, a)
		}
	}
	for _, st := range p.Start {
		out = append(out, st.Assignment)
	}
	return out
}

func indexes(as []keyspace.Assignment) []int {
	var out []int
	for _, a := range as {
		out = append(out, a.Index)
	}
	slices.Sort(out)
	return out
}

func stopIDs(p Plan) []string {
	var out []string
	for _, s := range p.Stop {
		out = append(out, s.Assignment.JobID)
	}
	return out
}

func TestPlace(t *testing.T) {
	web := form("blog", "r1", 1, "web", 3)
	webV2 := form("blog", "r2", 2, "web", 3)
	tests := []struct {
		name  string
		snap  Snapshot
		check func(t *testing.T, s Snapshot, p Plan)
	}{
		{
			name: "spread",
			snap: Snapshot{
				Hosts:      []keyspace.Host{host("c", 8*gib), host("a", 8*gib), host("b", 8*gib)},
				Formations: []keyspace.Formation{form("blog", "r1", 1, "web", 7)},
			},
			check: func(t *testing.T, s Snapshot, p Plan) {
				want := map[string]int{"a": 3, "b": 2, "c": 2}
				if got := perHost(s, p); !reflect.DeepEqual(got, want) {
					t.Errorf("jobs per host = %v, want %v", got, want)
				}
				if got := indexes(applied(s, p)); !slices.Equal(got, []int{1, 2, 3, 4, 5, 6, 7}) {
					t.Errorf("indexes = %v", got)
				}
				for _, st := range p.Start {
					if st.Reason != ReasonNew || st.Replaces != "" || st.Assignment.Restarts != 0 || !st.Assignment.CreatedAt.Equal(s.Now) {
						t.Errorf("start %+v", st)
					}
					if st.Assignment.Spec.Resources.Memory != DefaultMemory {
						t.Errorf("memory %d, want the default filled in", st.Assignment.Spec.Resources.Memory)
					}
				}
			},
		},
		{
			name: "spread counts every release of an app type",
			snap: Snapshot{
				Hosts:      []keyspace.Host{host("a", 8*gib), host("b", 8*gib)},
				Formations: []keyspace.Formation{web, webV2, form("blog", "r2", 2, "worker", 1)},
				Assignments: []keyspace.Assignment{
					assign(web, "a", "w1", 1, t0), assign(web, "a", "w2", 2, t0), assign(web, "b", "w3", 3, t0),
				},
			},
			check: func(t *testing.T, s Snapshot, p Plan) {
				n := map[string]int{}
				for _, st := range p.Start {
					if st.Assignment.Spec.Type == "web" {
						n[st.Assignment.HostID]++
					}
				}
				if want := map[string]int{"a": 1, "b": 2}; !reflect.DeepEqual(n, want) {
					t.Errorf("new web jobs per host = %v, want %v", n, want)
				}
			},
		},
		{
			name: "capacity",
			snap: Snapshot{
				Hosts: []keyspace.Host{host("a", 1*gib), host("b", 5*gib/4), host("empty", 0)},
				Formations: []keyspace.Formation{
					form("blog", "r1", 1, "web", 5),
				},
			},
			check: func(t *testing.T, s Snapshot, p Plan) {
				if want := map[string]int{"a": 2, "b": 2}; !reflect.DeepEqual(perHost(s, p), want) {
					t.Errorf("jobs per host = %v, want %v", perHost(s, p), want)
				}
				if len(p.Unplaced) != 1 || p.Unplaced[0].Index != 5 || p.Unplaced[0].Reason != ReasonNew {
					t.Errorf("unplaced = %+v, want index 5", p.Unplaced)
				}
			},
		},
		{
			name: "explicit memory",
			snap: Snapshot{
				Hosts: []keyspace.Host{host("a", 1*gib), host("b", 1*gib)},
				Formations: []keyspace.Formation{func() keyspace.Formation {
					f := form("blog", "r1", 1, "web", 3)
					f.Template.Resources.Memory = 600 << 20
					return f
				}()},
			},
			check: func(t *testing.T, s Snapshot, p Plan) {
				if len(p.Start) != 2 || len(p.Unplaced) != 1 {
					t.Errorf("%d started, %d unplaced; want 2 and 1", len(p.Start), len(p.Unplaced))
				}
			},
		},
		{
			name: "tags",
			snap: Snapshot{
				Hosts: []keyspace.Host{
					host("a", 8*gib, "zone", "a"), host("b1", 8*gib, "zone", "b", "disk", "ssd"),
					host("b2", 8*gib, "zone", "b"), host("c", 8*gib),
				},
				Formations: []keyspace.Formation{func() keyspace.Formation {
					f := form("db", "r1", 1, "main", 3)
					f.Template.Constraints = map[string]string{"zone": "b", "disk": "ssd"}
					return f
				}(), func() keyspace.Formation {
					f := form("blog", "r1", 1, "web", 4)
					f.Template.Constraints = map[string]string{"zone": "b"}
					return f
				}()},
			},
			check: func(t *testing.T, s Snapshot, p Plan) {
				for _, st := range p.Start {
					a := st.Assignment
					if a.Spec.App == "db" && a.HostID != "b1" || a.Spec.App == "blog" && a.HostID != "b1" && a.HostID != "b2" {
						t.Errorf("%s placed on %s", a.JobID, a.HostID)
					}
				}
				if len(p.Start) != 7 {
					t.Errorf("%d started, want 7", len(p.Start))
				}
			},
		},
		{
			name: "unhealthy hosts get nothing new and keep their jobs",
			snap: Snapshot{
				Hosts: []keyspace.Host{host("a", 8*gib), {ID: "sick", Memory: 8 * gib, Reason: "docker down"}},
				Formations: []keyspace.Formation{
					form("blog", "r1", 1, "web", 3),
				},
				Assignments: []keyspace.Assignment{assign(web, "sick", "w1", 1, t0)},
			},
			check: func(t *testing.T, s Snapshot, p Plan) {
				if len(p.Stop) != 0 {
					t.Errorf("stops %v", stopIDs(p))
				}
				for _, st := range p.Start {
					if st.Assignment.HostID != "a" {
						t.Errorf("%s placed on %s", st.Assignment.JobID, st.Assignment.HostID)
					}
				}
				if got := indexes(applied(s, p)); !slices.Equal(got, []int{1, 2, 3}) {
					t.Errorf("indexes = %v", got)
				}
			},
		},
		{
			name: "surplus stop order",
			snap: Snapshot{
				Hosts: []keyspace.Host{host("a", 8*gib), host("b", 8*gib)},
				Formations: []keyspace.Formation{
					form("blog", "r1", 1, "web", 1),
					form("blog", "r2", 2, "web", 1),
				},
				Assignments: []keyspace.Assignment{
					assign(webV2, "a", "new-old", 1, t0),
					assign(webV2, "b", "new-newest", 3, t0.Add(2*time.Minute)),
					assign(webV2, "a", "new-mid", 2, t0.Add(time.Minute)),
					assign(web, "a", "old-1", 1, t0.Add(-time.Hour)),
					assign(web, "b", "old-2", 2, t0.Add(-time.Hour)),
					assign(web, "b", "old-3", 3, t0.Add(-time.Hour)),
					assign(form("gone", "r9", 9, "web", 0), "a", "gone-1", 1, t0),
				},
			},
			check: func(t *testing.T, s Snapshot, p Plan) {
				want := []string{"old-3", "old-2", "new-newest", "new-mid", "gone-1"}
				if got := stopIDs(p); !slices.Equal(got, want) {
					t.Errorf("stops = %v, want %v", got, want)
				}
				for _, st := range p.Stop {
					wantReason := ReasonSurplus
					if st.Assignment.Spec.App == "gone" {
						wantReason = ReasonNoFormation
					}
					if st.Reason != wantReason {
						t.Errorf("%s stopped for %s, want %s", st.Assignment.JobID, st.Reason, wantReason)
					}
				}
				if len(p.Start) != 0 {
					t.Errorf("starts %+v", p.Start)
				}
			},
		},
		{
			name: "surplus stops broken jobs first",
			snap: Snapshot{
				Hosts:      []keyspace.Host{host("a", 8*gib)},
				Formations: []keyspace.Formation{form("blog", "r1", 1, "web", 1)},
				Assignments: []keyspace.Assignment{
					assign(web, "a", "w1", 1, t0), assign(web, "a", "w2", 2, t0.Add(time.Second)),
				},
				Jobs: map[string]keyspace.JobState{"w1": crashed(assign(web, "a", "w1", 1, t0), t0, t0.Add(time.Hour))},
				Now:  t0.Add(2 * time.Hour),
			},
			check: func(t *testing.T, s Snapshot, p Plan) {
				if got := stopIDs(p); !slices.Equal(got, []string{"w1"}) || len(p.Start) != 0 {
					t.Errorf("stops = %v, starts %d; want only w1 stopped", got, len(p.Start))
				}
			},
		},
		{
			name: "index reuse",
			snap: Snapshot{
				Hosts:      []keyspace.Host{host("a", 8*gib)},
				Formations: []keyspace.Formation{form("blog", "r1", 1, "web", 5)},
				Assignments: []keyspace.Assignment{
					assign(web, "a", "w1", 1, t0), assign(web, "a", "w3", 3, t0),
				},
			},
			check: func(t *testing.T, s Snapshot, p Plan) {
				var got []int
				for _, st := range p.Start {
					got = append(got, st.Assignment.Index)
				}
				if !slices.Equal(got, []int{2, 4, 5}) {
					t.Errorf("new indexes = %v, want [2 4 5]", got)
				}
			},
		},
		{
			name: "crashed job is replaced with the same index",
			snap: Snapshot{
				Hosts:       []keyspace.Host{host("a", 1*gib)},
				Formations:  []keyspace.Formation{form("blog", "r1", 1, "web", 2)},
				Assignments: []keyspace.Assignment{assign(web, "a", "w1", 1, t0), assign(web, "a", "w2", 2, t0)},
				Jobs:        map[string]keyspace.JobState{"w2": crashed(assign(web, "a", "w2", 2, t0), t0, t0.Add(time.Second))},
				Now:         t0.Add(2 * time.Second),
			},
			check: func(t *testing.T, s Snapshot, p Plan) {
				// The host is full: the replacement takes the old job's room.
				if len(p.Start) != 1 || len(p.Stop) != 1 {
					t.Fatalf("starts %+v stops %+v", p.Start, p.Stop)
				}
				st := p.Start[0]
				if st.Replaces != "w2" || st.Reason != ReasonCrashed || st.Assignment.Index != 2 || st.Assignment.Restarts != 1 || st.Assignment.HostID != "a" {
					t.Errorf("start %+v", st)
				}
				if p.Stop[0].Assignment.JobID != "w2" || p.Stop[0].Reason != ReasonCrashed {
					t.Errorf("stop %+v", p.Stop[0])
				}
			},
		},
		{
			name: "restart count resets after the job was up a while",
			snap: func() Snapshot {
				a := assign(web, "a", "w1", 1, t0)
				a.Restarts = 9
				return Snapshot{
					Hosts:       []keyspace.Host{host("a", 8*gib)},
					Formations:  []keyspace.Formation{form("blog", "r1", 1, "web", 1)},
					Assignments: []keyspace.Assignment{a},
					Jobs:        map[string]keyspace.JobState{"w1": crashed(a, t0, t0.Add(DefaultReset))},
					Now:         t0.Add(DefaultReset),
				}
			}(),
			check: func(t *testing.T, s Snapshot, p Plan) {
				if len(p.Start) != 1 || p.Start[0].Assignment.Restarts != 0 || p.Start[0].Replaces != "w1" {
					t.Errorf("starts %+v, want one with restarts 0 at once", p.Start)
				}
			},
		},
		{
			name: "restart count kept when the job was up briefly",
			snap: func() Snapshot {
				a := assign(web, "a", "w1", 1, t0)
				a.Restarts = 9
				return Snapshot{
					Hosts:       []keyspace.Host{host("a", 8*gib)},
					Formations:  []keyspace.Formation{form("blog", "r1", 1, "web", 1)},
					Assignments: []keyspace.Assignment{a},
					Jobs:        map[string]keyspace.JobState{"w1": crashed(a, t0, t0.Add(DefaultReset-time.Second))},
					Now:         t0.Add(DefaultReset),
				}
			}(),
			check: func(t *testing.T, s Snapshot, p Plan) {
				want := t0.Add(DefaultReset - time.Second + 64*time.Second)
				if len(p.Start)+len(p.Stop) != 0 {
					t.Errorf("plan %+v, want to wait", p)
				}
				if len(p.Update) != 1 || p.Update[0].JobID != "w1" || !p.Update[0].RestartAt.Equal(want) || p.Update[0].Restarts != 9 {
					t.Errorf("updates %+v, want w1 to restart at %s", p.Update, want)
				}
				if !p.NextWake.Equal(want) {
					t.Errorf("next wake %s, want %s", p.NextWake, want)
				}
			},
		},
		{
			name: "lost host within grace",
			snap: Snapshot{
				Hosts:       []keyspace.Host{host("a", 8*gib)},
				GoneSince:   map[string]time.Time{"gone": t0.Add(-DefaultHostGrace + 2*time.Second)},
				Formations:  []keyspace.Formation{form("blog", "r1", 1, "web", 1)},
				Assignments: []keyspace.Assignment{assign(web, "gone", "w1", 1, t0.Add(-time.Hour))},
				Now:         t0,
			},
			check: func(t *testing.T, s Snapshot, p Plan) {
				if !p.Empty() {
					t.Errorf("plan %+v, want nothing within the grace", p)
				}
				if want := t0.Add(2 * time.Second); !p.NextWake.Equal(want) {
					t.Errorf("next wake %s, want %s", p.NextWake, want)
				}
			},
		},
		{
			name: "lost host after grace",
			snap: func() Snapshot {
				a := assign(web, "gone", "w1", 1, t0.Add(-time.Hour))
				a.Restarts = 2
				return Snapshot{
					Hosts:       []keyspace.Host{host("a", 8*gib), {ID: "sick", Memory: 8 * gib}},
					GoneSince:   map[string]time.Time{"gone": t0.Add(-DefaultHostGrace)},
					Formations:  []keyspace.Formation{form("blog", "r1", 1, "web", 2)},
					Assignments: []keyspace.Assignment{a, assign(web, "vanished", "w2", 2, t0.Add(-time.Hour))},
					Now:         t0,
				}
			}(),
			check: func(t *testing.T, s Snapshot, p Plan) {
				if len(p.Start) != 2 {
					t.Fatalf("starts %+v", p.Start)
				}
				for i, st := range p.Start {
					wantRestarts := []int{2, 0}[i]
					if st.Reason != ReasonHostLost || st.Assignment.HostID != "a" || st.Assignment.Index != i+1 || st.Assignment.Restarts != wantRestarts {
						t.Errorf("start %+v", st)
					}
				}
				if got := stopIDs(p); !slices.Equal(got, []string{"w2", "w1"}) {
					t.Errorf("stops %v", got)
				}
			},
		},
		{
			name: "no host available",
			snap: func() Snapshot {
				a := assign(web, "gone", "w1", 1, t0.Add(-time.Hour))
				c := assign(web, "a", "w2", 2, t0.Add(-time.Hour))
				return Snapshot{
					Hosts:       []keyspace.Host{host("a", 512<<20), {ID: "sick", Memory: 8 * gib}},
					Formations:  []keyspace.Formation{form("blog", "r1", 1, "web", 3)},
					Assignments: []keyspace.Assignment{a, c},
					Jobs:        map[string]keyspace.JobState{"w2": crashed(c, t0.Add(-time.Hour), t0.Add(-time.Minute))},
					Now:         t0,
				}
			}(),
			check: func(t *testing.T, s Snapshot, p Plan) {
				// The crashed job's replacement takes its own room on a;
				// the lost and the new job fit nowhere.
				if len(p.Start) != 1 || p.Start[0].Replaces != "w2" {
					t.Errorf("starts %+v, want only the replacement of w2", p.Start)
				}
				if got := stopIDs(p); !slices.Equal(got, []string{"w2"}) {
					t.Errorf("stops %v: the lost job must stay until a host can take it", got)
				}
				want := []Unplaced{
					{App: "blog", Release: "r1", Type: "web", Index: 1, Reason: ReasonHostLost, Replaces: "w1"},
					{App: "blog", Release: "r1", Type: "web", Index: 3, Reason: ReasonNew},
				}
				if !reflect.DeepEqual(p.Unplaced, want) {
					t.Errorf("unplaced %+v, want %+v", p.Unplaced, want)
				}
			},
		},
		{
			name: "job without state is left alone",
			snap: Snapshot{
				Hosts:       []keyspace.Host{host("a", 8*gib)},
				Formations:  []keyspace.Formation{form("blog", "r1", 1, "web", 1)},
				Assignments: []keyspace.Assignment{assign(web, "a", "w1", 1, t0.Add(-time.Hour))},
				Now:         t0,
			},
			check: func(t *testing.T, s Snapshot, p Plan) {
				if !p.Empty() || !p.NextWake.IsZero() {
					t.Errorf("plan %+v, want nothing", p)
				}
			},
		},
		{
			name: "new release gets fresh counts",
			snap: func() Snapshot {
				a := assign(web, "a", "w1", 1, t0)
				a.Restarts = 8
				return Snapshot{
					Hosts:       []keyspace.Host{host("a", 8*gib)},
					Formations:  []keyspace.Formation{form("blog", "r1", 1, "web", 0), form("blog", "r2", 2, "web", 1)},
					Assignments: []keyspace.Assignment{a},
					Jobs:        map[string]keyspace.JobState{"w1": crashed(a, t0, t0)},
					Now:         t0,
				}
			}(),
			check: func(t *testing.T, s Snapshot, p Plan) {
				if len(p.Start) != 1 || p.Start[0].Assignment.Spec.Release != "r2" || p.Start[0].Assignment.Restarts != 0 || p.Start[0].Assignment.Index != 1 {
					t.Errorf("starts %+v", p.Start)
				}
				if got := stopIDs(p); !slices.Equal(got, []string{"w1"}) || p.Stop[0].Reason != ReasonSurplus {
					t.Errorf("stops %+v", p.Stop)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.snap.Now.IsZero() {
				tt.snap.Now = t0
			}
			p := Place(tt.snap)
			tt.check(t, tt.snap, p)
			if again := Place(tt.snap); !reflect.DeepEqual(p, again) {
				t.Errorf("second plan differs:\n%+v\n%+v", p, again)
			}
		})
	}
}

func TestBackoffDelay(t *testing.T) {
	want := []time.Duration{0, 0, 0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300}
	for i := range want {
		want[i] *= time.Second
	}
	for restarts, w := range want {
		if got := (Backoff{}).Delay(restarts); got != w {
			t.Errorf("Delay(%d) = %s, want %s", restarts, got, w)
		}
	}
	if got := (Backoff{}).Delay(1 << 20); got != DefaultCap {
		t.Errorf("Delay(huge) = %s, want the cap", got)
	}
	none := Backoff{Free: -1, Base: time.Millisecond, Cap: time.Second}
	if got := none.Delay(0); got != time.Millisecond {
		t.Errorf("no free restarts: Delay(0) = %s, want 1ms", got)
	}
	if got := none.WithDefaults().Delay(0); got != time.Millisecond {
		t.Errorf("no free restarts, defaults applied twice: Delay(0) = %s, want 1ms", got)
	}
}

func TestBackoffValidate(t *testing.T) {
	tests := []struct {
		name string
		b    Backoff
		ok   bool
	}{
		{"zero", Backoff{}, true},
		{"custom", Backoff{Free: 1, Base: time.Millisecond, Cap: time.Second, Reset: time.Second}, true},
		{"negative", Backoff{Base: -time.Second}, false},
		{"cap below base", Backoff{Base: time.Minute, Cap: time.Second}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.b.Validate(); (err == nil) != tt.ok {
				t.Errorf("Validate() = %v, want ok %v", err, tt.ok)
			}
		})
	}
}

// TestCrashBackoffSchedule follows one job index through repeated crashes:
// each replacement waits Backoff.Delay of the crashed job's restart count,
// growing to the cap; while it waits, the crashed job's assignment says
// when it is replaced, and each replacement carries the crash before it.
func TestCrashBackoffSchedule(t *testing.T) {
	web := form("blog", "r1", 1, "web", 1)
	want := []time.Duration{0, 0, 0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300}
	a := assign(web, "a", "w0", 1, t0)
	now := t0
	for i, w := range want {
		t.Run(fmt.Sprintf("restart %d", i+1), func(t *testing.T) {
			w *= time.Second
			crashAt := now.Add(time.Second) // up for a second, then crashed
			st := crashed(a, now, crashAt)
			code := i + 1
			st.ExitCode = &code
			st.LastLines = []string{"l1", "l2", "l3", "l4", "l5", "l6", fmt.Sprintf("crash %d", i+1)}
			s := Snapshot{
				Hosts:       []keyspace.Host{host("a", 8*gib)},
				Formations:  []keyspace.Formation{web},
				Assignments: []keyspace.Assignment{a},
				Jobs:        map[string]keyspace.JobState{a.JobID: st},
				Seed:        uint64(i),
			}
			if w > 0 {
				s.Now = crashAt.Add(w - time.Nanosecond)
				p := Place(s)
				if len(p.Start)+len(p.Stop) != 0 || !p.NextWake.Equal(crashAt.Add(w)) {
					t.Fatalf("just before the back-off: plan %+v, want a wake at %s", p, crashAt.Add(w))
				}
				if len(p.Update) != 1 || p.Update[0].JobID != a.JobID || !p.Update[0].RestartAt.Equal(crashAt.Add(w)) {
					t.Fatalf("just before the back-off: updates %+v, want %s to restart at %s", p.Update, a.JobID, crashAt.Add(w))
				}
				s.Assignments = applied(s, p)
				if p := Place(s); !p.Empty() {
					t.Fatalf("with the restart time recorded: plan %+v, want nothing", p)
				}
			}
			s.Now = crashAt.Add(w)
			p := Place(s)
			if len(p.Start) != 1 || p.Start[0].Replaces != a.JobID || len(p.Update) != 0 {
				t.Fatalf("at the end of the back-off: plan %+v, want a replacement", p)
			}
			next := p.Start[0].Assignment
			if next.Restarts != i+1 || next.Index != 1 || !next.RestartAt.IsZero() {
				t.Fatalf("replacement restarts %d index %d restart at %s, want %d, 1 and none", next.Restarts, next.Index, next.RestartAt, i+1)
			}
			wantExit := &keyspace.Exit{ExitCode: &code, At: crashAt, LastLines: []string{"l3", "l4", "l5", "l6", fmt.Sprintf("crash %d", i+1)}}
			if !reflect.DeepEqual(next.LastExit, wantExit) {
				t.Fatalf("replacement's last exit %+v, want %+v", next.LastExit, wantExit)
			}
			a, now = next, s.Now
		})
	}
}

// TestBackoffRecorded covers how the back-off of a crashed job shows in
// plans: the cap, a restart time already recorded or out of date, one-off
// jobs, replacements that fit nowhere, the reset after a job was up a
// while and on a new release, and the last exit carried to a lost host's
// replacement.
func TestBackoffRecorded(t *testing.T) {
	web := form("blog", "r1", 1, "web", 1)
	webV2 := form("blog", "r2", 2, "web", 1)
	exit1 := 1
	crashedWith := func(a keyspace.Assignment, started, at time.Time) keyspace.JobState {
		st := crashed(a, started, at)
		st.ExitCode, st.LastLines = &exit1, []string{"boom"}
		return st
	}
	withRestarts := func(a keyspace.Assignment, n int, restartAt time.Time) keyspace.Assignment {
		a.Restarts, a.RestartAt = n, restartAt
		return a
	}
	tests := []struct {
		name string
		snap Snapshot
		// want* describe the plan: the starts as "release/restarts",
		// the job IDs updated and their restart times, the wake.
		wantStarts  []string
		wantUpdates map[string]time.Time
		wantWake    time.Time
		check       func(t *testing.T, p Plan)
	}{
		{
			name: "the delay stops growing at the default cap",
			snap: Snapshot{
				Hosts:       []keyspace.Host{host("a", 8*gib)},
				Formations:  []keyspace.Formation{web},
				Assignments: []keyspace.Assignment{withRestarts(assign(web, "a", "w1", 1, t0), 40, time.Time{})},
				Jobs:        map[string]keyspace.JobState{"w1": crashedWith(assign(web, "a", "w1", 1, t0), t0, t0.Add(time.Second))},
				Now:         t0.Add(2 * time.Second),
			},
			wantUpdates: map[string]time.Time{"w1": t0.Add(time.Second + DefaultCap)},
			wantWake:    t0.Add(time.Second + DefaultCap),
		},
		{
			name: "a configured cap",
			snap: Snapshot{
				Hosts:       []keyspace.Host{host("a", 8*gib)},
				Backoff:     Backoff{Free: -1, Base: 10 * time.Second, Cap: 30 * time.Second},
				Formations:  []keyspace.Formation{web},
				Assignments: []keyspace.Assignment{withRestarts(assign(web, "a", "w1", 1, t0), 5, time.Time{})},
				Jobs:        map[string]keyspace.JobState{"w1": crashedWith(assign(web, "a", "w1", 1, t0), t0, t0.Add(time.Second))},
				Now:         t0.Add(2 * time.Second),
			},
			wantUpdates: map[string]time.Time{"w1": t0.Add(31 * time.Second)},
			wantWake:    t0.Add(31 * time.Second),
		},
		{
			name: "a recorded restart time is not written again",
			snap: Snapshot{
				Hosts:       []keyspace.Host{host("a", 8*gib)},
				Formations:  []keyspace.Formation{web},
				Assignments: []keyspace.Assignment{withRestarts(assign(web, "a", "w1", 1, t0), 40, t0.Add(time.Second+DefaultCap))},
				Jobs:        map[string]keyspace.JobState{"w1": crashedWith(assign(web, "a", "w1", 1, t0), t0, t0.Add(time.Second))},
				Now:         t0.Add(2 * time.Second),
			},
			wantWake: t0.Add(time.Second + DefaultCap),
		},
		{
			name: "a restart time out of date is corrected",
			snap: Snapshot{
				Hosts:       []keyspace.Host{host("a", 8*gib)},
				Formations:  []keyspace.Formation{web},
				Assignments: []keyspace.Assignment{withRestarts(assign(web, "a", "w1", 1, t0), 4, t0.Add(time.Second))},
				Jobs:        map[string]keyspace.JobState{"w1": crashedWith(assign(web, "a", "w1", 1, t0), t0, t0.Add(10*time.Second))},
				Now:         t0.Add(10 * time.Second),
			},
			wantUpdates: map[string]time.Time{"w1": t0.Add(12 * time.Second)},
			wantWake:    t0.Add(12 * time.Second),
		},
		{
			name: "a crashed one-off job gets no restart time",
			snap: func() Snapshot {
				run := form("blog", "r1", 1, "run", 1)
				run.Template.OneOff = true
				a := withRestarts(assign(run, "a", "o1", 1, t0), 5, time.Time{})
				return Snapshot{
					Hosts:       []keyspace.Host{host("a", 8*gib)},
					Formations:  []keyspace.Formation{run},
					Assignments: []keyspace.Assignment{a},
					Jobs:        map[string]keyspace.JobState{"o1": crashedWith(a, t0, t0.Add(time.Second))},
					Now:         t0.Add(2 * time.Second),
				}
			}(),
		},
		{
			name: "a replacement that fits nowhere records that it is due",
			snap: Snapshot{
				Hosts:       []keyspace.Host{{ID: "a", Memory: 8 * gib}},
				Formations:  []keyspace.Formation{web},
				Assignments: []keyspace.Assignment{assign(web, "a", "w1", 1, t0)},
				Jobs:        map[string]keyspace.JobState{"w1": crashedWith(assign(web, "a", "w1", 1, t0), t0, t0.Add(time.Second))},
				Now:         t0.Add(2 * time.Second),
			},
			wantUpdates: map[string]time.Time{"w1": t0.Add(time.Second)},
			check: func(t *testing.T, p Plan) {
				if len(p.Unplaced) != 1 || p.Unplaced[0].Replaces != "w1" {
					t.Errorf("unplaced %+v, want the replacement of w1", p.Unplaced)
				}
			},
		},
		{
			name: "the count starts again after the job was up a while",
			snap: Snapshot{
				Hosts:       []keyspace.Host{host("a", 8*gib)},
				Formations:  []keyspace.Formation{web},
				Assignments: []keyspace.Assignment{withRestarts(assign(web, "a", "w1", 1, t0), 12, time.Time{})},
				Jobs:        map[string]keyspace.JobState{"w1": crashedWith(assign(web, "a", "w1", 1, t0), t0, t0.Add(DefaultReset))},
				Now:         t0.Add(DefaultReset),
			},
			wantStarts: []string{"r1/0"},
			check: func(t *testing.T, p Plan) {
				if e := p.Start[0].Assignment.LastExit; e == nil || e.ExitCode == nil || *e.ExitCode != 1 || !e.At.Equal(t0.Add(DefaultReset)) {
					t.Errorf("last exit %+v, want exit 1 at the crash", e)
				}
			},
		},
		{
			name: "a new release starts from zero restarts while the old one waits",
			snap: Snapshot{
				Hosts:       []keyspace.Host{host("a", 8*gib)},
				Formations:  []keyspace.Formation{web, webV2},
				Assignments: []keyspace.Assignment{withRestarts(assign(web, "a", "w1", 1, t0), 12, t0.Add(time.Second+DefaultCap))},
				Jobs:        map[string]keyspace.JobState{"w1": crashedWith(assign(web, "a", "w1", 1, t0), t0, t0.Add(time.Second))},
				Now:         t0.Add(time.Minute),
			},
			wantStarts: []string{"r2/0"},
			wantWake:   t0.Add(time.Second + DefaultCap),
			check: func(t *testing.T, p Plan) {
				if a := p.Start[0].Assignment; a.LastExit != nil || a.Index != 1 || p.Start[0].Reason != ReasonNew {
					t.Errorf("start %+v, want a new web.1 with no last exit", p.Start[0])
				}
			},
		},
		{
			name: "a new release starts from zero restarts and the old one stops",
			snap: Snapshot{
				Hosts:       []keyspace.Host{host("a", 8*gib)},
				Formations:  []keyspace.Formation{webV2},
				Assignments: []keyspace.Assignment{withRestarts(assign(web, "a", "w1", 1, t0), 12, t0.Add(time.Second+DefaultCap))},
				Jobs:        map[string]keyspace.JobState{"w1": crashedWith(assign(web, "a", "w1", 1, t0), t0, t0.Add(time.Second))},
				Now:         t0.Add(time.Minute),
			},
			wantStarts: []string{"r2/0"},
			check: func(t *testing.T, p Plan) {
				if got := stopIDs(p); !slices.Equal(got, []string{"w1"}) || p.Stop[0].Reason != ReasonNoFormation {
					t.Errorf("stops %+v, want w1 (no formation)", p.Stop)
				}
				if a := p.Start[0].Assignment; a.LastExit != nil {
					t.Errorf("start %+v, want no last exit", a)
				}
			},
		},
		{
			name: "a lost host's replacement keeps the last exit and the count",
			snap: func() Snapshot {
				a := withRestarts(assign(web, "gone", "w1", 1, t0), 4, time.Time{})
				a.LastExit = &keyspace.Exit{ExitCode: &exit1, At: t0, LastLines: []string{"boom"}}
				return Snapshot{
					Hosts:       []keyspace.Host{host("a", 8*gib)},
					Formations:  []keyspace.Formation{web},
					Assignments: []keyspace.Assignment{a},
					Now:         t0.Add(time.Hour),
				}
			}(),
			wantStarts: []string{"r1/4"},
			check: func(t *testing.T, p Plan) {
				want := &keyspace.Exit{ExitCode: &exit1, At: t0, LastLines: []string{"boom"}}
				if got := p.Start[0].Assignment.LastExit; !reflect.DeepEqual(got, want) || p.Start[0].Reason != ReasonHostLost {
					t.Errorf("start %+v, last exit %+v; want %+v", p.Start[0], got, want)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Place(tt.snap)
			var starts []string
			for _, st := range p.Start {
				starts = append(starts, fmt.Sprintf("%s/%d", st.Assignment.Spec.Release, st.Assignment.Restarts))
			}
			if !slices.Equal(starts, tt.wantStarts) {
				t.Errorf("starts %v, want %v", starts, tt.wantStarts)
			}
			updates := map[string]time.Time{}
			for _, a := range p.Update {
				updates[a.JobID] = a.RestartAt
				var orig keyspace.Assignment
				for _, b := range tt.snap.Assignments {
					if b.JobID == a.JobID {
						orig = b
					}
				}
				orig.RestartAt = a.RestartAt
				if !reflect.DeepEqual(a, orig) {
					t.Errorf("update %+v changes more than the restart time of %+v", a, orig)
				}
			}
			if len(updates) != len(tt.wantUpdates) {
				t.Errorf("updates %v, want %v", updates, tt.wantUpdates)
			}
			for id, at := range tt.wantUpdates {
				if !updates[id].Equal(at) {
					t.Errorf("update of %s: restart at %s, want %s", id, updates[id], at)
				}
			}
			if !p.NextWake.Equal(tt.wantWake) {
				t.Errorf("next wake %s, want %s", p.NextWake, tt.wantWake)
			}
			if tt.check != nil && !t.Failed() {
				tt.check(t, p)
			}
			if again := Place(tt.snap); !reflect.DeepEqual(p, again) {
				t.Errorf("second plan differs:\n%+v\n%+v", p, again)
			}
		})
	}
}
