package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/gantryhq/gantry/layer1/controller/client"
	"github.com/gantryhq/gantry/layer1/controller/types"
	urfave "github.com/urfave/cli/v2"
)

func (r *runner) hostsCommand() *urfave.Command {
	return &urfave.Command{
		Name:  "hosts",
		Usage: "list the cluster's hosts: state, address, jobs, CPU, memory, etcd, heartbeat and disk",
		Description: "Each host shows its state (up, unhealthy: why, draining, drained, or down: its\n" +
			"agent stopped heartbeating and it still holds jobs or is drained), its\n" +
			"address, the jobs placed on it, its CPU (cores busy of cores) and memory use,\n" +
			"whether a member of the cluster's etcd runs on it, when its agent last\n" +
			"heartbeat, and the use of the file systems of its data and of Docker's\n" +
			"images and volumes, flagged past the controller's warning threshold (85% unless\n" +
			"gantryd runs with --disk-warning-percent). When a disk passes it, the\n" +
			"controller warns once in its log and in gantry log -a gantry-controller, and\n" +
			"again when the disk is back under; the host agent warns in its own log.\n" +
			"gantry host drain, undrain and remove change a host.",
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
	now := r.now()
	tw := newTable(r.stdout)
	fmt.Fprintln(tw, "HOST\tADDRESS\tSTATE\tJOBS\tCPU\tMEMORY\tETCD\tHEARTBEAT\tDISK")
	for _, h := range hosts {
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
		addr, etcd, heartbeat := cmp.Or(h.Addr, "-"), "-", "-"
		if h.EtcdMember {
			etcd = "member"
		}
		if h.LastHeartbeat != nil {
			heartbeat = formatAge(now.Sub(*h.LastHeartbeat)) + " ago"
		}
		for i, d := range disks {
			if i == 0 {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", h.ID, addr, hostState(h), h.Jobs, cpu, mem, etcd, heartbeat, d)
			} else {
				fmt.Fprintf(tw, "\t\t\t\t\t\t\t\t%s\n", d)
			}
		}
	}
	return tw.Flush()
}

// hostState is the STATE column of a host: its state, with the reason of
// an unhealthy one. A controller that does not report states says only
// whether the host is healthy.
func hostState(h types.Host) string {
	state := h.State
	if state == "" {
		state = types.HostUp
		if !h.Healthy {
			state = types.HostUnhealthy
		}
	}
	if state == types.HostUnhealthy && h.Reason != "" {
		state += ": " + oneLine(h.Reason)
	}
	return state
}

func (r *runner) hostCommand() *urfave.Command {
	return &urfave.Command{
		Name:  "host",
		Usage: "drain, undrain or remove a host of the cluster",
		Subcommands: []*urfave.Command{
			{
				Name:      "drain",
				Usage:     "move a host's jobs to other hosts and place no new job on it (for maintenance)",
				ArgsUsage: "HOST",
				Description: "The host takes no new job, and each of its jobs is replaced on another host:\n" +
					"the new job is up before the old one stops, so the app keeps serving. One-off\n" +
					"jobs (builds, gantry run) run to their end where they are. A job that no\n" +
					"other host can take now (no room, or no host matches its constraints) keeps\n" +
					"running on the host, and drain says which; the drain goes on as soon as a\n" +
					"host can take it. A host whose jobs have nowhere to go at all is left as it\n" +
					"is. With --wait, the command returns once the host holds no job.",
				Flags: []urfave.Flag{clusterFlag(), jsonFlag(),
					&urfave.BoolFlag{Name: "wait", Usage: "wait until the host holds no job"},
					&urfave.DurationFlag{Name: "timeout", Value: 10 * time.Minute, Usage: "give up the --wait after this long"},
				},
				Action: r.hostDrain,
			},
			{
				Name:        "undrain",
				Usage:       "let a drained host take new jobs again",
				ArgsUsage:   "HOST",
				Description: "New jobs may be placed on the host again. Nothing is moved back to it.",
				Flags:       []urfave.Flag{clusterFlag(), jsonFlag()},
				Action:      r.hostUndrain,
			},
			{
				Name:      "remove",
				Usage:     "forget a host that is down; its jobs are placed on other hosts",
				ArgsUsage: "HOST",
				Description: "The host must be down (its agent no longer heartbeats): a host that is up is\n" +
					"refused; drain it and stop its agent first. Its jobs are placed on other\n" +
					"hosts at once, without waiting for the host grace. Should the host come back,\n" +
					"its agent removes the containers of the jobs that moved. When the host ran an\n" +
					"etcd member, that member is removed too (refused for the last one, and for one\n" +
					"that still runs), so the next host to join takes its place.",
				Flags:  []urfave.Flag{clusterFlag(), jsonFlag()},
				Action: r.hostRemove,
			},
		},
	}
}

// drainPoll is how often drain --wait asks for the hosts.
const drainPoll = time.Second

func (r *runner) hostDrain(c *urfave.Context) error {
	if err := checkArgs(c, 1, 1); err != nil {
		return err
	}
	if c.Duration("timeout") <= 0 {
		return usagef(c, "--timeout must be positive")
	}
	id := c.Args().First()
	cl, err := r.client(c)
	if err != nil {
		return err
	}
	d, err := cl.DrainHost(c.Context, id)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		if err := writeJSON(r.stdout, d); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(r.stdout, "Draining %s. Jobs to move to other hosts: %d (each new one up before the old one stops).\n", id, d.Jobs)
		for _, j := range d.Stuck {
			fmt.Fprintf(r.stderr, "%s%s.%d of %s (%s): no other host can take it now; it keeps running on %s\n", errorPrefix, j.Type, j.Index, j.App, j.Job, id)
		}
	}
	if !c.Bool("wait") {
		return nil
	}
	if len(d.Stuck) > 0 {
		return fmt.Errorf("not waiting: jobs that cannot move now: %d; gantry hosts shows %s as draining until they can", len(d.Stuck), id)
	}
	ctx, cancel := context.WithTimeout(c.Context, c.Duration("timeout"))
	defer cancel()
	tick := time.NewTicker(drainPoll)
	defer tick.Stop()
	for {
		hosts, err := cl.ListHosts(ctx)
		if err != nil && ctx.Err() == nil {
			return err
		}
		for _, h := range hosts {
			if h.ID == id && h.Jobs == 0 {
				if !c.Bool("json") {
					fmt.Fprintf(r.stdout, "%s is drained: it holds no job.\n", id)
				}
				return nil
			}
		}
		select {
		case <-ctx.Done():
			if c.Context.Err() != nil {
				return c.Context.Err()
			}
			return fmt.Errorf("%s still holds jobs after %s; gantry hosts shows them", id, c.Duration("timeout"))
		case <-tick.C:
		}
	}
}

