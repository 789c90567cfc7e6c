package layer0_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantryhq/gantry/layer0/host"
	"github.com/gantryhq/gantry/layer0/keyspace"
)

// setFlags writes a host's flags, as the controller does for gantry host
// drain and undrain.
func (c *cluster) setFlags(id string, f keyspace.HostFlags) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var err error
	if f == (keyspace.HostFlags{}) {
		_, err = c.etcd.Delete(ctx, c.space.HostFlag(id))
	} else {
		b, _ := json.Marshal(f)
		_, err = c.etcd.Put(ctx, c.space.HostFlag(id), string(b))
	}
	if err != nil {
		c.t.Fatal(err)
	}
}

// instances counts the discovery instances of a service: what the router
// sends requests to.
func (c *cluster) instances(service string) int {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.etcd.Get(ctx, c.space.Service(service), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		c.t.Fatal(err)
	}
	return int(resp.Count)
}

// perHost counts the app's running containers by the host that runs them.
func (c *cluster) perHost(app string) map[string]int {
	n := map[string]int{}
	for _, s := range c.containers(app) {
		n[s.Labels[host.LabelHost]]++
	}
	return n
}

// assignedTo counts the app's assignments by host.
func (c *cluster) assignedTo(app string) map[string]int {
	n := map[string]int{}
	for _, a := range c.assignments(app) {
		n[a.HostID]++
	}
	return n
}

// TestDrainMovesJobsWithoutDowntime: the jobs of a drained host move to
// the other host, each new job up before the old one stops: from the drain
// to its end the app always has as many jobs up, and instances in
// discovery, as its count. Undraining moves nothing back, and the host
// takes new jobs again.
func TestDrainMovesJobsWithoutDowntime(t *testing.T) {
	etcd, docker, image := setup(t)
	c := newCluster(t, etcd, docker, image)
	c.startHost("h1", "127.0.0.2", t.TempDir(), 4*jobMemory)
	c.scale("drain", 2, nil)
	eventually(t, 60*time.Second, "2 jobs up on h1", func() bool {
		return c.perHost("drain")["h1"] == 2 && c.upJobs("drain") == 2
	})
	// h2 has room for the two jobs only, so a job placed before the
	// scheduler sees the undrain below waits instead of going to h2.
	c.startHost("h2", "127.0.0.3", t.TempDir(), 2*jobMemory)
	eventually(t, 30*time.Second, "h2 registered", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := etcd.Get(ctx, c.space.Host("h2"))
		return err == nil && len(resp.Kvs) == 1
	})
	before := map[string]bool{}
	for _, a := range c.assignments("drain") {
		before[a.JobID] = true
	}

	// Watch the jobs up and the instances in discovery through the drain.
	var mu sync.Mutex
	minUp, minInstances := 2, 2
	stop := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			up := 0
			for _, s := range c.jobs("drain") {
				if s.State == keyspace.StateUp {
					up++
				}
			}
			inst := c.instances("drain-web")
			mu.Lock()
			minUp, minInstances = min(minUp, up), min(minInstances, inst)
			mu.Unlock()
		}
	}()
	c.setFlags("h1", keyspace.HostFlags{Drain: true, DrainedAt: time.Now()})
	eventually(t, 90*time.Second, "both jobs moved to h2, up, and h1's containers gone", func() bool {
		as := c.assignments("drain")
		for _, a := range as {
			if a.HostID != "h2" || before[a.JobID] {
				return false
			}
		}
		ph := c.perHost("drain")
		return len(as) == 2 && ph["h1"] == 0 && ph["h2"] == 2 && c.upJobs("drain") == 2
	})
	close(stop)
	<-watched
	if minUp < 2 || minInstances < 2 {
		t.Fatalf("during the drain as few as %d jobs were up and %d instances in discovery; want 2 all along", minUp, minInstances)
	}
	indexes := map[int]bool{}
	for _, a := range c.assignments("drain") {
		indexes[a.Index] = true
	}
	if !indexes[1] || !indexes[2] {
		t.Errorf("indexes after the drain: %v, want 1 and 2", indexes)
	}

	// Undrain: the jobs stay on h2; a new job goes to h1, the only host
	// with room.
	c.setFlags("h1", keyspace.HostFlags{})
	moved := map[string]bool{}
	for _, a := range c.assignments("drain") {
		moved[a.JobID] = true
	}
	c.scale("drain", 3, nil)
	eventually(t, 60*time.Second, "the third job up on h1", func() bool {
		return c.assignedTo("drain")["h1"] == 1 && c.perHost("drain")["h1"] == 1 && c.upJobs("drain") == 3
	})
	for _, a := range c.assignments("drain") {
		if a.HostID == "h2" && !moved[a.JobID] || a.HostID == "h1" && moved[a.JobID] {
			t.Errorf("job %s on %s after the undrain; want the 2 that moved still on h2", a.JobID, a.HostID)
		}
	}
	c.scale("drain", 0, nil)
	eventually(t, 60*time.Second, "no container left", func() bool { return len(c.containers("drain")) == 0 })
}

