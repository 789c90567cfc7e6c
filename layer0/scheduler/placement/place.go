package placement

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"slices"
	"strconv"
	"time"

	"github.com/gantryhq/gantry/layer0/keyspace"
)

// Place computes the plan that moves the cluster of s towards its
// formations. It is deterministic: the same snapshot always gives the same
// plan. The assignments of the plan share their Cmd, Env and other slices
// and maps with the snapshot's formation templates.
func Place(s Snapshot) Plan {
	p := newPlanner(s)
	p.place(p.reconcile())
	slices.SortFunc(p.plan.Stop, func(a, b Stop) int { return compareStops(a.Assignment, b.Assignment) })
	slices.SortFunc(p.plan.Update, func(a, b keyspace.Assignment) int { return cmp.Compare(a.JobID, b.JobID) })
	return p.plan
}

type formKey struct{ app, release, typ string }

type appType struct{ app, typ string }

// formation is one formation of the snapshot, or the remains of one that is
// gone (exists false, count 0), with its assignments.
type formation struct {
	key         formKey
	exists      bool
	count       int
	perHost     bool // one job on each eligible host; count is ignored
	updatedAt   time.Time
	restartedAt time.Time        // jobs created before it are stale
	spec        keyspace.JobSpec // the template, with identity and memory filled in
	assigns     []*keyspace.Assignment

	eligible []int32 // host indexes that may take a new job; valid when eligOK
	eligOK   bool
}

// request is a job to place: new, or replacing old.
type request struct {
	form     *formation
	index    int
	restarts int
	reason   Reason
	old      *keyspace.Assignment
	// due is when the crashed job old is to be replaced; lastExit is what
	// the new job carries of the exit before it.
	due      time.Time
	lastExit *keyspace.Exit
	// outgoing is the stale job a restart job is meant to take over
	// from; it stops in a later plan, so the host choice counts it as
	// gone already.
	outgoing *keyspace.Assignment
	// pin is the ID of the host the job must go on (a job of a per-host
	// formation); empty lets choose pick one.
	pin string
}

type planner struct {
	s       Snapshot
	grace   time.Duration
	backoff Backoff

	hosts   []keyspace.Host // registered hosts, sorted by ID
	hostIdx map[string]int32
	free    []int64             // free memory per host index
	counts  map[appType][]int32 // jobs per host index, per app/type
	lost    map[string]bool     // per absent host ID: gone past the grace
	healthy []int32             // healthy host indexes, for jobs without constraints
	usedIDs map[string]struct{} // job IDs in use, to keep new ones unique
	forms   []*formation        // sorted by key

	plan Plan
}

