package appmetrics

import (
	"cmp"
	"fmt"
	"slices"

	hostclient "github.com/gantryhq/gantry/layer0/host/client"
)

// DefaultDiskWarningPercent is Config.DiskWarningPercent when it is zero.
const DefaultDiskWarningPercent = 85

// DiskHysteresisPercent is how many points of percent under the warning
// threshold a disk must fall before it counts as back under: a disk that
// hovers at the threshold warns once, not at every reading.
const DiskHysteresisPercent = 2

// diskKey names one disk of one host.
type diskKey struct{ host, path string }

// diskChange is a disk that passed the threshold (over) or fell back
// under it.
type diskChange struct {
	host string
	disk hostclient.Disk
	over bool
}

// diskWatch remembers which hosts' disks are over the warning threshold,
// so that each crossing is reported once.
type diskWatch struct {
	// warn is the threshold in percent; a disk at or above it is over.
	// A disk that is over is back under below warn-DiskHysteresisPercent.
	warn int
	over map[diskKey]bool
}

func newDiskWatch(warnPercent int) *diskWatch {
	return &diskWatch{warn: warnPercent, over: map[diskKey]bool{}}
}

// observe takes one round of readings: the disks of each host that
// answered, by host ID, and the IDs of every host that holds a host
// record. It returns the disks that crossed the threshold either way since
// the last round, sorted by host and path. A registered host that did not
// answer keeps its state; a host without a record, or a disk its agent no
// longer reports, is forgotten, so it warns again when it comes back over.
func (w *diskWatch) observe(readings map[string][]hostclient.Disk, registered map[string]bool) []diskChange {
	var changes []diskChange
	seen := map[diskKey]bool{}
	for host, disks := range readings {
		for _, d := range disks {
			if d.Total == 0 {
				continue
			}
			k := diskKey{host, d.Path}
			seen[k] = true
			percent := float64(d.Used) * 100 / float64(d.Total)
			switch was := w.over[k]; {
			case !was && percent >= float64(w.warn):
				w.over[k] = true
				changes = append(changes, diskChange{host: host, disk: d, over: true})
			case was && percent < float64(w.warn-DiskHysteresisPercent):
				delete(w.over, k)
				changes = append(changes, diskChange{host: host, disk: d})
			}
		}
	}
	for k := range w.over {
		_, answered := readings[k.host]
		if !registered[k.host] || (answered && !seen[k]) {
			delete(w.over, k)
		}
	}
	slices.SortFunc(changes, func(a, b diskChange) int {
		return cmp.Or(cmp.Compare(a.host, b.host), cmp.Compare(a.disk.Path, b.disk.Path))
	})
	return changes
}

// message is the line of c for the controller's log: the host, the path,
// used of total and the percentage, and what to do.
func (c diskChange) message(warnPercent int) string {
	d := c.disk
	use := fmt.Sprintf("%s is %d%% used (%s of %s)", d.Path, percentOf(d), gib(d.Used), gib(d.Total))
	if c.over {
		return fmt.Sprintf("disk almost full on host %s: %s, past the %d%% warning: run `gantry gc`, free space or grow the disk",
			c.host, use, warnPercent)
	}
	return fmt.Sprintf("disk back under the %d%% warning on host %s: %s", warnPercent, c.host, use)
}

// percentOf is the part of d in use, in whole percent rounded down.
func percentOf(d hostclient.Disk) int {
	if d.Total == 0 {
		return 0
	}
	return int(d.Used * 100 / d.Total)
}

// gib prints n bytes in GiB with one decimal.
func gib(n uint64) string {
	return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
}