// TestReturningHostIsFenced: a host gone past the host grace has its job
// moved to another host; when it comes back with the same state dir, its
// agent removes the stale container of the job that moved instead of
// adopting it, and the app runs exactly its count of containers.
func TestReturningHostIsFenced(t *testing.T) {
	etcd, docker, image := setup(t)
	c := newCluster(t, etcd, docker, image)
	c.startHost("h1", "127.0.0.2", t.TempDir(), jobMemory)
	h2State := t.TempDir()
	c.startHost("h2", "127.0.0.3", h2State, jobMemory)
	c.scale("fenced", 2, nil)
	eventually(t, 60*time.Second, "one job up on h1 and one on h2", func() bool {
		ph := c.perHost("fenced")
		return ph["h1"] == 1 && ph["h2"] == 1 && c.upJobs("fenced") == 2
	})
	var moved, kept string
	for _, a := range c.assignments("fenced") {
		if a.HostID == "h2" {
			moved = a.JobID
		} else {
			kept = a.JobID
		}
	}

	// h2's agent dies without cleaning up; its container runs on. h3
	// takes its job once the grace has passed.
	c.stopHost("h2")
	c.startHost("h3", "127.0.0.4", t.TempDir(), jobMemory)
	eventually(t, 60*time.Second, "h2's job replaced on h3", func() bool {
		on := c.assignedTo("fenced")
		ph := c.perHost("fenced")
		return on["h1"] == 1 && on["h3"] == 1 && on["h2"] == 0 && ph["h3"] == 1 && c.upJobs("fenced") == 2
	})
	if ph := c.perHost("fenced"); ph["h2"] != 1 {
		t.Fatalf("containers per host while h2 is away: %v; want h2's stale container still running", ph)
	}

	// h2 comes back: the stale container goes, nothing else changes.
	c.startHost("h2", "127.0.0.3", h2State, jobMemory)
	// (The agent reports the stale job stopping, then down, while it
	// removes it, and then deletes its state.)
	eventually(t, 60*time.Second, "h2's stale container and its job state removed", func() bool {
		ph := c.perHost("fenced")
		_, reported := c.jobs("fenced")[moved]
		return ph["h2"] == 0 && ph["h1"] == 1 && ph["h3"] == 1 && !reported
	})
	as := c.assignments("fenced")
	if len(as) != 2 {
		t.Fatalf("assignments after h2's return: %+v; want 2", as)
	}
	for _, a := range as {
		if a.JobID == moved || a.HostID == "h2" {
			t.Errorf("assignment %s on %s after h2's return", a.JobID, a.HostID)
		}
	}
	if s := c.jobs("fenced")[kept]; s.State != keyspace.StateUp {
		t.Errorf("h1's job %s is %q after h2's return", kept, s.State)
	}
	if n := len(c.containers("fenced")); n != 2 || c.upJobs("fenced") != 2 {
		t.Errorf("%d containers and %d jobs up after h2's return, want 2 and 2", n, c.upJobs("fenced"))
	}
	c.scale("fenced", 0, nil)
	eventually(t, 60*time.Second, "no container left", func() bool { return len(c.containers("fenced")) == 0 })
}

// TestRemovedHostJobsMoveAtOnce: the job of a host that is down moves as
// soon as the host is removed, long before the host grace; when the host
// comes back anyway, its agent removes the stale container.
func TestRemovedHostJobsMoveAtOnce(t *testing.T) {
	etcd, docker, image := setup(t)
	c := newClusterWithGrace(t, etcd, docker, image, time.Hour)
	c.startHost("h1", "127.0.0.2", t.TempDir(), jobMemory)
	h2State := t.TempDir()
	c.startHost("h2", "127.0.0.3", h2State, jobMemory)
	c.scale("removed", 2, nil)
	eventually(t, 60*time.Second, "one job up on h1 and one on h2", func() bool {
		ph := c.perHost("removed")
		return ph["h1"] == 1 && ph["h2"] == 1 && c.upJobs("removed") == 2
	})
	c.stopHost("h2")
	c.startHost("h3", "127.0.0.4", t.TempDir(), jobMemory)
	eventually(t, 30*time.Second, "h2's lease expired", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := etcd.Get(ctx, c.space.Host("h2"))
		return err == nil && len(resp.Kvs) == 0
	})
	if on := c.assignedTo("removed"); on["h2"] != 1 {
		t.Fatalf("assignments per host before the removal: %v; want h2's kept for the hour of grace", on)
	}
	c.setFlags("h2", keyspace.HostFlags{Remove: true, RemovedAt: time.Now()})
	eventually(t, 60*time.Second, "h2's job placed on h3 and up", func() bool {
		on := c.assignedTo("removed")
		return on["h1"] == 1 && on["h3"] == 1 && on["h2"] == 0 && c.perHost("removed")["h3"] == 1 && c.upJobs("removed") == 2
	})

	c.startHost("h2", "127.0.0.3", h2State, jobMemory)
	eventually(t, 60*time.Second, "h2's stale container removed", func() bool {
		ph := c.perHost("removed")
		return ph["h2"] == 0 && ph["h1"] == 1 && ph["h3"] == 1
	})
	if on := c.assignedTo("removed"); len(on) != 2 || on["h1"] != 1 || on["h3"] != 1 {
		t.Errorf("assignments per host after h2's return: %v", on)
	}
	c.scale("removed", 0, nil)
	eventually(t, 60*time.Second, "no container left", func() bool { return len(c.containers("removed")) == 0 })
}
