// Package placement decides where a Gantry cluster's jobs run.
//
// Place is a pure function: it reads a Snapshot (the registered hosts, the
// formations, the current assignments, the job states and the time) and
// returns a Plan (assignments to create, assignments to delete, jobs that
// cannot be placed, restart times to record, and when to plan again). It does no I/O and keeps no
// state, so the same snapshot always yields the same plan; the scheduler
// leader builds snapshots from etcd and applies the plans.
//
// The rules:
//
//   - Each formation (app, release, process type) gets exactly Count jobs.
//     Missing jobs take the lowest free index (web.1, web.2, ...); surplus
//     jobs are stopped, broken ones (crashed or on a lost host) first, then
//     those not up, then the newest (highest CreatedAt, then highest
//     index). A formation that is gone counts as zero.
//   - New jobs go only to healthy hosts whose tags match every constraint of
//     the job and that have room for its memory (Resources.Memory, 512 MiB
//     when zero). Among those, a job goes to the host with the fewest jobs
//     of its app and type, then the most free memory, then the lowest host
//     ID, so each app/type spreads evenly when capacity allows. A job
//     whose template has PreferHost goes to that host first when it is
//     among those (a build, to the host of the app's build cache).
//   - A crashed job is replaced by a job with the same index after an
//     exponential back-off (see Backoff); the replacement's Restarts is one
//     more, or zero when the crashed job had been up for Backoff.Reset,
//     and its LastExit is the crash. Until then the plan's Update sets the
//     crashed job's RestartAt to the time it is replaced. The jobs of a new
//     release (another formation) start at zero restarts.
//   - The jobs of a host that has been gone for longer than the host grace
//     are replaced on live hosts with the same index and restart count. When
//     no host can take a replacement, the old assignment stays, so a host
//     that comes back adopts its containers.
//   - A formation with a RestartedAt restarts rolling, with a surge of one.
//     Its jobs created before RestartedAt are stale. While stale jobs
//     remain, the formation may have Count+1 jobs: when it has exactly
//     Count and every fresh job is up, one restart job starts, with the
//     index of a stale job (the lowest not yet taken by a fresh job, so
//     web.1 stays web.1). Stale jobs stay as long as fresh jobs that are up
//     do not make Count: a stale job that is up stops only when a fresh job
//     that is up takes its place, so a plan never leaves fewer jobs up than
//     the smaller of Count and the number up before it. Stale jobs
//     that are crashed or on a lost host stop at once; a fresh job that
//     crashes follows the back-off, and the restart waits for it. The
//     restart starts once Now reaches RestartedAt (a job started earlier
//     would be stale itself; CreatedAt < RestartedAt is taken literally),
//     does nothing for a Count of zero, and is complete, and idempotent,
//     when no stale job is left.
//   - A one-off job (JobSpec.OneOff: a build, `gantry run`) runs once. It
//     is never replaced: not when it exits (down or crashed, whatever its
//     back-off), not when its host is lost, and its formation is never
//     restarted. Its assignment stays and keeps counting towards Count, so
//     a one-off formation of Count N starts N jobs once (raising the count
//     starts the missing ones; lowering it stops jobs as for any
//     formation). The owner reads the outcome from the job state and
//     removes the formation, which stops what is left.
//   - A drained host (Snapshot.Flags, Drain) takes no new job, and its
//     jobs move surge-first: each gets a successor with its index on
//     another host, and stops once the successor is up; until then it
//     holds its place in the count. One that fits nowhere keeps running
//     and is reported unplaced (ReasonDrain, Replaces naming it). One-off
//     jobs stay; crashed jobs and jobs of lost hosts are replaced as on any
//     host; stale jobs of a rolling restart are left to the restart. When
//     the count goes down, jobs up on drained hosts stop before other jobs
//     that are up.
//   - A removed host (Flags, Remove) that is not in Hosts loses its
//     assignments at once, one-off jobs' aside; its formations start the
//     missing jobs as new ones.
//   - A per-host formation (Formation.PerHost) ignores Count and wants one
//     job on each eligible host, pinned to it: see reconcilePerHost. Its
//     jobs never move to another host.
//
// Replacements delete the old assignment in the same plan as they create
// the new one; a job is never replaced twice. A formation never has more
// than Count jobs, or Count+1 while a rolling restart has stale jobs left,
// plus one for each of its jobs on a drained host.
package placement
