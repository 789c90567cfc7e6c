package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/gantryhq/gantry/layer1/controller/client"
	"github.com/gantryhq/gantry/layer1/controller/types"
	urfave "github.com/urfave/cli/v2"
)

func (r *runner) hostsCommand() *urfave.Command {
	return &urfave.Command{
		Name:  "hosts",
		Usage: "list the cluster's hosts with their CPU, memory and disk use",
		Description: "Each host shows whether it can run jobs, its CPU (cores busy of cores) and\n" +
			"memory use, and the use of the file systems of its data and of Docker's\n" +
			"images and volumes, flagged past the controller's warning threshold (85% unless\n" +
			"gantryd runs with --disk-warning-percent). When a disk passes it, the\n" +
			"controller warns once in its log and in gantry log -a gantry-controller, and\n" +
			"again when the disk is back under; the host agent warns in its own log.",
		Flags:  []urfave.Flag{clusterFlag(), jsonFlag()},
		Action: r.hosts,
	}
}

func (r *runner) hosts(c *urfave.Context) error {
	if err := checkArgs(c, 0, 0); err != nil {
		return err
	}
	cl, err := r.client(c)
	if err != nil {
		return err
	}
	hosts, err := cl.ListHosts(c.Context)
	if err != nil {
		return err
	}
	if hosts == nil {
		hosts = []types.Host{}
	}
	if c.Bool("json") {
		return writeJSON(r.stdout, hosts)
	}
	if len(hosts) == 0 {
		fmt.Fprintln(r.stdout, "no host reports to the cluster")
		return nil
	}
	tw := newTable(r.stdout)
	fmt.Fprintln(tw, "HOST\tSTATE\tJOBS\tCPU\tMEMORY\tDISK")
	for _, h := range hosts {
		state := "healthy"
		if !h.Healthy {
			state = "unhealthy"
			if h.Reason != "" {
				state += ": " + oneLine(h.Reason)
			}
		}
		cpu, mem, disks := "-", "-", []string{"-"}
		if u := h.Usage; u != nil {
			cpu = fmt.Sprintf("%.1f of %d cores", u.CPU, u.Cores)
			mem = formatBytes(u.MemoryUsed) + " / " + formatBytes(u.MemoryTotal)
			if len(u.Disks) > 0 {
				disks = disks[:0]
				for _, d := range u.Disks {
					disks = append(disks, formatDisk(d, u.DiskWarningPercent))
				}
			}
		}
		for i, d := range disks {
			if i == 0 {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", h.ID, state, h.Jobs, cpu, mem, d)
			} else {
				fmt.Fprintf(tw, "\t\t\t\t\t%s\n", d)
			}
		}
	}
	return tw.Flush()
}

// formatDisk prints a file system's use: "/var/lib/docker 12.3 GiB / 50 GiB
// (25%)", and a warning at or past warnPercent, the controller's warning
// threshold (0, from a controller that does not report it: 85%).
func formatDisk(d types.Disk, warnPercent int) string {
	s := d.Path + " " + formatBytes(d.Used) + " / " + formatBytes(d.Total)
	if warnPercent == 0 {
		warnPercent = defaultDiskWarningPercent
	}
	if d.Total > 0 {
		percent := float64(d.Used) * 100 / float64(d.Total)
		s += fmt.Sprintf(" (%.0f%%)", percent)
		if percent >= float64(warnPercent) {
			s += fmt.Sprintf(", past %d%%: make room (gantry gc)", warnPercent)
		}
	}
	return s
}

// defaultDiskWarningPercent is the warning threshold of a controller that
// does not report its own.
const defaultDiskWarningPercent = 85

// singleHostDisks returns the disk use of the cluster's host, as lines,
// when the cluster has exactly one host that reported it; nil otherwise
// (gantry hosts lists a cluster's), and nil from a controller that does
// not list hosts.
func singleHostDisks(ctx context.Context, cl *client.Client) ([]string, error) {
	hosts, err := cl.ListHosts(ctx)
	if errors.Is(err, types.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if len(hosts) != 1 || hosts[0].Usage == nil {
		return nil, nil
	}
	var lines []string
	for _, d := range hosts[0].Usage.Disks {
		lines = append(lines, formatDisk(d, hosts[0].Usage.DiskWarningPercent))
	}
	return lines, nil
}

func (r *runner) gcCommand() *urfave.Command {
	return &urfave.Command{
		Name:  "gc",
		Usage: "collect garbage now: old slugs, deleted apps' data, exited containers, etcd history",
		Description: "Runs the garbage collection that the controller also runs every hour, and\n" +
			"prints what it deleted: the slugs of releases beyond the newest 10 of each app\n" +
			"(those releases can no longer be rolled back to; gantry releases marks them),\n" +
			"the slugs, sources and build caches of deleted apps, PostgreSQL large objects\n" +
			"no row references (then pg_largeobject is vacuumed), etcd's history\n" +
			"(compacted and defragmented), and on every host the cluster's exited\n" +
			"containers, the volumes of deleted apps and the stack and builder images that\n" +
			"no release uses. It needs the admin token.",
		Flags:  []urfave.Flag{clusterFlag(), jsonFlag()},
		Action: r.gc,
	}
}

func (r *runner) gc(c *urfave.Context) error {
	if err := checkArgs(c, 0, 0); err != nil {
		return err
	}
	cl, err := r.client(c)
	if err != nil {
		return err
	}
	rep, err := cl.GC(c.Context)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		if err := writeJSON(r.stdout, rep); err != nil {
			return err
		}
	} else {
		writeGCReport(r.stdout, rep)
	}
	if len(rep.Errors) > 0 {
		return fmt.Errorf("the collection failed in part: %s", strings.Join(rep.Errors, "; "))
	}
	return nil
}

// writeGCReport prints what a collection deleted.
func writeGCReport(w io.Writer, rep *types.GCReport) {
	tw := newTable(w)
	fmt.Fprintf(tw, "Old slugs deleted:\t%d\n", rep.Slugs)
	fmt.Fprintf(tw, "Blobs of deleted apps and builds:\t%d\n", rep.Blobs)
	fmt.Fprintf(tw, "Orphaned large objects:\t%d\n", rep.LargeObjects)
	etcd := "-"
	if rep.EtcdRevision > 0 {
		etcd = fmt.Sprintf("compacted to revision %d, defragmented", rep.EtcdRevision)
	}
	fmt.Fprintf(tw, "etcd history:\t%s\n", etcd)
	for _, h := range rep.Hosts {
		line := fmt.Sprintf("%d exited containers, %d volumes, %d images, %d cached artifacts removed", h.Containers, h.Volumes, h.Images, h.Artifacts)
		if h.Error != "" {
			line = "failed: " + oneLine(h.Error)
		}
		fmt.Fprintf(tw, "Host %s:\t%s\n", h.Host, line)
	}
	fmt.Fprintf(tw, "Took:\t%.1f s\n", rep.Seconds)
	tw.Flush()
}