func newPlanner(s Snapshot) *planner {
	p := &planner{
		s:       s,
		grace:   cmp.Or(s.HostGrace, DefaultHostGrace),
		backoff: s.Backoff.WithDefaults(),
		hostIdx: make(map[string]int32, len(s.Hosts)),
		counts:  make(map[appType][]int32),
		lost:    make(map[string]bool),
		usedIDs: make(map[string]struct{}, len(s.Assignments)),
	}

	p.hosts = slices.Clone(s.Hosts)
	slices.SortStableFunc(p.hosts, func(a, b keyspace.Host) int { return cmp.Compare(a.ID, b.ID) })
	p.hosts = slices.CompactFunc(p.hosts, func(a, b keyspace.Host) bool { return a.ID == b.ID })
	p.free = make([]int64, len(p.hosts))
	for i, h := range p.hosts {
		p.hostIdx[h.ID] = int32(i)
		p.free[i] = h.Memory
		if h.Healthy && !s.Flags[h.ID].Drain {
			p.healthy = append(p.healthy, int32(i))
		}
	}

	forms := make(map[formKey]*formation, len(s.Formations))
	for _, f := range s.Formations {
		k := formKey{f.App, f.Release, f.Type}
		if old := forms[k]; old != nil {
			// Two formations with one key: keep the latest, then the
			// larger, whatever their order.
			if c := f.UpdatedAt.Compare(old.updatedAt); c < 0 || c == 0 && f.Count <= old.count {
				continue
			}
		}
		spec := f.Template
		spec.App, spec.Release, spec.Type = f.App, f.Release, f.Type
		if spec.Resources.Memory <= 0 {
			spec.Resources.Memory = DefaultMemory
		}
		forms[k] = &formation{key: k, exists: true, count: max(f.Count, 0), perHost: f.PerHost, updatedAt: f.UpdatedAt, restartedAt: f.RestartedAt, spec: spec}
	}

	assigns := make([]*keyspace.Assignment, 0, len(s.Assignments))
	for i := range s.Assignments {
		assigns = append(assigns, &s.Assignments[i])
	}
	slices.SortFunc(assigns, func(a, b *keyspace.Assignment) int {
		return cmp.Or(cmp.Compare(a.JobID, b.JobID), cmp.Compare(a.HostID, b.HostID))
	})
	for _, a := range assigns {
		p.reserve(a)
		if _, dup := p.usedIDs[a.JobID]; dup {
			continue // one job ID on two hosts: manage the first only
		}
		p.usedIDs[a.JobID] = struct{}{}
		if _, registered := p.hostIdx[a.HostID]; !registered && s.Flags[a.HostID].Remove && !a.Spec.OneOff {
			p.plan.Stop = append(p.plan.Stop, Stop{Assignment: *a, Reason: ReasonHostRemoved})
			continue
		}
		k := formKey{a.Spec.App, a.Spec.Release, a.Spec.Type}
		f := forms[k]
		if f == nil {
			f = &formation{key: k}
			forms[k] = f
		}
		f.assigns = append(f.assigns, a)
	}

	p.forms = make([]*formation, 0, len(forms))
	for _, f := range forms {
		p.forms = append(p.forms, f)
	}
	slices.SortFunc(p.forms, func(a, b *formation) int {
		return cmp.Or(cmp.Compare(a.key.app, b.key.app), cmp.Compare(a.key.typ, b.key.typ), cmp.Compare(a.key.release, b.key.release))
	})
	return p
}

// memory is the memory a job is accounted for.
func memory(spec keyspace.JobSpec) int64 {
	if spec.Resources.Memory > 0 {
		return spec.Resources.Memory
	}
	return DefaultMemory
}

// countsFor returns the per-host job counts of k's app and type.
func (p *planner) countsFor(k formKey) []int32 {
	at := appType{k.app, k.typ}
	c := p.counts[at]
	if c == nil {
		c = make([]int32, len(p.hosts))
		p.counts[at] = c
	}
	return c
}

// wake records t as a time to plan again when it is after Now.
func (p *planner) wake(t time.Time) {
	if t.After(p.s.Now) && (p.plan.NextWake.IsZero() || t.Before(p.plan.NextWake)) {
		p.plan.NextWake = t
	}
}

// hostLost reports whether the host of an assignment has been gone for
// longer than the grace. A registered host is never lost.
func (p *planner) hostLost(id string) bool {
	if _, ok := p.hostIdx[id]; ok {
		return false
	}
	lost, ok := p.lost[id]
	if !ok {
		since, seen := p.s.GoneSince[id]
		end := since.Add(p.grace)
		lost = !seen || !p.s.Now.Before(end)
		if !lost {
			p.wake(end)
		}
		p.lost[id] = lost
	}
	return lost
}

// crashed reports whether the job of a is crashed.
func (p *planner) crashed(a *keyspace.Assignment) bool {
	st, ok := p.s.Jobs[a.JobID]
	return ok && st.State == keyspace.StateCrashed
}

// serving reports whether the job of a is up on a host that is not lost.
func (p *planner) serving(a *keyspace.Assignment) bool {
	st, ok := p.s.Jobs[a.JobID]
	return ok && st.State == keyspace.StateUp && !p.hostLost(a.HostID)
}

