package up

import (
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"

	"github.com/gantryhq/gantry/deploy/node"
	"github.com/gantryhq/gantry/layer0/keyspace"
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
		{"detach in process", func(c *Config) { c.Detach = true }, "--detach and --in-process"},
		{"containers", func(c *Config) { c.Containers, c.Detach = true, true }, ""},
		{"containers, free log port", func(c *Config) { c.Containers, c.LogAddr = true, "127.0.0.1:0" }, "needs a port"},
		{"containers, external etcd", func(c *Config) { c.Containers, c.EtcdEndpoints = true, []string{"https://e:2379"} }, "need --in-process"},
		{"containers, external database", func(c *Config) { c.Containers, c.DatabaseURL = true, "postgres://x" }, "need --in-process"},
		{"containers, access log writer", func(c *Config) { c.Containers, c.AccessLog = true, io.Discard }, "give its path"},
		{"containers, access log path", func(c *Config) { c.Containers, c.AccessLogPath = true, "-" }, ""},
		{"in process, access log path", func(c *Config) { c.AccessLogPath = "-" }, "not a path"},
		{"containers, ACME CA file", func(c *Config) { c.Containers, c.ACMECAFile = true, "/ca.pem" }, ""},
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
// the role, with the placeholders of each host's data dir and address
// (one template for every host of a cluster), that reads back into the same arguments,
// the role's port, the data dir mounted, one job each, in the order of an
// upgrade; a role with a port shares it with its next job (--reuse-port,
// or the router's handover and --stay-after-handover) and is checked on
// its readiness socket.
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
	var order []string
	for _, a := range apps {
		order = append(order, a.Name)
	}
	if wantOrder := []string{AppLogAggregator, AppGitReceiver, AppScheduler, AppController, AppRouter}; !slices.Equal(order, wantOrder) {
		t.Errorf("system apps in the order %v, want %v", order, wantOrder)
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
		if args[0] != "gantryd" || args[1] != w.role || !hasArgs(args, "--data", "{{data}}") {
			t.Errorf("%s: command %q, want gantryd %s with --data {{data}}", a.Name, args, w.role)
		}
		for _, arg := range args {
			if strings.Contains(arg, n.Dir) || strings.Contains(arg, cfg.AdvertiseAddr) {
				t.Errorf("%s: command %q names this host's data dir or address, not the template's placeholders", a.Name, args)
			}
		}
		if p.System == nil || p.System.Port != w.port || len(p.System.Binds) != 1 || p.System.Binds[0].Source != "{{data}}" ||
			p.System.Ready != (w.port > 0) {
			t.Errorf("%s: system settings %+v", a.Name, p.System)
		}
		shares := "--reuse-port"
		if a.Name == AppRouter {
			shares = "--stay-after-handover"
		}
		if slices.Contains(args, shares) != (w.port > 0) {
			t.Errorf("%s: command %q; want %s with a port only", a.Name, args, shares)
		}
		if i := slices.Index(args, "--disk-warning-percent"); (a.Name == AppController) != (i > 0 && i+1 < len(args) && args[i+1] == "90") {
			t.Errorf("%s: command %q; only the controller's has --disk-warning-percent 90", a.Name, args)
		}
		if (a.Name == AppController) != (a.Config["GOPROXY"] == "off") {
			t.Errorf("%s: config %v; only the controller has the build settings", a.Name, a.Config)
		}
	}
}

// TestSystemAppsOptions checks the options that reach one system app
// only: the ACME CA file, mounted read-only into the controller's
// container, and the router's access log.
func TestSystemAppsOptions(t *testing.T) {
	cfg := validConfig()
	cfg.ACMEEmail, cfg.ACMECAFile, cfg.AccessLogPath = "ops@example.com", "/etc/ca/acme.pem", "/data/access.log"
	n := &node.Node{Dir: "/data", Cluster: "c-1", HostID: "host-1"}
	for _, a := range systemApps(cfg, n, "gantry/platform:v1-abc", nil) {
		for _, p := range a.Processes {
			args, err := argv.Split(p.Command)
			if err != nil {
				t.Fatal(err)
			}
			ca := keyspace.Bind{Source: "/etc/ca/acme.pem", Target: "/etc/ca/acme.pem", ReadOnly: true}
			hasCA := slices.Contains(p.System.Binds, ca)
			if (a.Name == AppController) != hasCA || (a.Name == AppController) != hasArgs(args, "--acme-ca-file", "/etc/ca/acme.pem") {
				t.Errorf("%s: binds %+v, command %q; only the controller has the CA file, read-only", a.Name, p.System.Binds, args)
			}
			if (a.Name == AppRouter) != hasArgs(args, "--access-log", "{{data}}/access.log") {
				t.Errorf("%s: command %q; only the router has the access log", a.Name, args)
			}
		}
	}
}

// hasArgs reports whether args holds flag followed by value.
func hasArgs(args []string, flag, value string) bool {
	i := slices.Index(args, flag)
	return i >= 0 && i+1 < len(args) && args[i+1] == value
}

