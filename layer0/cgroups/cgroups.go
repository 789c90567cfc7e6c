// Package cgroups reads a container's resource use from outside it, from
// the kernel's control groups (v1 or v2) and the process's network
// namespace, the way a host agent sees every container on its host.
//
// A Reader finds the cgroup hierarchies once, from /proc/self/mountinfo.
// Read(pid) then looks up the cgroups of a process of the container in
// /proc/<pid>/cgroup, so it works with Docker's cgroupfs and systemd
// drivers alike and with nested hierarchies, and reads:
//
//	            cgroup v1                               cgroup v2
//	CPU         cpuacct.usage                           cpu.stat usage_usec
//	memory      memory.stat total_rss, total_cache      memory.stat anon, file
//	limit       memory.limit_in_bytes                   memory.max
//	OOM kills   memory.oom_control oom_kill             memory.events oom_kill
//	disk I/O    blkio.throttle.io_service_bytes          io.stat rbytes, wbytes
//	pids        pids.current                            pids.current
//
// and the network counters of the process's namespace from
// /proc/<pid>/net/dev (every interface but lo). A figure whose file is
// missing (a controller not mounted, an older kernel) reads as zero.
package cgroups

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Usage is what a container used, as cumulative counters and current
// levels.
type Usage struct {
	// CPUNanos is the CPU time used since the cgroup was created, in
	// nanoseconds.
	CPUNanos uint64
	// MemoryRSS is anonymous memory (heap, stacks) in bytes.
	MemoryRSS uint64
	// MemoryCache is page cache charged to the cgroup, in bytes.
	MemoryCache uint64
	// MemoryLimit is the memory limit in bytes; zero means none.
	MemoryLimit uint64
	// OOMKills counts processes the kernel's OOM killer ended.
	OOMKills uint64
	// DiskReadBytes and DiskWriteBytes count block I/O, in bytes.
	DiskReadBytes, DiskWriteBytes uint64
	// NetRxBytes and NetTxBytes count network traffic of the process's
	// namespace, in bytes, loopback excluded.
	NetRxBytes, NetTxBytes uint64
	// Pids is the number of processes and threads.
	Pids uint64
}

// ErrNoProcess means that the process is gone (the container stopped).
var ErrNoProcess = errors.New("no such process")

// noLimit is the smallest value v1 uses for "no memory limit" (the page
// counter's maximum, rounded to pages).
const noLimit = 1 << 62

// Reader reads containers' usage. It is safe for concurrent use.
type Reader struct {
	proc string
	// v1 maps each v1 controller (cpuacct, memory, blkio, pids) to its
	// mount; v2 is the unified hierarchy's, when mounted.
	v1 map[string]mount
	v2 *mount
}

// mount is where a hierarchy is mounted and which of its cgroups is the
// mount's root.
type mount struct {
	point, root string
}

// NewReader finds the cgroup hierarchies of this machine. procRoot is the
// proc file system's mount point; empty means /proc.
func NewReader(procRoot string) (*Reader, error) {
	if procRoot == "" {
		procRoot = "/proc"
	}
	f, err := os.ReadFile(filepath.Join(procRoot, "self", "mountinfo"))
	if err != nil {
		return nil, fmt.Errorf("cgroups: %w", err)
	}
	r := &Reader{proc: procRoot, v1: map[string]mount{}}
	for line := range strings.SplitSeq(string(f), "\n") {
		// 32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		fields, after := strings.Fields(pre), strings.Fields(post)
		if len(fields) < 5 || len(after) < 3 {
			continue
		}
		m := mount{point: unescape(fields[4]), root: unescape(fields[3])}
		switch after[0] {
		case "cgroup2":
			if r.v2 == nil {
				r.v2 = &m
			}
		case "cgroup":
			for opt := range strings.SplitSeq(after[2], ",") {
				switch opt {
				case "cpuacct", "memory", "blkio", "pids":
					if _, dup := r.v1[opt]; !dup {
						r.v1[opt] = m
					}
				}
			}
		}
	}
	if len(r.v1) == 0 && r.v2 == nil {
		return nil, errors.New("cgroups: no cgroup hierarchy is mounted")
	}
	return r, nil
}

// Version is 1 when the v1 controllers are mounted (a hybrid host counts
// as v1: its unified hierarchy holds no controllers), else 2.
func (r *Reader) Version() int {
	if len(r.v1) > 0 {
		return 1
	}
	return 2
}

// Read returns the usage of the cgroups of process pid, a process of the
// container (its init process). It fails with ErrNoProcess when the
// process is gone.
func (r *Reader) Read(pid int) (Usage, error) {
	paths, err := r.cgroupsOf(pid)
	if err != nil {
		return Usage{}, err
	}
	var u Usage
	if r.Version() == 1 {
		r.readV1(paths, &u)
	} else if p, ok := paths[""]; ok {
		readV2(r.dir(*r.v2, p), &u)
	}
	u.NetRxBytes, u.NetTxBytes = netDev(filepath.Join(r.proc, strconv.Itoa(pid), "net", "dev"))
	return u, nil
}