// reconcile stops the jobs that formations no longer want and returns the
// jobs to place: replacements of crashed jobs and of jobs on lost hosts,
// missing jobs and, during a rolling restart, the next restart job.
func (p *planner) reconcile() []request {
	var reqs []request
	for _, f := range p.forms {
		if f.exists && f.perHost {
			reqs = append(reqs, p.reconcilePerHost(f)...)
			continue
		}
		keep, waiting := p.splitDrain(f)
		stale := []*keyspace.Assignment(nil)
		if p.restarting(f) {
			keep, stale = p.splitStale(f, keep)
		}
		reason := ReasonSurplus
		if !f.exists {
			reason = ReasonNoFormation
		}
		keep = p.trim(keep, len(keep)-f.count, reason)
		if len(stale) > 0 {
			stale = p.keepStale(f, keep, stale)
			// The restart allows one job beyond the count. In states that
			// hold more (the restart was asked for again, the count went
			// down), jobs that are not up go: stale ones, then fresh ones.
			over := len(keep) + len(stale) - (f.count + 1)
			for over > 0 && len(stale) > 0 && !p.serving(stale[len(stale)-1]) {
				p.stop(stale[len(stale)-1], ReasonRestart)
				stale = stale[:len(stale)-1]
				over--
			}
			keep = p.trim(keep, over, ReasonSurplus)
		}

		used := make(map[int]bool, f.count+1)
		for _, a := range keep {
			used[a.Index] = true
		}
		for _, a := range stale {
			used[a.Index] = true
		}
		p.drainStops(waiting, keep, stale)
		reqs = append(reqs, p.drainRequests(f, keep)...)
		// Kept stale jobs are never broken, so only fresh ones are
		// replaced.
		for _, a := range keep {
			if r, ok := p.replacement(f, a); ok {
				reqs = append(reqs, r)
			}
		}
		next := 1
		for range f.count - len(keep) - len(stale) {
			for used[next] {
				next++
			}
			used[next] = true
			reqs = append(reqs, request{form: f, index: next, reason: ReasonNew})
		}
		if r, ok := p.restartJob(f, keep, stale, used); ok {
			reqs = append(reqs, r)
		}
	}
	return reqs
}

// drained reports whether the host id is drained.
func (p *planner) drained(id string) bool { return p.s.Flags[id].Drain }

// moving reports whether a, a job of f, moves off a drained host: not a
// one-off job (it runs to its end), not a crashed job or one on a lost
// host (they are replaced as on any host), and not a stale job of a
// rolling restart (the restart renews it on another host).
func (p *planner) moving(f *formation, a *keyspace.Assignment, restarting bool) bool {
	return f.exists && p.drained(a.HostID) && !a.Spec.OneOff && !p.crashed(a) && !p.hostLost(a.HostID) &&
		!(restarting && a.CreatedAt.Before(f.restartedAt))
}

// splitDrain sets apart the moving jobs of f (see moving) that have a
// successor: a job of f with the same index on a host that is not
// drained. It returns f's other jobs, among them the moving jobs without
// a successor (they hold their place in the count until one is up), and
// the moving jobs with one, which wait for it (see drainStops).
func (p *planner) splitDrain(f *formation) (keep, waiting []*keyspace.Assignment) {
	restarting := p.restarting(f)
	var moving []*keyspace.Assignment
	indexes := make(map[int]bool, len(f.assigns))
	for _, a := range f.assigns {
		if p.moving(f, a, restarting) {
			moving = append(moving, a)
			continue
		}
		keep = append(keep, a)
		if !p.drained(a.HostID) {
			indexes[a.Index] = true
		}
	}
	if len(moving) == 0 {
		return f.assigns, nil
	}
	for _, a := range moving {
		if indexes[a.Index] {
			waiting = append(waiting, a)
		} else {
			keep = append(keep, a)
		}
	}
	return keep, waiting
}

