// Package hostusage reads a host's own CPU, memory and disk use from the
// kernel: /proc/stat, /proc/meminfo and statfs(2) of the data directories.
package hostusage

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// CPUTimes are the cumulative CPU times of all cores from /proc/stat, in
// clock ticks.
type CPUTimes struct {
	Busy, Total uint64
}

// Cores returns the cores used on average between an earlier reading and
// t, on a host of n cores.
func (t CPUTimes) Cores(earlier CPUTimes, n int) float64 {
	if t.Total <= earlier.Total || t.Busy < earlier.Busy {
		return 0
	}
	return float64(t.Busy-earlier.Busy) / float64(t.Total-earlier.Total) * float64(n)
}

// Memory is the host's memory, in bytes.
type Memory struct {
	Total, Available uint64
}

// Used is what is not available to new processes.
func (m Memory) Used() uint64 {
	if m.Available > m.Total {
		return 0
	}
	return m.Total - m.Available
}

// Disk is the use of the file system that holds a path, in bytes.
type Disk struct {
	Path        string
	Total, Free uint64
}

// Used returns the bytes in use, counting the blocks reserved for root
// as used, as df does.
func (d Disk) Used() uint64 {
	if d.Free > d.Total {
		return 0
	}
	return d.Total - d.Free
}

// Fraction returns the part of the file system in use, 0 to 1.
func (d Disk) Fraction() float64 {
	if d.Total == 0 {
		return 0
	}
	return float64(d.Used()) / float64(d.Total)
}

// ReadCPU reads the aggregate "cpu" line of the stat file (procRoot/stat;
// an empty procRoot means /proc). Busy is everything but idle and iowait.
func ReadCPU(procRoot string) (CPUTimes, error) {
	f, err := os.Open(filepath.Join(orProc(procRoot), "stat"))
	if err != nil {
		return CPUTimes{}, fmt.Errorf("host cpu: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 || fields[0] != "cpu" {
			continue
		}
		var t CPUTimes
		// user nice system idle iowait irq softirq steal (guest time is
		// already in user and nice).
		for i, v := range fields[1:min(len(fields), 9)] {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return CPUTimes{}, fmt.Errorf("host cpu: field %d %q: %w", i+1, v, err)
			}
			t.Total += n
			if i != 3 && i != 4 {
				t.Busy += n
			}
		}
		return t, nil
	}
	return CPUTimes{}, fmt.Errorf("host cpu: no cpu line in %s", f.Name())
}

// ReadMemory reads MemTotal and MemAvailable from procRoot/meminfo.
func ReadMemory(procRoot string) (Memory, error) {
	f, err := os.Open(filepath.Join(orProc(procRoot), "meminfo"))
	if err != nil {
		return Memory{}, fmt.Errorf("host memory: %w", err)
	}
	defer f.Close()
	var m Memory
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text()) // "MemTotal:  24000000 kB"
		if len(fields) < 2 {
			continue
		}
		n, err := strconv.ParseUint(fields[1], 10, 64)
		if err != nil {
			continue
		}
		switch fields[0] {
		case "MemTotal:":
			m.Total = n << 10
		case "MemAvailable:":
			m.Available = n << 10
		}
	}
	if m.Total == 0 {
		return Memory{}, fmt.Errorf("host memory: no MemTotal in %s", f.Name())
	}
	return m, nil
}

// ReadDisk returns the use of the file system that holds path.
func ReadDisk(path string) (Disk, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return Disk{}, fmt.Errorf("disk of %s: %w", path, err)
	}
	bs := uint64(st.Bsize)
	return Disk{Path: path, Total: st.Blocks * bs, Free: st.Bavail * bs}, nil
}

func orProc(root string) string {
	if root == "" {
		return "/proc"
	}
	return root
}
