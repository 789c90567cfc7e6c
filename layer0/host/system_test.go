package host_test

import (
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/mount"

	"github.com/gantryhq/gantry/deploy/testenv"
	hostclient "github.com/gantryhq/gantry/layer0/host/client"
	"github.com/gantryhq/gantry/layer0/keyspace"
)

// testSystemJob runs a job of the platform's own: on the host's network,
// with a bind mount of a host directory and the system label; it is up
// once its port of the advertised address answers.
func testSystemJob(t *testing.T, f *fixture) {
	e := f.env(t)
	e.start(e.config("h1"))
	_, port, err := net.SplitHostPort(testenv.FreeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	dir := t.TempDir()
	spec := e.webSpec("gantry-thing", nil)
	spec.Type, spec.Service = "thing", ""
	spec.Port, spec.HostNetwork, spec.System = p, true, "gantry-thing"
	spec.Binds = []keyspace.Bind{{Source: dir, Target: dir}}
	e.assign("h1", "job-system", spec)
	st := e.waitState("job-system", keyspace.StateUp)
	if want := net.JoinHostPort("127.0.0.1", port); st.Addr != want {
		t.Errorf("address %q, want %q", st.Addr, want)
	}
	if code, _, err := get("http://" + st.Addr + "/"); err != nil || code != http.StatusOK {
		t.Errorf("GET / on the host's port = %d, %v", code, err)
	}
	info := e.inspect(st.ContainerID)
	if !info.HostConfig.NetworkMode.IsHost() {
		t.Errorf("network mode %q, want host", info.HostConfig.NetworkMode)
	}
	if len(info.HostConfig.PortBindings) != 0 {
		t.Errorf("ports published on the host's network: %v", info.HostConfig.PortBindings)
	}
	bound := false
	for _, m := range info.Mounts {
		if m.Type == mount.TypeBind && m.Source == dir && m.Destination == dir && m.RW {
			bound = true
		}
	}
	if !bound {
		t.Errorf("mounts %+v, want %s bound read-write", info.Mounts, dir)
	}
	if got := info.Config.Labels[keyspace.LabelSystem]; got != "gantry-thing" {
		t.Errorf("label %s = %q, want gantry-thing", keyspace.LabelSystem, got)
	}

	t.Run("invalid binds", func(t *testing.T) {
		bad := spec
		bad.Binds = []keyspace.Bind{{Source: "relative", Target: "/x"}, {Source: "/a", Target: "/x"}}
		e.assign("h1", "job-badbind", bad)
		st := e.waitState("job-badbind", keyspace.StateCrashed)
		if st.ContainerID != "" {
			t.Errorf("a container was made for an invalid spec: %+v", st)
		}
	})
}

// testSystemJobRestart kills a system job's container twice: each time
// the agent starts the same container again itself, the job never
// crashed (the scheduler would replace it) but starting with the exit's
// code until it is up again, the second quick exit after twice the first's
// delay, and the output of every run in the job's log once. A system job
// that exits with status 0 crashes as any job does.
func testSystemJobRestart(t *testing.T, f *fixture) {
	e := f.env(t)
	sink := &recordingSink{}
	cfg := e.config("h1")
	cfg.Logs = sink
	e.start(cfg)
	_, port, err := net.SplitHostPort(testenv.FreeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	spec := e.webSpec("gantry-thing", nil)
	spec.Type, spec.Service = "thing", ""
	spec.Port, spec.HostNetwork, spec.System = p, true, "gantry-thing"
	history := e.history("job-system")
	e.assign("h1", "job-system", spec)
	first := e.waitState("job-system", keyspace.StateUp)

	last := first
	for i, wait := range []string{"250ms", "500ms"} {
		if err := e.docker.ContainerKill(t.Context(), first.ContainerID, "KILL"); err != nil {
			t.Fatal(err)
		}
		waitFor(t, fmt.Sprintf("kill %d: the job up again in its container", i+1), func() (bool, string) {
			st, ok := e.jobState("job-system")
			return ok && st.State == keyspace.StateUp && st.StartedAt.After(last.StartedAt), fmt.Sprintf("%+v", st)
		})
		last, _ = e.jobState("job-system")
		if last.ContainerID != first.ContainerID || last.ExitCode != nil || !e.inspect(first.ContainerID).State.Running {
			t.Errorf("kill %d: state %+v, want the same container %s running, without an exit code", i+1, last, first.ContainerID)
		}
		event := "thing.1 exited (exit 137); starting it again in " + wait
		waitFor(t, fmt.Sprintf("kill %d: the event %q", i+1, event), func() (bool, string) {
			return slices.ContainsFunc(sink.snapshot(), func(l shipped) bool { return l.event && l.text == event }), fmt.Sprintf("%+v", sink.snapshot())
		})
		if code, _, err := get("http://" + last.Addr + "/"); err != nil || code != http.StatusOK {
			t.Errorf("kill %d: GET / = %d, %v", i+1, code, err)
		}
	}
	restarts := 0
	for _, st := range history() {
		switch {
		case st.State == keyspace.StateCrashed:
			t.Errorf("the system job was recorded crashed: %+v", st)
		case st.State == keyspace.StateStarting && st.ExitCode != nil:
			restarts++
			if *st.ExitCode != 137 || st.ContainerID != first.ContainerID {
				t.Errorf("state while starting again: %+v, want exit code 137 and the same container", st)
			}
		}
	}
	if restarts != 2 {
		t.Errorf("%d states starting again with an exit code, want 2: %+v", restarts, history())
	}

	// Each run's output, once, in the shipped log and in the agent's.
	listening := fmt.Sprintf("listening on :%d", p)
	waitFor(t, "the output of the three runs shipped", func() (bool, string) {
		n := 0
		for _, l := range sink.snapshot() {
			if !l.event && l.text == listening {
				n++
			}
		}
		return n == 3, fmt.Sprintf("%d lines %q", n, listening)
	})
	var texts []string
	for _, l := range readAll(t, e.api("h1"), "job-system", hostclient.LogOptions{}) {
		texts = append(texts, l.Text)
	}
	if n := strings.Count(strings.Join(texts, "\n"), listening); n != 3 {
		t.Errorf("the agent's log of the job holds %q %d times, want 3: %q", listening, n, texts)
	}

	// A clean exit is the job's own doing: crashed, for the scheduler.
	clean := spec
	clean.Env = map[string]string{"EXIT_AFTER": "300ms", "EXIT_CODE": "0"}
	clean.Port = 0
	e.assign("h1", "job-clean", clean)
	st := e.waitState("job-clean", keyspace.StateCrashed)
	if st.ExitCode == nil || *st.ExitCode != 0 || e.inspect(st.ContainerID).State.Running {
		t.Errorf("state after a clean exit: %+v, want crashed with status 0 and the container stopped", st)
	}
}

// testReboot stops the agent, kills its jobs' containers as a reboot
// would, and starts the agent again: it starts the same containers again
// without waiting for a new assignment, but not the one of a job it had
// seen crash.
func testReboot(t *testing.T, f *fixture) {
	e := f.env(t)
	cfg := e.config("h1")
	first := e.start(cfg)
	web := e.webSpec("phoenix", nil)
	worker := e.webSpec("phoenix", nil)
	worker.Type, worker.Port, worker.Service = "worker", 0, ""
	crasher := e.webSpec("phoenix", map[string]string{"EXIT_AFTER": "200ms", "EXIT_CODE": "4"})
	crasher.Type, crasher.Port, crasher.Service = "crasher", 0, ""
	e.assign("h1", "job-web", web)
	e.assign("h1", "job-worker", worker)
	e.assign("h1", "job-crasher", crasher)
	webBefore := e.waitState("job-web", keyspace.StateUp)
	workerBefore := e.waitState("job-worker", keyspace.StateUp)
	crashed := e.waitState("job-crasher", keyspace.StateCrashed)
	first.stop(t)
	for _, id := range []string{webBefore.ContainerID, workerBefore.ContainerID} {
		if err := e.docker.ContainerKill(t.Context(), id, "KILL"); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "container "+id+" exited", func() (bool, string) {
			info := e.inspect(id)
			return !info.State.Running, info.State.Status
		})
	}

	e.start(cfg)
	var webAfter keyspace.JobState
	for _, before := range []keyspace.JobState{webBefore, workerBefore} {
		waitFor(t, "job "+before.JobID+" up again in its container", func() (bool, string) {
			// The container first, then the state: the agent publishes
			// "starting" before it starts the container, so a state read
			// after the container runs is not the first run's "up" (at
			// the address of the first run), which is in etcd until then.
			info := e.inspect(before.ContainerID)
			st, ok := e.jobState(before.JobID)
			if before.JobID == webBefore.JobID {
				webAfter = st
			}
			return ok && st.State == keyspace.StateUp && st.ContainerID == before.ContainerID && info.State.Running,
				fmt.Sprintf("state %+v, container %s", st, info.State.Status)
		})
	}
	// Docker publishes the port anew: discovery has the new address.
	if insts := e.instances(web.Service); len(insts) != 1 || insts[0].Addr != webAfter.Addr {
		t.Errorf("instances %+v after the reboot, want the one at %s", insts, webAfter.Addr)
	}
	if code, _, err := get("http://" + webAfter.Addr + "/"); err != nil || code != http.StatusOK {
		t.Errorf("web job after the reboot: GET / = %d, %v", code, err)
	}
	// The crashed job's container stays down: its replacement is the
	// scheduler's to place, after its back-off.
	time.Sleep(time.Second)
	if info := e.inspect(crashed.ContainerID); info.State.Running {
		t.Errorf("the container of a job seen crashed was started again")
	}
	if st, _ := e.jobState("job-crasher"); st.State != keyspace.StateCrashed {
		t.Errorf("crashed job's state %q after the restart, want crashed", st.State)
	}
}