// drainStops stops each waiting job (see splitDrain) whose successor, one
// of the jobs f keeps, is up: the job of the drained host is no longer
// needed.
func (p *planner) drainStops(waiting []*keyspace.Assignment, kept ...[]*keyspace.Assignment) {
	for _, a := range waiting {
		for _, b := range slices.Concat(kept...) {
			if b.Index == a.Index && !p.drained(b.HostID) && p.serving(b) {
				p.stop(a, ReasonDrain)
				break
			}
		}
	}
}

// drainRequests returns the requests for the successors of the moving
// jobs among keep (see splitDrain), each with its index and restart count.
func (p *planner) drainRequests(f *formation, keep []*keyspace.Assignment) []request {
	restarting := p.restarting(f)
	var reqs []request
	for _, a := range keep {
		if p.moving(f, a, restarting) {
			reqs = append(reqs, request{form: f, index: a.Index, restarts: a.Restarts, reason: ReasonDrain, lastExit: a.LastExit, outgoing: a})
		}
	}
	return reqs
}

// trim stops the first n jobs of as in stop order and returns the others.
// Stop order: broken jobs (crashed, or on a lost host), then jobs that are
// not up, then jobs up on a drained host, then the newest (highest
// CreatedAt, then index).
func (p *planner) trim(as []*keyspace.Assignment, n int, reason Reason) []*keyspace.Assignment {
	if n <= 0 {
		return as
	}
	rank := make(map[*keyspace.Assignment]int, len(as))
	for _, a := range as {
		switch {
		case p.crashed(a) || p.hostLost(a.HostID):
			rank[a] = 0
		case !p.serving(a):
			rank[a] = 1
		case p.drained(a.HostID):
			rank[a] = 2
		default:
			rank[a] = 3
		}
	}
	as = slices.Clone(as)
	slices.SortFunc(as, func(a, b *keyspace.Assignment) int {
		return cmp.Or(cmp.Compare(rank[a], rank[b]),
			-cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.Index, b.Index), cmp.Compare(a.JobID, b.JobID)))
	})
	for _, a := range as[:n] {
		p.stop(a, reason)
	}
	return as[n:]
}

// restarting reports whether a rolling restart of f is under way: f wants
// jobs, they are not one-off jobs, and its RestartedAt has come. Before
// RestartedAt a new job would be stale itself, so the restart waits for it.
func (p *planner) restarting(f *formation) bool {
	if f.count == 0 && !f.perHost || f.restartedAt.IsZero() || f.spec.OneOff {
		return false
	}
	if p.s.Now.Before(f.restartedAt) {
		if slices.ContainsFunc(f.assigns, func(a *keyspace.Assignment) bool { return a.CreatedAt.Before(f.restartedAt) }) {
			p.wake(f.restartedAt)
		}
		return false
	}
	return true
}

// splitStale returns the fresh jobs of as, f's jobs, and its stale ones
// (created before RestartedAt). Stale jobs that are broken serve nothing:
// they stop now.
func (p *planner) splitStale(f *formation, as []*keyspace.Assignment) (fresh, stale []*keyspace.Assignment) {
	for _, a := range as {
		switch {
		case !a.CreatedAt.Before(f.restartedAt):
			fresh = append(fresh, a)
		case p.crashed(a) || p.hostLost(a.HostID):
			p.stop(a, ReasonRestart)
		default:
			stale = append(stale, a)
		}
	}
	return fresh, stale
}