func (r *runner) hostUndrain(c *urfave.Context) error {
	if err := checkArgs(c, 1, 1); err != nil {
		return err
	}
	id := c.Args().First()
	cl, err := r.client(c)
	if err != nil {
		return err
	}
	d, err := cl.UndrainHost(c.Context, id)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return writeJSON(r.stdout, d)
	}
	fmt.Fprintf(r.stdout, "%s takes new jobs again; jobs that moved off it stay where they are.\n", id)
	return nil
}

func (r *runner) hostRemove(c *urfave.Context) error {
	if err := checkArgs(c, 1, 1); err != nil {
		return err
	}
	id := c.Args().First()
	cl, err := r.client(c)
	if err != nil {
		return err
	}
	rm, err := cl.RemoveHost(c.Context, id)
	if err != nil {
		return err
	}
	switch {
	case c.Bool("json"):
		return writeJSON(r.stdout, rm)
	case rm.Done:
		fmt.Fprintf(r.stdout, "Removed %s. Jobs it held: %d, placed on other hosts now.\n", id, rm.Jobs)
	default:
		fmt.Fprintf(r.stdout, "Removed %s. Jobs it held: %d; the scheduler has not taken them off it yet and does as soon as it runs (gantry hosts lists %s until then).\n",
			id, rm.Jobs, id)
	}
	if rm.EtcdMemberRemoved {
		fmt.Fprintf(r.stdout, "Removed %s's etcd member: the cluster has %d members now.\n", id, rm.EtcdMembers)
	}
	return nil
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
