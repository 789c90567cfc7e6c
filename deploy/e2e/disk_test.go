package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"

	"github.com/gantryhq/gantry/deploy/testenv"
	"github.com/gantryhq/gantry/layer0/keyspace"
)

// Bounded disk: the numbers of TestDiskStaysBounded.
const (
	// diskPushes is how many times the app is pushed; diskMeasuredAt is
	// the push after which the reference sizes are measured.
	diskPushes     = 40
	diskMeasuredAt = 10
	// slugsKept is the controller's default N: the newest releases that
	// keep their slugs.
	slugsKept = 10
	// slugPayload is the size of the incompressible file in the app.
	slugPayload = 2 << 20
	// diskSlack is what may grow besides N slugs between the two
	// measurements, whatever the number of pushes: PostgreSQL's free
	// space map and catalog, etcd's and the logs' files after compaction.
	// The history kept on purpose (git commits, release and deployment
	// rows) grows by a few KiB per push. The 30 slugs beyond N that the
	// collection deletes weigh 60 MiB, more than the bound.
	diskSlack = 8 << 20
	// walBound is what PostgreSQL's WAL may hold (deploy/pgserver sets
	// max_wal_size).
	walBound = 64 << 20
)

// TestDiskStaysBounded pushes the static site 40 times, each push a change
// deployed, runs gantry gc after push 10 and after push 40, and checks
// that the data dir, the PostgreSQL database, and the cluster's Docker
// containers, images and volumes are then within a bound of their size
// after push 10 that depends on N (the slugs kept), not on the pushes.
func TestDiskStaysBounded(t *testing.T) {
	p := newPlatform(t)
	requireStackImages(t)
	docker := testenv.Docker(t)
	id, err := os.ReadFile(filepath.Join(p.data, "cluster-id"))
	if err != nil {
		t.Fatal(err)
	}
	cluster := strings.TrimSpace(string(id))
	keyFile := filepath.Join(p.home, ".ssh", "id_ed25519")
	if err := os.MkdirAll(filepath.Dir(keyFile), 0o700); err != nil {
		t.Fatal(err)
	}
	sshKeygen(t, keyFile)
	p.ok("key", "add")
	repo := t.TempDir()
	copyDir(t, filepath.Join(repoRoot(), "slugbuilder", "testdata", "apps", "static"), repo)
	// An incompressible file makes each slug weigh about slugPayload, so
	// that slugs kept beyond N would break the bound; git stores it once.
	payload := make([]byte, slugPayload)
	rand.NewChaCha8([32]byte{1}).Read(payload)
	if err := os.WriteFile(filepath.Join(repo, "public", "payload.bin"), payload, 0o644); err != nil {
		t.Fatal(err)
	}
	gitRun(t, repo, "init", "-q", "-b", "main")
	gitRun(t, repo, "add", ".")
	gitRun(t, repo, "commit", "-q", "-m", "push 0")
	if r := p.run(repo, nil, "create", "site"); r.code != 0 {
		t.Fatalf("create: %d %s %s", r.code, r.stdout, r.stderr)
	}

	var at10 diskUse
	var slug int64 // the largest slug
	start := time.Now()
	for i := 1; i <= diskPushes; i++ {
		page := fmt.Sprintf("<!DOCTYPE html>\n<title>push %d</title>\n<p>Push number %d</p>\n", i, i)
		if err := os.WriteFile(filepath.Join(repo, "public", "index.html"), []byte(page), 0o644); err != nil {
			t.Fatal(err)
		}
		gitRun(t, repo, "commit", "-q", "-am", fmt.Sprintf("push %d", i))
		out, err := p.push(repo, keyFile)
		if err != nil || !strings.Contains(out, fmt.Sprintf("Deployed v%d", i)) {
			t.Fatalf("push %d: %v\n%s", i, err, out)
		}
		slug = max(slug, slugSize(t, out))
		if i == diskMeasuredAt {
			at10 = p.collectAndMeasure(t, docker, cluster)
			t.Logf("after push %d (%s): %s", i, time.Since(start).Round(time.Second), at10)
		}
	}
	eventually(t, time.Minute, "the router to serve the last push", func() bool {
		code, body, err := p.get("site.localhost", "/")
		return err == nil && code == 200 && strings.Contains(body, fmt.Sprintf("Push number %d", diskPushes))
	})
	at40 := p.collectAndMeasure(t, docker, cluster)
	t.Logf("after push %d (%s): %s", diskPushes, time.Since(start).Round(time.Second), at40)

	// The releases beyond the newest N are marked.
	var rels []struct {
		Version     int  `json:"version"`
		SlugDeleted bool `json:"slug_deleted"`
	}
	if err := json.Unmarshal([]byte(p.ok("releases", "-a", "site", "--json")), &rels); err != nil {
		t.Fatal(err)
	}
	for _, r := range rels {
		if want := r.Version <= diskPushes-slugsKept; r.SlugDeleted != want {
			t.Errorf("v%d: slug_deleted %v, want %v", r.Version, r.SlugDeleted, want)
		}
	}

	bound := slugsKept*slug + diskSlack
	t.Logf("largest slug %s; bound on the growth %s", mib(slug), mib(bound))
	for _, c := range []struct {
		what             string
		before, after, b int64
	}{
		{"data dir", at10.dataDir, at40.dataDir, bound + walBound},
		{"PostgreSQL database", at10.postgres, at40.postgres, bound},
		{"cluster's Docker volumes", at10.volumes, at40.volumes, bound},
		{"cluster's Docker images", at10.images, at40.images, 0},
	} {
		if c.after > c.before+c.b {
			t.Errorf("%s: %d after push %d, %d after push %d: grew by more than %d", c.what, c.before, diskMeasuredAt, c.after, diskPushes, c.b)
		}
	}
	// The containers: a measure may catch the one of the release just
	// replaced, still stopping, or a build's on its way out; what must
	// not be is containers that stay.
	if at40.containers > at10.containers {
		eventually(t, time.Minute, fmt.Sprintf("the cluster's containers back to their %d after push %d (%d after push %d)",
			at10.containers, diskMeasuredAt, at40.containers, diskPushes), func() bool {
			return clusterContainers(t, docker, cluster) <= at10.containers
		})
	}
}