// keepStale stops the stale jobs of f that its fresh jobs make
// unnecessary and returns the others, in keep order. The count minus the
// fresh jobs that are up is how many stale jobs stay. They are kept in
// this order: up first, then those whose index no fresh up job has, then
// the oldest; so a stale job stops when the fresh job of its index is up,
// and a stale job that is up stops only when enough fresh ones are up.
func (p *planner) keepStale(f *formation, fresh, stale []*keyspace.Assignment) []*keyspace.Assignment {
	covered := make(map[int]bool, len(fresh))
	up := 0
	for _, a := range fresh {
		if p.serving(a) {
			up++
			covered[a.Index] = true
		}
	}
	need := min(max(f.count-up, 0), len(stale))
	stale = slices.Clone(stale)
	slices.SortFunc(stale, func(a, b *keyspace.Assignment) int {
		sa, sb := p.serving(a), p.serving(b)
		if sa != sb {
			if sa {
				return -1
			}
			return 1
		}
		if ca, cb := covered[a.Index], covered[b.Index]; ca != cb {
			if cb {
				return -1
			}
			return 1
		}
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.Index, b.Index), cmp.Compare(a.JobID, b.JobID))
	})
	for _, a := range stale[need:] {
		p.stop(a, ReasonRestart)
	}
	return stale[:need]
}

// restartJob returns the next job of f's rolling restart: one more than
// the count, only while stale jobs remain, every fresh job is up and the
// formation has exactly its count. It takes the lowest index of a stale
// job that no fresh job has (web.1 stays web.1), else the lowest free
// index.
func (p *planner) restartJob(f *formation, fresh, stale []*keyspace.Assignment, used map[int]bool) (request, bool) {
	if len(stale) == 0 || len(fresh)+len(stale) != f.count {
		return request{}, false
	}
	claimed := make(map[int]bool, len(fresh))
	for _, a := range fresh {
		if !p.serving(a) {
			return request{}, false // one new job at a time
		}
		claimed[a.Index] = true
	}
	var out *keyspace.Assignment
	for _, a := range stale {
		if !claimed[a.Index] && (out == nil || a.Index < out.Index) {
			out = a
		}
	}
	if out != nil {
		return request{form: f, index: out.Index, reason: ReasonRestart, outgoing: out}, true
	}
	next := 1
	for used[next] {
		next++
	}
	return request{form: f, index: next, reason: ReasonRestart, outgoing: stale[len(stale)-1]}, true
}

// replacement returns the request that replaces a when a crashed and its
// back-off has passed, or when its host is lost. A one-off job is never
// replaced: it runs once, and its assignment stays, exited or not, until
// its owner removes the formation.
func (p *planner) replacement(f *formation, a *keyspace.Assignment) (request, bool) {
	if a.Spec.OneOff {
		return request{}, false
	}
	if st, ok := p.s.Jobs[a.JobID]; ok && st.State == keyspace.StateCrashed {
		restarts, next := a.Restarts, a.Restarts+1
		if !st.StartedAt.IsZero() && st.UpdatedAt.Sub(st.StartedAt) >= p.backoff.Reset {
			restarts, next = 0, 0 // it was up a while: start counting again
		}
		due := st.UpdatedAt.Add(p.backoff.Delay(restarts))
		if p.s.Now.Before(due) {
			p.wake(due)
			p.restartAt(a, due)
			return request{}, false
		}
		return request{form: f, index: a.Index, restarts: next, reason: ReasonCrashed, old: a, due: due, lastExit: exitOf(st)}, true
	}
	if p.hostLost(a.HostID) {
		return request{form: f, index: a.Index, restarts: a.Restarts, reason: ReasonHostLost, old: a, lastExit: a.LastExit}, true
	}
	return request{}, false
}

// restartAt records, unless a already says so, that the crashed job of a
// is replaced at due.
func (p *planner) restartAt(a *keyspace.Assignment, due time.Time) {
	if a.RestartAt.Equal(due) {
		return
	}
	u := *a
	u.RestartAt = due
	p.plan.Update = append(p.plan.Update, u)
}

// exitOf returns the exit a crashed job's state reports, with at most
// ExitLines of its last lines.
func exitOf(st keyspace.JobState) *keyspace.Exit {
	e := &keyspace.Exit{Error: st.Error, At: st.UpdatedAt}
	if st.ExitCode != nil {
		code := *st.ExitCode
		e.ExitCode = &code
	}
	if n := len(st.LastLines); n > 0 {
		e.LastLines = slices.Clone(st.LastLines[max(0, n-ExitLines):])
	}
	return e
}