// TestContainerPaths checks the paths the platform's containers are
// given: an absolute, readable CA file; an access log in the data dir.
func TestContainerPaths(t *testing.T) {
	data := t.TempDir()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, []byte("pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(data)
	tests := []struct {
		name            string
		caFile, log     string
		wantCA, wantLog string
		err             string
	}{
		{"none", "", "", "", "", ""},
		{"CA file", ca, "", ca, "", ""},
		{"missing CA file", filepath.Join(data, "nope.pem"), "", "", "", "no such file"},
		{"CA file a directory", data, "", "", "", "not a regular file"},
		{"access log to the job's output", "", "-", "", "-", ""},
		{"access log in the data dir", "", filepath.Join(data, "logs", "access.log"), "", filepath.Join(data, "logs", "access.log"), ""},
		{"relative access log", "", "access.log", "", filepath.Join(data, "access.log"), ""},
		{"access log outside", "", filepath.Join(filepath.Dir(data), "access.log"), "", "", "in the data dir"},
		{"access log the data dir", "", data, "", "", "in the data dir"},
		{"access log in a sibling", "", data + "-x/access.log", "", "", "in the data dir"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := validConfig()
			cfg.Containers, cfg.ACMECAFile, cfg.AccessLogPath = true, tt.caFile, tt.log
			got, err := containerPaths(cfg, data)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Errorf("containerPaths() = %v, want an error with %q", err, tt.err)
				}
				return
			}
			if err != nil || got.ACMECAFile != tt.wantCA || got.AccessLogPath != tt.wantLog {
				t.Errorf("containerPaths() = %q, %q, %v; want %q, %q", got.ACMECAFile, got.AccessLogPath, err, tt.wantCA, tt.wantLog)
			}
		})
	}
}

// TestStartedBy checks what a failed start stops: the platform containers
// that did not run before it (not those that replaced running ones: a
// failed upgrade), and the system apps' jobs only when the agent that runs
// them did not run before either.
func TestStartedBy(t *testing.T) {
	c := func(id, system string) container.Summary {
		return container.Summary{ID: id, Labels: map[string]string{keyspace.LabelSystem: system}}
	}
	etcd, pg, agent, job := c("e", SystemEtcd), c("p", "postgres"), c("a", SystemAgent), c("j", "gantry-controller")
	tests := []struct {
		name        string
		before, now []container.Summary
		want        []string
	}{
		{"nothing ran", nil, []container.Summary{etcd, pg, agent, job}, []string{"e", "p", "a", "j"}},
		{"all adopted", []container.Summary{etcd, pg, agent, job}, []container.Summary{etcd, pg, agent, job}, nil},
		{"etcd adopted", []container.Summary{etcd}, []container.Summary{etcd, pg}, []string{"p"}},
		{"agent adopted, a new job", []container.Summary{etcd, pg, agent}, []container.Summary{etcd, pg, agent, job}, nil},
		{"agent new, a job", []container.Summary{etcd, pg}, []container.Summary{etcd, pg, agent, job}, []string{"a", "j"}},
		{"one gone meanwhile", []container.Summary{etcd}, []container.Summary{pg}, []string{"p"}},
		{"etcd and agent replaced", []container.Summary{etcd, pg, agent, job},
			[]container.Summary{c("e2", SystemEtcd), pg, c("a2", SystemAgent), c("j2", "gantry-controller")}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, s := range startedBy(tt.before, tt.now) {
				got = append(got, s.ID)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("startedBy() = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestSystemAppsSameOnEveryHost checks that two hosts of a cluster,
// started with the same flags at their own addresses and data dirs, make
// the same system apps: otherwise each host's start would deploy a new
// release of every system app, superseding the other's.
func TestSystemAppsSameOnEveryHost(t *testing.T) {
	hostConfig := func(addr string) Config {
		cfg := validConfig()
		cfg.AdvertiseAddr = addr
		for _, a := range []*string{&cfg.APIAddr, &cfg.HTTPAddr, &cfg.HTTPSAddr, &cfg.SSHAddr, &cfg.HostAPIAddr, &cfg.LogAddr,
			&cfg.EtcdClientAddr, &cfg.EtcdPeerAddr, &cfg.PostgresAddr} {
			_, p, err := net.SplitHostPort(*a)
			if err != nil {
				p = "7432"
			}
			*a = net.JoinHostPort(addr, p)
		}
		return cfg
	}
	a := systemApps(hostConfig("10.0.0.1"), &node.Node{Dir: "/srv/a", Cluster: "c-1", HostID: "host-1"}, "gantry/platform:v1-abc", nil)
	b := systemApps(hostConfig("10.0.0.2"), &node.Node{Dir: "/var/lib/b", Cluster: "c-1", HostID: "host-2"}, "gantry/platform:v1-abc", nil)
	if !reflect.DeepEqual(a, b) {
		for i := range a {
			if !reflect.DeepEqual(a[i], b[i]) {
				t.Errorf("%s differs between hosts:\n%+v\n%+v", a[i].Name, a[i], b[i])
			}
		}
	}
}
