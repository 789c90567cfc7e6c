package host

import (
	"errors"
	"net"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/go-connections/nat"

	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer0/readiness"
)

func TestValidateSpec(t *testing.T) {
	ok := keyspace.JobSpec{App: "a", Type: "web", Image: "img", Port: 8080, Service: "a-web", Env: map[string]string{"A_1": "x"}}
	tests := []struct {
		name   string
		change func(s *keyspace.JobSpec)
		valid  bool
	}{
		{"valid", func(*keyspace.JobSpec) {}, true},
		{"no port", func(s *keyspace.JobSpec) { s.Port = 0 }, true},
		{"no image", func(s *keyspace.JobSpec) { s.Image = "" }, false},
		{"port too large", func(s *keyspace.JobSpec) { s.Port = 70000 }, false},
		{"bad env name", func(s *keyspace.JobSpec) { s.Env = map[string]string{"A=B": "x"} }, false},
		{"env value with NUL", func(s *keyspace.JobSpec) { s.Env = map[string]string{"A": "x\x00"} }, false},
		{"negative memory", func(s *keyspace.JobSpec) { s.Resources.Memory = -1 }, false},
		{"tiny memory", func(s *keyspace.JobSpec) { s.Resources.Memory = 1 << 20 }, false},
		{"negative stop timeout", func(s *keyspace.JobSpec) { s.StopTimeout = -time.Second }, false},
		{"relative health path", func(s *keyspace.JobSpec) { s.Health.Path = "healthz" }, false},
		{"service with a slash", func(s *keyspace.JobSpec) { s.Service = "a/b" }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := ok
			tc.change(&s)
			err := validateSpec(s)
			if tc.valid && err != nil {
				t.Errorf("validateSpec: %v, want nil", err)
			}
			if !tc.valid && !errors.Is(err, ErrInvalidSpec) {
				t.Errorf("validateSpec: %v, want ErrInvalidSpec", err)
			}
		})
	}
}

var dockerNameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

func TestContainerName(t *testing.T) {
	tests := []struct {
		name, app, typ, system, job string
		want                        string // prefix
	}{
		{"short job ID kept", "shop", "web", "", "j1", "gantry-c1-shop-web-j1"},
		{"long job ID shortened", "shop", "web", "", "0123456789abcdef0123", "gantry-c1-shop-web-01234567-"},
		{"odd characters replaced", "shop", "we b/x", "", "j 1", "gantry-c1-shop-we-b-x-j-1-"},
		{"no app or type", "", "", "", "j1", "gantry-c1-j1"},
		{"system job with the host ID", "gantry-router", "router", "router", "j1", "gantry-c1-host-1-gantry-router-router-j1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := containerName("c1", "host-1", keyspace.JobSpec{App: tc.app, Type: tc.typ, System: tc.system}, tc.job)
			if !strings.HasPrefix(got, tc.want) || !dockerNameRE.MatchString(got) {
				t.Errorf("containerName = %q, want prefix %q and a valid Docker name", got, tc.want)
			}
		})
	}
	if a, b := containerName("c", "h", keyspace.JobSpec{}, "0123456789abcdefXX"), containerName("c", "h", keyspace.JobSpec{}, "0123456789abcdefYY"); a == b {
		t.Errorf("two long job IDs with one prefix share the name %q", a)
	}
}