// stop deletes a and gives its memory back to its host.
func (p *planner) stop(a *keyspace.Assignment, reason Reason) {
	p.release(a)
	p.plan.Stop = append(p.plan.Stop, Stop{Assignment: *a, Reason: reason})
}

// release takes a off its host's accounting.
func (p *planner) release(a *keyspace.Assignment) {
	if h, ok := p.hostIdx[a.HostID]; ok {
		p.free[h] += memory(a.Spec)
		p.countsFor(formKey{a.Spec.App, a.Spec.Release, a.Spec.Type})[h]--
	}
}

// reserve puts a on its host's accounting.
func (p *planner) reserve(a *keyspace.Assignment) {
	if h, ok := p.hostIdx[a.HostID]; ok {
		p.free[h] -= memory(a.Spec)
		p.countsFor(formKey{a.Spec.App, a.Spec.Release, a.Spec.Type})[h]++
	}
}

// place finds a host for each request: replacements first, then new jobs,
// each group by app, type, newest release first and index.
func (p *planner) place(reqs []request) {
	slices.SortFunc(reqs, func(a, b request) int {
		if (a.old == nil) != (b.old == nil) {
			if a.old != nil {
				return -1
			}
			return 1
		}
		fa, fb := a.form, b.form
		return cmp.Or(
			cmp.Compare(fa.key.app, fb.key.app),
			cmp.Compare(fa.key.typ, fb.key.typ),
			-cmp.Compare(fa.spec.ReleaseVersion, fb.spec.ReleaseVersion),
			cmp.Compare(fa.key.release, fb.key.release),
			cmp.Compare(a.index, b.index),
		)
	})
	p.plan.Start = make([]Start, 0, len(reqs))
	for _, r := range reqs {
		f := r.form
		if r.old != nil {
			p.release(r.old) // a replacement may take the old job's room
		}
		counts := p.countsFor(f.key)
		mem := f.spec.Resources.Memory
		h := p.chooseFor(r, counts, mem)
		if h < 0 {
			if r.old != nil {
				p.reserve(r.old)
			}
			if r.reason == ReasonCrashed {
				p.restartAt(r.old, r.due) // due, waiting for room
			}
			replaces := oldID(r.old)
			if r.reason == ReasonDrain {
				replaces = r.outgoing.JobID
			}
			p.plan.Unplaced = append(p.plan.Unplaced, Unplaced{
				App: f.key.app, Release: f.key.release, Type: f.key.typ,
				Index: r.index, Reason: r.reason, Replaces: replaces,
			})
			continue
		}
		p.free[h] -= mem
		counts[h]++
		a := keyspace.Assignment{
			JobID:     p.newID(r),
			HostID:    p.hosts[h].ID,
			Spec:      f.spec,
			Index:     r.index,
			Restarts:  r.restarts,
			CreatedAt: p.s.Now,
			LastExit:  r.lastExit,
		}
		p.plan.Start = append(p.plan.Start, Start{Assignment: a, Reason: r.reason, Replaces: oldID(r.old)})
		if r.old != nil {
			p.plan.Stop = append(p.plan.Stop, Stop{Assignment: *r.old, Reason: r.reason})
		}
	}
}

func oldID(a *keyspace.Assignment) string {
	if a == nil {
		return ""
	}
	return a.JobID
}

// chooseFor chooses the host of r, counting the job a restart job takes
// over from as gone, so a formation stays spread as its jobs are renewed.
func (p *planner) chooseFor(r request, counts []int32, mem int64) int32 {
	if r.pin != "" {
		return p.pinned(r.form, r.pin, mem)
	}
	if r.outgoing != nil {
		if h, ok := p.hostIdx[r.outgoing.HostID]; ok {
			counts[h]--
			defer func() { counts[h]++ }()
		}
	}
	return p.choose(r.form, counts, mem)
}

