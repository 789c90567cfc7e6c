package cgroups

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeHost lays out a proc file system and cgroup mounts under a temporary
// directory: files maps paths (with ROOT standing for the directory) to
// contents.
func fakeHost(t testing.TB, files map[string]string) (procRoot string) {
	t.Helper()
	root := t.TempDir()
	for name, content := range files {
		file := filepath.Join(root, strings.ReplaceAll(name, "ROOT/", ""))
		if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, []byte(strings.ReplaceAll(content, "ROOT", root)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(root, "proc")
}

const netDevFile = `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    5000      10    0    0    0     0          0         0     5000      10    0    0    0     0       0          0
  eth0:123456789012  20    0    0    0     0          0         0     2000      20    0    0    0     0       0          0
  eth1:     100       1    0    0    0     0          0         0       50       1    0    0    0     0       0          0
`

func TestRead(t *testing.T) {
	const id = "/docker/0123abcd"
	for _, tc := range []struct {
		name    string
		files   map[string]string
		version int
		want    Usage
	}{
		{
			name: "v1 cgroupfs",
			files: map[string]string{
				"ROOT/proc/self/mountinfo": `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
33 31 0:30 / ROOT/cg/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / ROOT/cg/memory rw,relatime - cgroup cgroup rw,memory
35 31 0:32 / ROOT/cg/blkio rw,relatime - cgroup cgroup rw,blkio
36 31 0:33 / ROOT/cg/pids rw,relatime - cgroup cgroup rw,pids
37 31 0:34 / ROOT/cg/unified rw,relatime - cgroup2 cgroup2 rw
`,
				"ROOT/proc/42/cgroup":                                           "8:pids:" + id + "\n7:blkio:" + id + "\n4:memory:" + id + "\n2:cpuacct:" + id + "\n0::" + id + "\n",
				"ROOT/proc/42/net/dev":                                          netDevFile,
				"ROOT/cg/cpuacct/docker/0123abcd/cpuacct.usage":                 "82370239\n",
				"ROOT/cg/memory/docker/0123abcd/memory.stat":                    "cache 100\nrss 200\ntotal_cache 3878912\ntotal_rss 11825152\n",
				"ROOT/cg/memory/docker/0123abcd/memory.limit_in_bytes":          "536870912\n",
				"ROOT/cg/memory/docker/0123abcd/memory.oom_control":             "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
				"ROOT/cg/blkio/docker/0123abcd/blkio.throttle.io_service_bytes": "8:0 Read 4096\n8:0 Write 8192\n8:0 Total 12288\n8:16 Read 1\n8:16 Write 2\nTotal 12291\n",
				"ROOT/cg/pids/docker/0123abcd/pids.current":                     "14\n",
			},
			version: 1,
			want: Usage{CPUNanos: 82370239, MemoryRSS: 11825152, MemoryCache: 3878912, MemoryLimit: 536870912, OOMKills: 2,
				DiskReadBytes: 4097, DiskWriteBytes: 8194, NetRxBytes: 123456789112, NetTxBytes: 2050, Pids: 14},
		},
		{
			name: "v1 without a limit, nested mount root, no pids controller",
			files: map[string]string{
				"ROOT/proc/self/mountinfo": `33 31 0:30 /outer ROOT/cg/cpuacct rw - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 /outer ROOT/cg/memory rw - cgroup cgroup rw,memory
`,
				"ROOT/proc/42/cgroup":                                  "4:memory:/outer" + id + "\n2:cpu,cpuacct:/outer" + id + "\n",
				"ROOT/cg/cpuacct/docker/0123abcd/cpuacct.usage":        "5\n",
				"ROOT/cg/memory/docker/0123abcd/memory.stat":           "rss 7\ncache 3\n",
				"ROOT/cg/memory/docker/0123abcd/memory.limit_in_bytes": "9223372036854771712\n",
			},
			version: 1,
			want:    Usage{CPUNanos: 5, MemoryRSS: 7, MemoryCache: 3},
		},
		{
			name: "v2 systemd",
			files: map[string]string{
				"ROOT/proc/self/mountinfo":                                 "30 23 0:26 / ROOT/cg rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n",
				"ROOT/proc/42/cgroup":                                      "0::/system.slice/docker-0123abcd.scope\n",
				"ROOT/proc/42/net/dev":                                     netDevFile,
				"ROOT/cg/system.slice/docker-0123abcd.scope/cpu.stat":      "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n",
				"ROOT/cg/system.slice/docker-0123abcd.scope/memory.stat":   "anon 4096\nfile 8192\nkernel 100\n",
				"ROOT/cg/system.slice/docker-0123abcd.scope/memory.max":    "max\n",
				"ROOT/cg/system.slice/docker-0123abcd.scope/memory.events": "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
				"ROOT/cg/system.slice/docker-0123abcd.scope/io.stat":       "8:0 rbytes=100 wbytes=200 rios=1 wios=2 dbytes=0 dios=0\n8:16 rbytes=1 wbytes=2\n",
				"ROOT/cg/system.slice/docker-0123abcd.scope/pids.current":  "3\n",
			},
			version: 2,
			want: Usage{CPUNanos: 1500000, MemoryRSS: 4096, MemoryCache: 8192, OOMKills: 1,
				DiskReadBytes: 101, DiskWriteBytes: 202, NetRxBytes: 123456789112, NetTxBytes: 2050, Pids: 3},
		},
		{
			name: "v2 with a limit and a mount point with a space",
			files: map[string]string{
				"ROOT/proc/self/mountinfo":            `30 23 0:26 / ROOT/c\040g rw - cgroup2 cgroup2 rw` + "\n",
				"ROOT/proc/42/cgroup":                 "0::/docker/0123abcd\n",
				"ROOT/c g/docker/0123abcd/memory.max": "268435456\n",
			},
			version: 2,
			want:    Usage{MemoryLimit: 268435456},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			proc := fakeHost(t, tc.files)
			r, err := NewReader(proc)
			if err != nil {
				t.Fatal(err)
			}
			if r.Version() != tc.version {
				t.Errorf("Version() = %d, want %d", r.Version(), tc.version)
			}
			got, err := r.Read(42)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("Read:\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestReadErrors(t *testing.T) {
	t.Run("process gone", func(t *testing.T) {
		proc := fakeHost(t, map[string]string{"ROOT/proc/self/mountinfo": "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"})
		r, err := NewReader(proc)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Read(99); !errors.Is(err, ErrNoProcess) {
			t.Fatalf("Read of a gone process: %v, want ErrNoProcess", err)
		}
	})
	t.Run("no hierarchy", func(t *testing.T) {
		proc := fakeHost(t, map[string]string{"ROOT/proc/self/mountinfo": "31 23 0:28 / /sys rw - sysfs sysfs rw\n"})
		if _, err := NewReader(proc); err == nil || !strings.Contains(err.Error(), "no cgroup hierarchy") {
			t.Fatalf("NewReader without cgroups: %v", err)
		}
	})
}

// FuzzParse feeds arbitrary mountinfo, cgroup and counter files to the
// reader: it must never panic.
func FuzzParse(f *testing.F) {
	f.Add("33 31 0:30 / ROOT/cg rw - cgroup cgroup rw,cpuacct,memory\n", "2:cpuacct,memory:/x\n", "rss 1\n", "eth0: 1 2 3 4 5 6 7 8 9\n")
	f.Add("30 23 0:26 / ROOT/cg rw - cgroup2 cgroup2 rw\n", "0::/x\n", "anon 5\nfile x\n", "lo:1")
	f.Add(`1 2 3 \0 \12 - cgroup2`, "::\n:::", "\x00", ":::")
	f.Fuzz(func(t *testing.T, mountinfo, cgroup, stat, netdev string) {
		proc := fakeHost(t, map[string]string{
			"ROOT/proc/self/mountinfo": mountinfo,
			"ROOT/proc/7/cgroup":       cgroup,
			"ROOT/proc/7/net/dev":      netdev,
			"ROOT/cg/x/memory.stat":    stat,
			"ROOT/cg/x/cpu.stat":       stat,
		})
		r, err := NewReader(proc)
		if err != nil {
			return
		}
		r.Read(7)
	})
}

// BenchmarkRead is one sample of one container, as the host agent takes
// for each job every interval (real files on this machine's file system,
// laid out as cgroup v1 with the cgroupfs driver).
func BenchmarkRead(b *testing.B) {
	proc := fakeHost(b, map[string]string{
		"ROOT/proc/self/mountinfo": `33 31 0:30 / ROOT/cg/cpuacct rw - cgroup cgroup rw,cpuacct
34 31 0:31 / ROOT/cg/memory rw - cgroup cgroup rw,memory
35 31 0:32 / ROOT/cg/blkio rw - cgroup cgroup rw,blkio
36 31 0:33 / ROOT/cg/pids rw - cgroup cgroup rw,pids
`,
		"ROOT/proc/42/cgroup":                                    "8:pids:/docker/a\n7:blkio:/docker/a\n4:memory:/docker/a\n2:cpuacct:/docker/a\n",
		"ROOT/proc/42/net/dev":                                   netDevFile,
		"ROOT/cg/cpuacct/docker/a/cpuacct.usage":                 "82370239\n",
		"ROOT/cg/memory/docker/a/memory.stat":                    strings.Repeat("pgfault 5299\n", 30) + "total_cache 3878912\ntotal_rss 11825152\n",
		"ROOT/cg/memory/docker/a/memory.limit_in_bytes":          "536870912\n",
		"ROOT/cg/memory/docker/a/memory.oom_control":             "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
		"ROOT/cg/blkio/docker/a/blkio.throttle.io_service_bytes": "8:0 Read 4096\n8:0 Write 8192\n8:0 Total 12288\nTotal 12288\n",
		"ROOT/cg/pids/docker/a/pids.current":                     "14\n",
	})
	r, err := NewReader(proc)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Read(42); err != nil {
			b.Fatal(err)
		}
	}
}