func TestContainerConfig(t *testing.T) {
	as := keyspace.Assignment{JobID: "j1", Spec: keyspace.JobSpec{
		App: "shop", Release: "r1", Type: "web", Image: "img", Port: 5000, Service: "shop-web",
		Env:         map[string]string{"B": "2", "A": "1", "PORT": "9999"},
		StopTimeout: 1500 * time.Millisecond,
	}}
	cfg, hc := containerConfig("c1", "h1", "10.0.0.5", as, nil, nil, "")
	if want := []string{"A=1", "B=2", "PORT=5000"}; !slices.Equal(cfg.Env, want) {
		t.Errorf("env = %q, want %q (sorted, PORT from the spec's port)", cfg.Env, want)
	}
	if cfg.StopTimeout == nil || *cfg.StopTimeout != 2 {
		t.Errorf("stop timeout = %v, want 2 s (rounded up)", cfg.StopTimeout)
	}
	if cfg.Labels[LabelHost] != "h1" || cfg.Labels[keyspace.LabelCluster] != "c1" || cfg.Labels[keyspace.LabelJob] != "j1" || cfg.Labels[LabelService] != "shop-web" {
		t.Errorf("labels = %v", cfg.Labels)
	}
	if hc.Memory != DefaultMemory || hc.MemorySwap != DefaultMemory || hc.PidsLimit == nil || *hc.PidsLimit != DefaultPIDs {
		t.Errorf("default limits: memory %d swap %d pids %v", hc.Memory, hc.MemorySwap, hc.PidsLimit)
	}
	if hc.Privileged || len(hc.CapAdd) > 0 || len(hc.Binds) > 0 || len(hc.Mounts) > 0 || !slices.Contains(hc.SecurityOpt, "no-new-privileges") {
		t.Errorf("host config grants too much: %+v", hc)
	}
	if got := hc.PortBindings[nat.Port("5000/tcp")]; len(got) != 1 || got[0].HostIP != "10.0.0.5" || got[0].HostPort != "" {
		t.Errorf("port bindings = %v", hc.PortBindings)
	}

	as.Spec.Port = 0
	cfg, hc = containerConfig("c1", "h1", "10.0.0.5", as, nil, nil, "")
	if slices.Contains(cfg.Env, "PORT=0") || !slices.Contains(cfg.Env, "PORT=9999") || len(hc.PortBindings) != 0 {
		t.Errorf("job without a port: env %q, bindings %v", cfg.Env, hc.PortBindings)
	}
	if cfg.User != "" {
		t.Errorf("user = %q, want the image's", cfg.User)
	}

	// A one-off build: its user, and its files mounted read-only.
	as.Spec.User, as.Spec.OneOff = "1000:1000", true
	files := []fileMount{{"/var/lib/gantry/gantryd", GantrydMountPath}, {"/state/artifacts/sha256-ab", "/tmp/src.tgz"}}
	cfg, hc = containerConfig("c1", "h1", "10.0.0.5", as, files, nil, "")
	if cfg.User != "1000:1000" {
		t.Errorf("user = %q", cfg.User)
	}
	if len(hc.Mounts) != len(files) || len(hc.Binds) > 0 {
		t.Fatalf("mounts = %+v, binds %v; want one per file", hc.Mounts, hc.Binds)
	}
	for i, m := range hc.Mounts {
		if m.Type != mount.TypeBind || !m.ReadOnly || m.Source != files[i].source || m.Target != files[i].target {
			t.Errorf("mount %d = %+v, want a read-only bind of %+v", i, m, files[i])
		}
	}
	if hc.Privileged || len(hc.CapAdd) > 0 || hc.Memory != DefaultMemory || !slices.Contains(hc.SecurityOpt, "no-new-privileges") {
		t.Errorf("a one-off job gets other limits or privileges: %+v", hc)
	}

	// A job checked on its readiness socket: its directory mounted
	// read-write, the socket's path in its environment.
	as = keyspace.Assignment{JobID: "j2", Spec: keyspace.JobSpec{App: "gantry-router", Type: "router", Image: "img", Port: 8080,
		HostNetwork: true, Health: keyspace.HealthCheck{Socket: true}}}
	cfg, hc = containerConfig("c1", "h1", "10.0.0.5", as, nil, nil, "/state/ready/ab12")
	if !slices.Contains(cfg.Env, readiness.EnvSocket+"="+readiness.MountDir+"/"+readiness.SocketName) {
		t.Errorf("env = %q, want the readiness socket's path", cfg.Env)
	}
	if len(hc.Mounts) != 1 || hc.Mounts[0].Source != "/state/ready/ab12" || hc.Mounts[0].Target != readiness.MountDir || hc.Mounts[0].ReadOnly {
		t.Errorf("mounts = %+v, want the readiness directory, read-write", hc.Mounts)
	}
}