// clusterContainers counts the containers of cluster, running or not.
func clusterContainers(t *testing.T, docker *client.Client, cluster string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cs, err := docker.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", keyspace.LabelCluster+"="+cluster))})
	if err != nil {
		t.Fatal(err)
	}
	return int64(len(cs))
}

// diskUse is what TestDiskStaysBounded measures, in bytes but for
// containers.
type diskUse struct {
	dataDir, postgres, wal int64
	volumes, images        int64
	containers             int64
	// parts are the sizes of the data dir's entries.
	parts map[string]int64
}

func (d diskUse) String() string {
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(d.parts)) {
		if d.parts[name] >= 1<<20 {
			parts = append(parts, name+" "+mib(d.parts[name]))
		}
	}
	return fmt.Sprintf("data dir %s (%s; PostgreSQL without its WAL %s, WAL %s), cluster volumes %s, images %s, %d containers",
		mib(d.dataDir), strings.Join(parts, ", "), mib(d.postgres), mib(d.wal), mib(d.volumes), mib(d.images), d.containers)
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// collectAndMeasure runs gantry gc and measures the disk use.
func (p *platform) collectAndMeasure(t *testing.T, docker *client.Client, cluster string) diskUse {
	t.Helper()
	var rep struct {
		Errors []string `json:"errors"`
	}
	if err := json.Unmarshal([]byte(p.ok("gc", "--json")), &rep); err != nil || len(rep.Errors) > 0 {
		t.Fatalf("gantry gc: %v %v", err, rep.Errors)
	}
	var d diskUse
	d.dataDir = dirSize(t, p.data)
	entries, err := os.ReadDir(p.data)
	if err != nil {
		t.Fatal(err)
	}
	d.parts = map[string]int64{}
	for _, e := range entries {
		d.parts[e.Name()] = dirSize(t, filepath.Join(p.data, e.Name()))
	}
	d.wal = dirSize(t, filepath.Join(p.data, "postgres", "pgdata", "pg_wal"))
	d.postgres = dirSize(t, filepath.Join(p.data, "postgres")) - d.wal

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	label := filters.Arg("label", keyspace.LabelCluster+"="+cluster)
	cs, err := docker.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(label)})
	if err != nil {
		t.Fatal(err)
	}
	d.containers = int64(len(cs))
	seen := map[string]bool{}
	for _, c := range cs {
		if seen[c.ImageID] {
			continue
		}
		seen[c.ImageID] = true
		img, err := docker.ImageInspect(ctx, c.ImageID)
		if err != nil {
			t.Fatal(err)
		}
		d.images += img.Size
	}
	du, err := docker.DiskUsage(ctx, types.DiskUsageOptions{Types: []types.DiskUsageObject{types.VolumeObject}})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range du.Volumes {
		if v.Labels[keyspace.LabelCluster] == cluster && v.UsageData != nil && v.UsageData.Size > 0 {
			d.volumes += v.UsageData.Size
		}
	}
	vols, err := docker.VolumeList(ctx, volume.ListOptions{Filters: filters.NewArgs(label)})
	if err != nil {
		t.Fatal(err)
	}
	if len(vols.Volumes) == 0 {
		t.Errorf("the cluster has no volume: the build cache is expected")
	}
	return d
}

// slugSizeRE matches the slug size in a push's output (slugbuilder's
// humanSize: "12K", "3.4M").
var slugSizeRE = regexp.MustCompile(`Compiled slug size is ([0-9.]+)([KMG])`)

// slugSize returns the slug size that a push's output announces, rounded
// up to a whole unit.
func slugSize(t *testing.T, out string) int64 {
	t.Helper()
	m := slugSizeRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no slug size in the push output:\n%s", out)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	unit := map[string]float64{"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[m[2]]
	return int64(math.Ceil(v)) * int64(unit)
}

// dirSize is the size of the files under dir; files that vanish while it
// walks are skipped.
func dirSize(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	if _, err := os.Stat(dir); err != nil {
		t.Fatal(err)
	}
	err := filepath.WalkDir(dir, func(_ string, e fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if e.Type().IsRegular() {
			if info, err := e.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("size of %s: %v", dir, err)
	}
	return n
}
