package appmetrics

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	hostclient "github.com/gantryhq/gantry/layer0/host/client"
)

// TestDiskWatch feeds rounds of readings to the crossing logic and checks
// the lines each round gives, with the threshold at 85%.
func TestDiskWatch(t *testing.T) {
	// disk is a 100-byte disk at path, used percent full.
	disk := func(path string, used uint64) hostclient.Disk {
		return hostclient.Disk{Path: path, Used: used, Total: 100}
	}
	both := map[string]bool{"h1": true, "h2": true}
	type round struct {
		readings   map[string][]hostclient.Disk
		registered map[string]bool
		want       []string // "host path over" or "host path under"
	}
	for _, tc := range []struct {
		name   string
		rounds []round
	}{
		{"under stays quiet", []round{
			{map[string][]hostclient.Disk{"h1": {disk("/data", 10)}}, both, nil},
			{map[string][]hostclient.Disk{"h1": {disk("/data", 84)}}, both, nil},
		}},
		{"passing warns once", []round{
			{map[string][]hostclient.Disk{"h1": {disk("/data", 80)}}, both, nil},
			{map[string][]hostclient.Disk{"h1": {disk("/data", 85)}}, both, []string{"h1 /data over"}},
			{map[string][]hostclient.Disk{"h1": {disk("/data", 90)}}, both, nil},
			{map[string][]hostclient.Disk{"h1": {disk("/data", 99)}}, both, nil},
		}},
		{"over at the first reading", []round{
			{map[string][]hostclient.Disk{"h1": {disk("/data", 95)}}, both, []string{"h1 /data over"}},
		}},
		{"hysteresis: a dip under the threshold is not a crossing", []round{
			{map[string][]hostclient.Disk{"h1": {disk("/data", 86)}}, both, []string{"h1 /data over"}},
			{map[string][]hostclient.Disk{"h1": {disk("/data", 84)}}, both, nil},
			{map[string][]hostclient.Disk{"h1": {disk("/data", 83)}}, both, nil},
			{map[string][]hostclient.Disk{"h1": {disk("/data", 86)}}, both, nil},
		}},
		{"falling under the margin clears, passing again warns again", []round{
			{map[string][]hostclient.Disk{"h1": {disk("/data", 86)}}, both, []string{"h1 /data over"}},
			{map[string][]hostclient.Disk{"h1": {disk("/data", 82)}}, both, []string{"h1 /data under"}},
			{map[string][]hostclient.Disk{"h1": {disk("/data", 84)}}, both, nil},
			{map[string][]hostclient.Disk{"h1": {disk("/data", 85)}}, both, []string{"h1 /data over"}},
		}},
		{"hosts and disks are apart", []round{
			{map[string][]hostclient.Disk{
				"h1": {disk("/data", 90), disk("/var/lib/docker", 50)},
				"h2": {disk("/data", 90), disk("/var/lib/docker", 88)},
			}, both, []string{"h1 /data over", "h2 /data over", "h2 /var/lib/docker over"}},
			{map[string][]hostclient.Disk{
				"h1": {disk("/data", 90), disk("/var/lib/docker", 86)},
				"h2": {disk("/data", 10), disk("/var/lib/docker", 88)},
			}, both, []string{"h1 /var/lib/docker over", "h2 /data under"}},
		}},
		{"a host that does not answer keeps its state", []round{
			{map[string][]hostclient.Disk{"h1": {disk("/data", 90)}}, both, []string{"h1 /data over"}},
			{map[string][]hostclient.Disk{}, both, nil},
			{map[string][]hostclient.Disk{"h1": {disk("/data", 90)}}, both, nil},
		}},
		{"a host gone is forgotten", []round{
			{map[string][]hostclient.Disk{"h1": {disk("/data", 90)}}, both, []string{"h1 /data over"}},
			{map[string][]hostclient.Disk{}, map[string]bool{"h2": true}, nil},
			{map[string][]hostclient.Disk{"h1": {disk("/data", 90)}}, both, []string{"h1 /data over"}},
		}},
		{"a disk no longer reported is forgotten", []round{
			{map[string][]hostclient.Disk{"h1": {disk("/data", 90), disk("/var/lib/docker", 90)}}, both,
				[]string{"h1 /data over", "h1 /var/lib/docker over"}},
			{map[string][]hostclient.Disk{"h1": {disk("/data", 90)}}, both, nil},
			{map[string][]hostclient.Disk{"h1": {disk("/data", 90), disk("/var/lib/docker", 90)}}, both,
				[]string{"h1 /var/lib/docker over"}},
		}},
		{"a disk of no size is left out", []round{
			{map[string][]hostclient.Disk{"h1": {{Path: "/data"}}}, both, nil},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newDiskWatch(85)
			for i, r := range tc.rounds {
				var got []string
				for _, ch := range w.observe(r.readings, r.registered) {
					dir := "under"
					if ch.over {
						dir = "over"
					}
					got = append(got, fmt.Sprintf("%s %s %s", ch.host, ch.disk.Path, dir))
				}
				if !slices.Equal(got, r.want) {
					t.Errorf("round %d: %q, want %q", i+1, got, r.want)
				}
			}
		})
	}
}

func TestDiskChangeMessage(t *testing.T) {
	d := hostclient.Disk{Path: "/var/lib/docker", Used: 45 << 30, Total: 50 << 30}
	for _, tc := range []struct {
		change diskChange
		want   string
	}{
		{diskChange{host: "h1", disk: d, over: true},
			"disk almost full on host h1: /var/lib/docker is 90% used (45.0 GiB of 50.0 GiB), past the 85% warning: run `gantry gc`, free space or grow the disk"},
		{diskChange{host: "h1", disk: d},
			"disk back under the 85% warning on host h1: /var/lib/docker is 90% used (45.0 GiB of 50.0 GiB)"},
	} {
		if got := tc.change.message(85); got != tc.want {
			t.Errorf("message:\n%s\nwant:\n%s", got, tc.want)
		}
	}
}

func TestConfigDiskWarningPercent(t *testing.T) {
	for _, tc := range []struct {
		percent int
		valid   bool
	}{{0, true}, {1, true}, {85, true}, {100, true}, {-1, false}, {101, false}} {
		t.Run(fmt.Sprint(tc.percent), func(t *testing.T) {
			err := Config{DiskWarningPercent: tc.percent}.Validate()
			if got := err == nil || !strings.Contains(err.Error(), "disk warning"); got != tc.valid {
				t.Errorf("Validate() = %v, want valid %v", err, tc.valid)
			}
		})
	}
}