func TestValidateFiles(t *testing.T) {
	digest := "sha256:" + strings.Repeat("ab", 32)
	ok := keyspace.JobSpec{
		App: "a", Type: "build", Image: "img", OneOff: true, MountGantryd: true, User: "gantry",
		Artifacts: []keyspace.Artifact{{URL: "http://127.0.0.1:7070/v1/blobs/src/a.tgz", Digest: digest, Path: "/tmp/src.tgz"}},
		Outputs:   []keyspace.Output{{Path: "/tmp/slug.tgz", URL: "https://ctl:7070/v1/blobs/slugs/a.tgz"}, {Path: "/tmp/cache.tgz", URL: "http://ctl/v1/blobs/c", Optional: true}},
	}
	tests := []struct {
		name   string
		change func(s *keyspace.JobSpec)
		valid  bool
	}{
		{"valid", func(*keyspace.JobSpec) {}, true},
		{"uid and gid", func(s *keyspace.JobSpec) { s.User = "1000:1000" }, true},
		{"user with a space", func(s *keyspace.JobSpec) { s.User = "a b" }, false},
		{"user with two colons", func(s *keyspace.JobSpec) { s.User = "a:b:c" }, false},
		{"outputs of a long-running job", func(s *keyspace.JobSpec) { s.OneOff = false }, false},
		{"artifact without a digest", func(s *keyspace.JobSpec) { s.Artifacts[0].Digest = "" }, false},
		{"artifact digest in upper case", func(s *keyspace.JobSpec) { s.Artifacts[0].Digest = strings.ToUpper(digest) }, false},
		{"artifact digest too short", func(s *keyspace.JobSpec) { s.Artifacts[0].Digest = "sha256:abc" }, false},
		{"artifact over ftp", func(s *keyspace.JobSpec) { s.Artifacts[0].URL = "ftp://h/x" }, false},
		{"artifact URL without a host", func(s *keyspace.JobSpec) { s.Artifacts[0].URL = "http:///x" }, false},
		{"artifact URL with credentials", func(s *keyspace.JobSpec) { s.Artifacts[0].URL = "http://u:p@h/x" }, false},
		{"relative artifact path", func(s *keyspace.JobSpec) { s.Artifacts[0].Path = "tmp/src.tgz" }, false},
		{"artifact path with dot-dot", func(s *keyspace.JobSpec) { s.Artifacts[0].Path = "/tmp/../etc/passwd" }, false},
		{"artifact at the root", func(s *keyspace.JobSpec) { s.Artifacts[0].Path = "/" }, false},
		{"artifact over gantryd", func(s *keyspace.JobSpec) { s.Artifacts[0].Path = GantrydMountPath }, false},
		{"artifact path twice", func(s *keyspace.JobSpec) { s.Artifacts = append(s.Artifacts, s.Artifacts[0]) }, false},
		{"output path with a trailing slash", func(s *keyspace.JobSpec) { s.Outputs[0].Path = "/tmp/" }, false},
		{"output URL not a URL", func(s *keyspace.JobSpec) { s.Outputs[0].URL = "::" }, false},
		{"a volume", func(s *keyspace.JobSpec) {
			s.App, s.Volumes = "demo", []keyspace.Volume{{Name: "build-cache", Path: "/var/cache/b"}}
		}, true},
		{"a volume of an app with a bad name", func(s *keyspace.JobSpec) {
			s.Volumes = []keyspace.Volume{{Name: "build-cache", Path: "/var/cache/b"}}
		}, false},
		{"a volume name with an underscore", func(s *keyspace.JobSpec) {
			s.App, s.Volumes = "demo", []keyspace.Volume{{Name: "build_cache", Path: "/var/cache/b"}}
		}, false},
		{"a volume at a relative path", func(s *keyspace.JobSpec) {
			s.App, s.Volumes = "demo", []keyspace.Volume{{Name: "c", Path: "var/cache"}}
		}, false},
		{"a volume over an artifact", func(s *keyspace.JobSpec) {
			s.App, s.Volumes = "demo", []keyspace.Volume{{Name: "c", Path: "/tmp/src.tgz"}}
		}, false},
		{"a volume twice", func(s *keyspace.JobSpec) {
			s.App, s.Volumes = "demo", []keyspace.Volume{{Name: "c", Path: "/a"}, {Name: "c", Path: "/b"}}
		}, false},
		{"too many outputs", func(s *keyspace.JobSpec) {
			for range maxFiles {
				s.Outputs = append(s.Outputs, s.Outputs[0])
			}
		}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := ok
			s.Artifacts = slices.Clone(ok.Artifacts)
			s.Outputs = slices.Clone(ok.Outputs)
			tc.change(&s)
			err := validateSpec(s)
			if tc.valid && err != nil {
				t.Errorf("validateSpec: %v, want nil", err)
			}
			if !tc.valid && !errors.Is(err, ErrInvalidSpec) {
				t.Errorf("validateSpec: %v, want ErrInvalidSpec", err)
			}
		})
	}
}

