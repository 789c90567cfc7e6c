package up

import (
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/deploy/node"
	"github.com/gantryhq/gantry/layer1/controller/argv"
)

func validConfig() Config {
	return Config{
		DataDir: "/data", APIAddr: "127.0.0.1:7070", HTTPAddr: "127.0.0.1:8080", HTTPSAddr: "127.0.0.1:8443",
		SSHAddr: "127.0.0.1:2222", HostAPIAddr: "127.0.0.1:7071", LogAddr: "127.0.0.1:7072",
		EtcdClientAddr: "127.0.0.1:7379", EtcdPeerAddr: "127.0.0.1:7380", Domain: "localhost", AdvertiseAddr: "127.0.0.1",
		PostgresAddr: "127.0.0.1:7432", Version: "v1", Logger: slog.New(slog.DiscardHandler),
	}
}

// TestValidateContainers checks what the platform as containers refuses.
func TestValidateContainers(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		want   string // "" means valid
	}{
		{"in process", func(*Config) {}, ""},
		{"in process, free log port", func(c *Config) { c.LogAddr = "127.0.0.1:0" }, ""},
		{"detach in process", func(c *Config) { c.Detach = true }, "--detach needs --containers"},
		{"containers", func(c *Config) { c.Containers, c.Detach = true, true }, ""},
		{"containers, free log port", func(c *Config) { c.Containers, c.LogAddr = true, "127.0.0.1:0" }, "needs a port"},
		{"containers, external etcd", func(c *Config) { c.Containers, c.EtcdEndpoints = true, []string{"https://e:2379"} }, "no --etcd"},
		{"containers, external database", func(c *Config) { c.Containers, c.DatabaseURL = true, "postgres://x" }, "no --etcd or --database-url"},
		{"containers, access log", func(c *Config) { c.Containers, c.AccessLog = true, io.Discard }, "access log"},
		{"containers, ACME CA file", func(c *Config) { c.Containers, c.ACMECAFile = true, "/ca.pem" }, "--acme-ca-file"},
		{"containers, no postgres address", func(c *Config) { c.Containers, c.PostgresAddr = true, "" }, "--postgres-addr"},
		{"disk warning past 100%", func(c *Config) { c.DiskWarningPercent = 101 }, "--disk-warning-percent 101"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.change(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Validate() = %v, want an error with %q", err, tt.want)
			}
		})
	}
}

// TestSystemApps checks the system apps' releases: a gantryd command of
// the role, with the data dir, that reads back into the same arguments,
// the role's port, the data dir mounted, one job each.
func TestSystemApps(t *testing.T) {
	cfg := validConfig()
	cfg.DiskWarningPercent = 90
	n := &node.Node{Dir: "/var/lib/my gantry", Cluster: "c-1", HostID: "host-1"}
	apps := systemApps(cfg, n, "gantry/platform:v1-abc", map[string]string{"GOPROXY": "off"})
	want := map[string]struct {
		role string
		port int
	}{
		AppLogAggregator: {"logaggregator", 7072}, AppScheduler: {"scheduler", 0}, AppController: {"controller", 7070},
		AppRouter: {"router", 8080}, AppGitReceiver: {"gitreceiver", 2222},
	}
	if len(apps) != len(want) {
		t.Fatalf("%d system apps, want %d", len(apps), len(want))
	}
	for _, a := range apps {
		w, ok := want[a.Name]
		if !ok {
			t.Errorf("unexpected system app %s", a.Name)
			continue
		}
		if err := a.Validate(); err != nil {
			t.Errorf("%s: %v", a.Name, err)
		}
		p, ok := a.Processes[w.role]
		if !ok || a.Counts[w.role] != 1 || a.Image != "gantry/platform:v1-abc" {
			t.Errorf("%s: processes %+v, counts %v, image %s", a.Name, a.Processes, a.Counts, a.Image)
			continue
		}
		args, err := argv.Split(p.Command)
		if err != nil {
			t.Errorf("%s: command %q: %v", a.Name, p.Command, err)
			continue
		}
		if args[0] != "gantryd" || args[1] != w.role || !slices.Contains(args, n.Dir) {
			t.Errorf("%s: command %q, want gantryd %s with --data %q", a.Name, args, w.role, n.Dir)
		}
		if p.System == nil || p.System.Port != w.port || len(p.System.Binds) != 1 || p.System.Binds[0].Source != n.Dir {
			t.Errorf("%s: system settings %+v", a.Name, p.System)
		}
		if i := slices.Index(args, "--disk-warning-percent"); (a.Name == AppController) != (i > 0 && i+1 < len(args) && args[i+1] == "90") {
			t.Errorf("%s: command %q; only the controller's has --disk-warning-percent 90", a.Name, args)
		}
		if (a.Name == AppController) != (a.Config["GOPROXY"] == "off") {
			t.Errorf("%s: config %v; only the controller has the build settings", a.Name, a.Config)
		}
	}
}
