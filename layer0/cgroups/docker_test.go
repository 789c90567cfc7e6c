package cgroups

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/gantryhq/gantry/deploy/testenv"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's CPU times (100 on
// every Linux architecture Go supports).
const clockTicks = 100

// TestReadContainer reads a real container that holds 64 MiB and keeps a
// core busy, and checks the figures against what the kernel reports for
// the process itself (/proc/<pid>/stat) over the same interval, so that
// the check holds however loaded the machine is.
func TestReadContainer(t *testing.T) {
	docker := testenv.Docker(t)
	_, file, _, _ := runtime.Caller(0)
	image := testenv.BuildTestImage(t, docker, filepath.Join(filepath.Dir(file), "..", "host", "testdata", "httpserver"))

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	const limit = 256 << 20
	created, err := docker.ContainerCreate(ctx, &container.Config{Image: image, Cmd: []string{"burn", "64"}},
		&container.HostConfig{Resources: container.Resources{Memory: limit}}, nil, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		docker.ContainerRemove(ctx, created.ID, container.RemoveOptions{Force: true})
	})
	if err := docker.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	info, err := docker.ContainerInspect(ctx, created.ID)
	if err != nil || info.State == nil || info.State.Pid == 0 {
		t.Fatalf("inspect: %v", err)
	}
	pid := info.State.Pid

	r, err := NewReader("")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cgroup v%d", r.Version())

	// Wait until the memory is held.
	var u Usage
	deadline := time.Now().Add(time.Minute)
	for {
		if u, err = r.Read(pid); err != nil {
			t.Fatal(err)
		}
		if u.MemoryRSS >= 64<<20 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if u.MemoryRSS < 64<<20 || u.MemoryRSS > 64<<20+48<<20 {
		t.Errorf("RSS %d MiB, want 64 MiB held plus a little", u.MemoryRSS>>20)
	}
	if u.MemoryLimit != limit {
		t.Errorf("memory limit %d, want %d", u.MemoryLimit, limit)
	}
	if u.Pids < 1 {
		t.Errorf("pids %d, want at least the process", u.Pids)
	}

	// The interval lasts until the process has had 0.5 s of CPU, however
	// long a loaded machine takes to give it that.
	cpu0, proc0 := u.CPUNanos, processCPU(t, pid)
	var cpu1 uint64
	var proc1 time.Duration
	for deadline := time.Now().Add(time.Minute); ; {
		time.Sleep(500 * time.Millisecond)
		u1, err := r.Read(pid)
		if err != nil {
			t.Fatal(err)
		}
		cpu1, proc1 = u1.CPUNanos, processCPU(t, pid)
		if proc1-proc0 >= 500*time.Millisecond || time.Now().After(deadline) {
			break
		}
	}
	got, want := float64(cpu1-cpu0)/1e9, (proc1 - proc0).Seconds()
	t.Logf("over the interval: cgroup %.3f s of CPU, the process %.3f s", got, want)
	// The two reads of each source are a few syscalls apart, and the
	// process's times have a resolution of 10 ms.
	if math.Abs(got-want) > 0.1*want+0.05 {
		t.Errorf("cgroup CPU %.3f s, process CPU %.3f s over the same interval", got, want)
	}

	// A stopped container's process is gone.
	if err := docker.ContainerKill(ctx, created.ID, "KILL"); err != nil {
		t.Fatal(err)
	}
	docker.ContainerWait(ctx, created.ID, container.WaitConditionNotRunning)
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if _, err = r.Read(pid); err != nil {
			break
		}
	}
	if err == nil {
		t.Errorf("Read of a killed container's process: no error")
	}
}

// processCPU is the user plus system time of process pid from
// /proc/<pid>/stat.
func processCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// The command name, in parentheses, may hold spaces: count fields
	// after its closing parenthesis. utime and stime are fields 14 and 15.
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	utime, _ := strconv.ParseUint(fields[11], 10, 64)
	stime, _ := strconv.ParseUint(fields[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / clockTicks
}

// BenchmarkSweep100 is the host agent's reading of 100 running
// containers, one sweep per op: the CPU a sweep costs, every StatsInterval.
// It starts 100 idle containers of the test image (and removes them).
func BenchmarkSweep100(b *testing.B) {
	docker := testenv.Docker(b)
	_, file, _, _ := runtime.Caller(0)
	image := testenv.BuildTestImage(b, docker, filepath.Join(filepath.Dir(file), "..", "host", "testdata", "httpserver"))
	const n = 100
	pids := make([]int, n)
	errs := make(chan error, n)
	sem := make(chan struct{}, 8)
	for i := range n {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			c, err := docker.ContainerCreate(ctx, &container.Config{Image: image, Cmd: []string{"serve"}}, nil, nil, nil, "")
			if err != nil {
				errs <- err
				return
			}
			b.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				docker.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
			})
			if err := docker.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
				errs <- err
				return
			}
			info, err := docker.ContainerInspect(ctx, c.ID)
			if err != nil {
				errs <- err
				return
			}
			pids[i] = info.State.Pid
			errs <- nil
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	r, err := NewReader("")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, pid := range pids {
			if _, err := r.Read(pid); err != nil {
				b.Fatal(err)
			}
		}
	}
}