func TestPublishedAddr(t *testing.T) {
	spec := keyspace.JobSpec{Port: 5000}
	info := func(ip, port string) container.InspectResponse {
		ns := &container.NetworkSettings{}
		ns.Ports = nat.PortMap{"5000/tcp": {{HostIP: ip, HostPort: port}}}
		return container.InspectResponse{NetworkSettings: ns}
	}
	tests := []struct {
		name, ip, port, want string
		ok                   bool
	}{
		{"loopback", "127.0.0.1", "32768", "127.0.0.1:32768", true},
		{"any address uses the advertised one", "0.0.0.0", "32768", "10.0.0.5:32768", true},
		{"IPv6", "::1", "32768", "[::1]:32768", true},
		{"not yet published", "127.0.0.1", "", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := publishedAddr(spec, info(tc.ip, tc.port), "10.0.0.5")
			if got != tc.want || ok != tc.ok {
				t.Errorf("publishedAddr = %q, %v; want %q, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	good := Config{ID: "h1", Cluster: "c1", APIAddr: "127.0.0.1:0", APIToken: "t", StateDir: "/tmp/x"}
	tests := []struct {
		name   string
		change func(c *Config)
		field  string // a word the error must mention; empty means valid
	}{
		{"missing ID", func(c *Config) { c.ID = "" }, "ID"},
		{"ID with a slash", func(c *Config) { c.ID = "a/b" }, "ID"},
		{"bad cluster", func(c *Config) { c.Cluster = "Bad_Cluster" }, "cluster"},
		{"advertise not an IP", func(c *Config) { c.AdvertiseAddr = "localhost" }, "AdvertiseAddr"},
		{"missing API address", func(c *Config) { c.APIAddr = "" }, "APIAddr"},
		{"missing token", func(c *Config) { c.APIToken = "" }, "APIToken"},
		{"missing state dir", func(c *Config) { c.StateDir = "" }, "StateDir"},
		{"lease TTL too short", func(c *Config) { c.LeaseTTL = time.Second }, "LeaseTTL"},
		{"negative drain delay", func(c *Config) { c.DrainDelay = -1 }, "DrainDelay"},
		{"negative artifact cache", func(c *Config) { c.ArtifactCacheSize = -1 }, "ArtifactCacheSize"},
		{"relative gantryd path", func(c *Config) { c.GantrydPath = "bin/gantryd" }, "GantrydPath"},
		{"log URL without a scheme", func(c *Config) { c.LogURL = "127.0.0.1:7072" }, "LogURL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.change(&c)
			err := c.Validate()
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.field) {
				t.Errorf("Validate = %v, want ErrConfig mentioning %s", err, tc.field)
			}
		})
	}
	// Only the clients are missing from good.
	err := good.Validate()
	if err == nil || !strings.Contains(err.Error(), "etcd") || !strings.Contains(err.Error(), "Docker") || strings.Contains(err.Error(), "APIToken") {
		t.Errorf("Validate of a config without clients = %v", err)
	}
}

func TestAPIURL(t *testing.T) {
	bound := &net.TCPAddr{IP: net.IPv4zero, Port: 7071}
	tests := []struct{ listen, want string }{
		{"127.0.0.1:0", "http://127.0.0.1:7071"},
		{":7071", "http://10.0.0.5:7071"},
		{"0.0.0.0:7071", "http://10.0.0.5:7071"},
		{"[::]:7071", "http://10.0.0.5:7071"},
		{"[::1]:7071", "http://[::1]:7071"},
	}
	for _, tc := range tests {
		if got := apiURL(tc.listen, bound, "10.0.0.5"); got != tc.want {
			t.Errorf("apiURL(%q) = %q, want %q", tc.listen, got, tc.want)
		}
	}
}
