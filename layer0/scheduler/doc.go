// Package scheduler runs the scheduler leader of a Gantry cluster.
//
// Several schedulers may run at once; they campaign in an etcd election
// (keyspace.Election("scheduler")) and one leads while the others wait as
// standbys. The leader follows the hosts, formations, assignments and job
// states of the cluster, hands a snapshot of them to placement.Place, and
// writes the resulting plan as assignments. Every write is a transaction
// guarded by the leader's election key, so a leader that has lost its
// election can no longer change anything.
//
// The leader re-plans on every change, every Tick and when a crash
// back-off or a host grace ends. It remembers when each host was last seen
// in memory only; a new leader counts every host as seen when it took
// over, so restarting the scheduler never moves jobs by itself.
package scheduler