// cgroupsOf parses /proc/<pid>/cgroup into controller -> path ("" for
// the unified hierarchy).
func (r *Reader) cgroupsOf(pid int) (map[string]string, error) {
	b, err := os.ReadFile(filepath.Join(r.proc, strconv.Itoa(pid), "cgroup"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("cgroups: pid %d: %w", pid, ErrNoProcess)
	}
	if err != nil {
		return nil, fmt.Errorf("cgroups: pid %d: %w", pid, err)
	}
	paths := map[string]string{}
	for line := range strings.SplitSeq(string(b), "\n") {
		// 4:memory:/docker/<id>   or   0::/system.slice/docker-<id>.scope
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[1] == "" {
			paths[""] = parts[2]
			continue
		}
		for c := range strings.SplitSeq(parts[1], ",") {
			paths[c] = parts[2]
		}
	}
	return paths, nil
}

// dir is the directory of cgroup path in the hierarchy mounted at m.
func (r *Reader) dir(m mount, path string) string {
	rel := path
	if m.root != "/" {
		rel = strings.TrimPrefix(path, m.root)
	}
	return filepath.Join(m.point, filepath.FromSlash(rel))
}

func (r *Reader) readV1(paths map[string]string, u *Usage) {
	in := func(controller string) (string, bool) {
		m, ok := r.v1[controller]
		p, ok2 := paths[controller]
		if !ok || !ok2 {
			return "", false
		}
		return r.dir(m, p), true
	}
	if d, ok := in("cpuacct"); ok {
		u.CPUNanos = readUint(filepath.Join(d, "cpuacct.usage"))
	}
	if d, ok := in("memory"); ok {
		st := keyValues(filepath.Join(d, "memory.stat"))
		// total_* include child cgroups; a container's processes may sit
		// in children of its cgroup.
		u.MemoryRSS = firstOf(st, "total_rss", "rss")
		u.MemoryCache = firstOf(st, "total_cache", "cache")
		if l := readUint(filepath.Join(d, "memory.limit_in_bytes")); l < noLimit {
			u.MemoryLimit = l
		}
		u.OOMKills = keyValues(filepath.Join(d, "memory.oom_control"))["oom_kill"]
	}
	if d, ok := in("blkio"); ok {
		u.DiskReadBytes, u.DiskWriteBytes = blkio(filepath.Join(d, "blkio.throttle.io_service_bytes"))
	}
	if d, ok := in("pids"); ok {
		u.Pids = readUint(filepath.Join(d, "pids.current"))
	}
}

func readV2(d string, u *Usage) {
	u.CPUNanos = keyValues(filepath.Join(d, "cpu.stat"))["usage_usec"] * 1000
	st := keyValues(filepath.Join(d, "memory.stat"))
	u.MemoryRSS, u.MemoryCache = st["anon"], st["file"]
	u.MemoryLimit = readUint(filepath.Join(d, "memory.max")) // "max" reads as 0
	u.OOMKills = keyValues(filepath.Join(d, "memory.events"))["oom_kill"]
	u.DiskReadBytes, u.DiskWriteBytes = ioStat(filepath.Join(d, "io.stat"))
	u.Pids = readUint(filepath.Join(d, "pids.current"))
}

// readUint reads a file holding one number; anything else reads as 0.
func readUint(file string) uint64 {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseUint(string(bytes.TrimSpace(b)), 10, 64)
	return n
}

// keyValues reads "key value" lines.
func keyValues(file string) map[string]uint64 {
	out := map[string]uint64{}
	eachLine(file, func(f []string) {
		if len(f) == 2 {
			if n, err := strconv.ParseUint(f[1], 10, 64); err == nil {
				out[f[0]] = n
			}
		}
	})
	return out
}

func firstOf(m map[string]uint64, keys ...string) uint64 {
	for _, k := range keys {
		if v, ok := m[k]; ok {
			return v
		}
	}
	return 0
}

// blkio sums v1's "MAJ:MIN Read N" and "MAJ:MIN Write N" lines over the
// devices.
func blkio(file string) (read, write uint64) {
	eachLine(file, func(f []string) {
		if len(f) != 3 {
			return
		}
		n, err := strconv.ParseUint(f[2], 10, 64)
		if err != nil {
			return
		}
		switch f[1] {
		case "Read":
			read += n
		case "Write":
			write += n
		}
	})
	return read, write
}

// ioStat sums v2's "MAJ:MIN rbytes=N wbytes=N ..." lines over the devices.
func ioStat(file string) (read, write uint64) {
	eachLine(file, func(f []string) {
		for _, kv := range f[1:] {
			k, v, _ := strings.Cut(kv, "=")
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				continue
			}
			switch k {
			case "rbytes":
				read += n
			case "wbytes":
				write += n
			}
		}
	})
	return read, write
}

// netDev sums the receive and transmit bytes of every interface but lo in
// a /proc/<pid>/net/dev file.
func netDev(file string) (rx, tx uint64) {
	f, err := os.Open(file)
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// "  eth0: 1234 5 0 ..." (8 receive fields, then transmit); a
		// long counter follows the colon with no space. The first two
		// lines are headers, without a colon.
		name, counters, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(name) == "lo" {
			continue
		}
		fs := strings.Fields(counters)
		if len(fs) < 9 {
			continue
		}
		r, err1 := strconv.ParseUint(fs[0], 10, 64)
		t, err2 := strconv.ParseUint(fs[8], 10, 64)
		if err1 == nil && err2 == nil {
			rx += r
			tx += t
		}
	}
	return rx, tx
}

func eachLine(file string, fn func(fields []string)) {
	f, err := os.Open(file)
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fn(strings.Fields(sc.Text()))
	}
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
