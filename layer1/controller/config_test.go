package controller

import (
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

const testDB = "postgres://postgres@/gantry?host=/tmp/pg"

func TestConfigValidate(t *testing.T) {
	// Validate only checks that Etcd is set; this client is never used.
	ok := Config{DatabaseURL: testDB, Addr: "127.0.0.1:7070", Cluster: "c-test", Etcd: &clientv3.Client{}, HostToken: "secret"}
	tests := []struct {
		name   string
		change func(*Config)
		want   string // "" for valid
	}{
		{"minimal", func(*Config) {}, ""},
		{"full", func(c *Config) {
			c.GitURL, c.RouterHTTP, c.RouterHTTPS = "ssh://git@127.0.0.1:2222", "http://localhost:8080", "https://localhost:8443/"
			c.InternalURL, c.BuilderImage, c.StackImage = "http://127.0.0.1:7070", "gantry/builder:1", "gantry/stack:1"
			c.BuildEnv = map[string]string{"GOPROXY": "https://proxy.example.test", "GOFLAGS": "-mod=mod"}
			c.BuildTimeout, c.BuildMemory, c.SlugsKept = time.Hour, 1<<30, 3
			c.DiskWarningPercent = 90
		}, ""},
		{"no database", func(c *Config) { c.DatabaseURL = "" }, "DatabaseURL is required"},
		{"bad database", func(c *Config) { c.DatabaseURL = "postgres://%zz" }, "DatabaseURL"},
		{"no addr", func(c *Config) { c.Addr = "" }, "Addr is required"},
		{"bad addr", func(c *Config) { c.Addr = "7070" }, "Addr"},
		{"no cluster", func(c *Config) { c.Cluster = "" }, "Cluster: invalid cluster id"},
		{"bad cluster", func(c *Config) { c.Cluster = "C/1" }, "Cluster: invalid cluster id"},
		{"no etcd", func(c *Config) { c.Etcd = nil }, "Etcd is required"},
		{"no host token", func(c *Config) { c.HostToken = "" }, "HostToken is required"},
		{"negative cap", func(c *Config) { c.MaxProcessCount = -1 }, "MaxProcessCount -1 is negative"},
		{"negative resync", func(c *Config) { c.ResyncInterval = -time.Second }, "ResyncInterval -1s is negative"},
		{"negative deploy timeout", func(c *Config) { c.DeployTimeout = -time.Second }, "DeployTimeout -1s is negative"},
		{"domain with port", func(c *Config) { c.Domain = "localhost:80" }, "bare domain"},
		{"wildcard domain", func(c *Config) { c.Domain = "*.example.test" }, "lower-case domain name"},
		{"git url without scheme", func(c *Config) { c.GitURL = "git@host" }, "GitURL"},
		{"router http with https", func(c *Config) { c.RouterHTTP = "https://x" }, "RouterHTTP"},
		{"router https with path", func(c *Config) { c.RouterHTTPS = "https://x/app" }, "RouterHTTPS"},
		{"internal url with path", func(c *Config) { c.InternalURL = "http://127.0.0.1:7070/api" }, "InternalURL"},
		{"internal url without scheme", func(c *Config) { c.InternalURL = "127.0.0.1:7070" }, "InternalURL"},
		{"bad builder image", func(c *Config) { c.BuilderImage = "Gantry/Builder" }, "BuilderImage"},
		{"bad stack image", func(c *Config) { c.StackImage = "a b" }, "StackImage"},
		{"bad build env", func(c *Config) { c.BuildEnv = map[string]string{"GO PROXY": "x"} }, "BuildEnv"},
		{"negative build timeout", func(c *Config) { c.BuildTimeout = -time.Second }, "BuildTimeout -1s is negative"},
		{"negative build memory", func(c *Config) { c.BuildMemory = -1 }, "BuildMemory -1 is negative"},
		{"negative slugs kept", func(c *Config) { c.SlugsKept = -1 }, "SlugsKept -1 is negative"},
		{"acme", func(c *Config) {
			c.SecretsKey = make([]byte, 32)
			c.ACME = &ACMEConfig{Email: "ops@example.test", Directory: "https://127.0.0.1:14000/dir", RenewBefore: time.Hour, CheckInterval: time.Second}
		}, ""},
		{"short secrets key", func(c *Config) { c.SecretsKey = make([]byte, 16) }, "SecretsKey is 16 bytes, want 32"},
		{"acme without email", func(c *Config) { c.SecretsKey = make([]byte, 32); c.ACME = &ACMEConfig{} }, "ACME.Email is required"},
		{"acme without secrets key", func(c *Config) { c.ACME = &ACMEConfig{Email: "ops@example.test"} }, "ACME needs SecretsKey"},
		{"acme bad directory", func(c *Config) {
			c.SecretsKey = make([]byte, 32)
			c.ACME = &ACMEConfig{Email: "ops@example.test", Directory: "acme.example.test/dir"}
		}, "ACME.Directory"},
		{"acme negative renew before", func(c *Config) {
			c.SecretsKey = make([]byte, 32)
			c.ACME = &ACMEConfig{Email: "ops@example.test", RenewBefore: -time.Hour}
		}, "ACME.RenewBefore -1h0m0s is negative"},
		{"negative gc interval", func(c *Config) { c.GCInterval = -time.Second }, "GCInterval -1s is negative"},
		{"disk warning of 1%", func(c *Config) { c.DiskWarningPercent = 1 }, ""},
		{"disk warning of 100%", func(c *Config) { c.DiskWarningPercent = 100 }, ""},
		{"negative disk warning", func(c *Config) { c.DiskWarningPercent = -1 }, "DiskWarningPercent -1 is not from 1 to 100"},
		{"disk warning past 100%", func(c *Config) { c.DiskWarningPercent = 101 }, "DiskWarningPercent 101 is not from 1 to 100"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.change(&c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestAppURLs(t *testing.T) {
	tests := []struct {
		name     string
		cfg      Config
		git, web string
		urls     []string
	}{
		{"gantryd up defaults", Config{GitURL: "ssh://git@127.0.0.1:2222", RouterHTTP: "http://localhost:8080", RouterHTTPS: "https://localhost:8443"},
			"ssh://git@127.0.0.1:2222/demo.git", "http://demo.localhost:8080", []string{"http://demo.localhost:8080", "https://demo.localhost:8443"}},
		{"default ports dropped", Config{Domain: "apps.example.org", RouterHTTP: "http://0.0.0.0:80"}, "", "http://demo.apps.example.org",
			[]string{"http://demo.apps.example.org"}},
		{"https only", Config{RouterHTTPS: "https://localhost:8443"}, "", "https://demo.localhost:8443", []string{"https://demo.localhost:8443"}},
		{"https default port", Config{RouterHTTPS: "https://localhost:443"}, "", "https://demo.localhost", []string{"https://demo.localhost"}},
		{"http preferred", Config{RouterHTTP: "http://h", RouterHTTPS: "https://h:8443"}, "", "http://demo.localhost",
			[]string{"http://demo.localhost", "https://demo.localhost:8443"}},
		{"no router", Config{GitURL: "ssh://git@h:22/"}, "ssh://git@h:22/demo.git", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.cfg.gitURL("demo"); got != tt.git {
				t.Errorf("gitURL = %q, want %q", got, tt.git)
			}
			if got := tt.cfg.webURL("demo"); got != tt.web {
				t.Errorf("webURL = %q, want %q", got, tt.web)
			}
			if got := tt.cfg.appURLs("demo"); !slices.Equal(got, tt.urls) {
				t.Errorf("appURLs = %q, want %q", got, tt.urls)
			}
		})
	}
}

// TestCertifiable holds the rule that decides whether the apps' default
// domains get certificates: not for names that stay on the machine or
// that no CA issues for.
func TestCertifiable(t *testing.T) {
	tests := []struct {
		domain string
		want   bool
	}{
		{"apps.example.com", true},
		{"example.test", true},
		{"apps.corp.internal", true},
		{"localhost", false},
		{"apps.localhost", false},
		{"127.0.0.1", false},
		{"10.0.0.7", false},
		{"::1", false},
		{"a.123", false},
		{"gantry", false},
	}
	for _, tt := range tests {
		t.Run(tt.domain, func(t *testing.T) {
			if got := certifiable(tt.domain); got != tt.want {
				t.Errorf("certifiable(%q) = %v, want %v", tt.domain, got, tt.want)
			}
		})
	}
}