// choose returns the index of the host that takes a new job of f, or -1:
// the host f's template prefers when it is eligible and has room; else,
// among eligible hosts with room, the one with the fewest jobs of f's app
// and type, then the most free memory, then the lowest ID.
func (p *planner) choose(f *formation, counts []int32, mem int64) int32 {
	eligible := p.eligible(f)
	if h, ok := p.hostIdx[f.spec.PreferHost]; ok && p.free[h] >= mem {
		if _, found := slices.BinarySearch(eligible, h); found {
			return h
		}
	}
	best, bestCount, bestFree := int32(-1), int32(0), int64(0)
	for _, h := range eligible {
		free := p.free[h]
		if free < mem {
			continue
		}
		if c := counts[h]; best < 0 || c < bestCount || c == bestCount && free > bestFree {
			best, bestCount, bestFree = h, c, free
		}
	}
	return best
}

// pinned returns the index of the host id if it may take a new job of f
// (it is eligible and has room for mem), or -1.
func (p *planner) pinned(f *formation, id string, mem int64) int32 {
	h, ok := p.hostIdx[id]
	if !ok || p.free[h] < mem || !slices.Contains(p.eligible(f), h) {
		return -1
	}
	return h
}

// eligible returns the healthy hosts whose tags satisfy f's constraints,
// in ID order.
func (p *planner) eligible(f *formation) []int32 {
	if len(f.spec.Constraints) == 0 {
		return p.healthy
	}
	if !f.eligOK {
		f.eligOK = true
		for _, h := range p.healthy {
			if matches(p.hosts[h].Tags, f.spec.Constraints) {
				f.eligible = append(f.eligible, h)
			}
		}
	}
	return f.eligible
}

// matches reports whether tags hold every constraint.
func matches(tags, constraints map[string]string) bool {
	for k, v := range constraints {
		if t, ok := tags[k]; !ok || t != v {
			return false
		}
	}
	return true
}

// newID derives the ID of the job r starts from the seed and r: readable
// (app.type.index.) plus 12 hex digits of a hash, unique in the snapshot.
func (p *planner) newID(r request) string {
	k := r.form.key
	prefix := idPart(k.app) + "." + idPart(k.typ) + "." + strconv.Itoa(r.index) + "."
	buf := make([]byte, 0, 64+len(k.app)+len(k.release)+len(k.typ))
	for attempt := uint64(0); ; attempt++ {
		buf = binary.BigEndian.AppendUint64(buf[:0], p.s.Seed)
		for _, s := range []string{k.app, k.release, k.typ, oldID(r.old)} {
			buf = binary.AppendUvarint(buf, uint64(len(s)))
			buf = append(buf, s...)
		}
		buf = binary.AppendVarint(buf, int64(r.index))
		buf = binary.AppendVarint(buf, int64(r.restarts))
		buf = binary.AppendUvarint(buf, attempt)
		sum := sha256.Sum256(buf)
		id := prefix + hex.EncodeToString(sum[:6])
		if _, dup := p.usedIDs[id]; !dup {
			p.usedIDs[id] = struct{}{}
			return id
		}
	}
}

// idPart keeps the characters of s that are safe in keys and container
// names, replacing others with '-', at most 30 of them.
func idPart(s string) string {
	b := []byte(s)
	if len(b) > 30 {
		b = b[:30]
	}
	for i, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			b[i] = '-'
		}
	}
	return string(b)
}

// compareStops orders stops by app and type, then oldest release first,
// then newest job first.
func compareStops(a, b keyspace.Assignment) int {
	return cmp.Or(
		cmp.Compare(a.Spec.App, b.Spec.App),
		cmp.Compare(a.Spec.Type, b.Spec.Type),
		cmp.Compare(a.Spec.ReleaseVersion, b.Spec.ReleaseVersion),
		cmp.Compare(a.Spec.Release, b.Spec.Release),
		b.CreatedAt.Compare(a.CreatedAt),
		cmp.Compare(b.Index, a.Index),
		cmp.Compare(a.JobID, b.JobID),
	)
}
