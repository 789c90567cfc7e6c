package cli

import (
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestConfigRoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  config
	}{
		{name: "empty", cfg: config{Clusters: []cluster{}}},
		{name: "one default", cfg: config{Default: "local", Clusters: []cluster{
			{Name: "local", URL: "http://127.0.0.1:8081", Token: "t1"},
		}}},
		{name: "several, no default", cfg: config{Clusters: []cluster{
			{Name: "a", URL: "http://127.0.0.1:1", Token: "t1"},
			{Name: "b.prod", URL: "https://gantry.internal", Token: "t=2 with spaces"},
		}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "fresh", "gantry")
			path := filepath.Join(dir, "config.json")
			if err := saveConfig(path, &tt.cfg); err != nil {
				t.Fatal(err)
			}
			got, err := loadConfig(path)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*got, tt.cfg) {
				t.Errorf("round trip: got %+v, want %+v", *got, tt.cfg)
			}
			checkMode(t, path, 0o600)
			checkMode(t, dir, 0o700|fs.ModeDir)
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 1 {
				t.Errorf("directory holds %d entries, want only config.json (no temporary files left)", len(entries))
			}
		})
	}
}

func TestSaveConfigTightensMode(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, []byte(`{"clusters":[]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := &config{Default: "x", Clusters: []cluster{{Name: "x", URL: "http://127.0.0.1:1", Token: "t"}}}
	if err := saveConfig(path, cfg); err != nil {
		t.Fatal(err)
	}
	checkMode(t, path, 0o600)
}

func TestLoadConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		content string // "" means no file
		want    config
		wantErr string
	}{
		{name: "missing file is empty", want: config{}},
		{name: "valid", content: `{"default":"a","clusters":[{"name":"a","url":"http://h:1","token":"t"}]}`,
			want: config{Default: "a", Clusters: []cluster{{Name: "a", URL: "http://h:1", Token: "t"}}}},
		{name: "not JSON", content: `{`, wantErr: "unexpected end of JSON"},
		{name: "default unknown", content: `{"default":"b","clusters":[{"name":"a","url":"http://h:1","token":"t"}]}`, wantErr: "default cluster b is not listed"},
		{name: "bad URL", content: `{"clusters":[{"name":"a","url":"ftp://h","token":"t"}]}`, wantErr: "invalid controller URL"},
		{name: "duplicate", content: `{"clusters":[{"name":"a","url":"http://h:1","token":"t"},{"name":"a","url":"http://h:2","token":"t"}]}`, wantErr: "listed twice"},
		{name: "no token", content: `{"clusters":[{"name":"a","url":"http://h:1","token":""}]}`, wantErr: "has no token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "config.json")
			if tt.content != "" {
				if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			got, err := loadConfig(path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*got, tt.want) {
				t.Errorf("got %+v, want %+v", *got, tt.want)
			}
		})
	}
}

func TestConfigPath(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		env     map[string]string
		want    string
		wantErr bool
	}{
		{name: "GANTRY_CONFIG wins", env: map[string]string{"GANTRY_CONFIG": "/x/c.json", "XDG_CONFIG_HOME": "/xdg", "HOME": "/home/u"}, want: "/x/c.json"},
		{name: "XDG_CONFIG_HOME", env: map[string]string{"XDG_CONFIG_HOME": "/xdg", "HOME": "/home/u"}, want: "/xdg/gantry/config.json"},
		{name: "relative XDG_CONFIG_HOME is ignored", env: map[string]string{"XDG_CONFIG_HOME": "rel", "HOME": "/home/u"}, want: "/home/u/.config/gantry/config.json"},
		{name: "HOME", env: map[string]string{"HOME": "/home/u"}, want: "/home/u/.config/gantry/config.json"},
		{name: "nothing", env: map[string]string{}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := configPath(mapEnv(tt.env))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// TestClusterCommands drives the cluster commands through Run and checks
// the file they leave behind.
func TestClusterCommands(t *testing.T) {
	home := isolate(t, "")
	path := filepath.Join(home, "gantry-config.json")
	steps := []struct {
		args        []string
		wantCode    int
		wantDefault string
		wantNames   []string
	}{
		{args: []string{"cluster", "add", "local", "http://127.0.0.1:8081/", "--token", "t1"}, wantDefault: "local", wantNames: []string{"local"}},
		{args: []string{"cluster", "add", "prod", "https://gantry.internal", "-t", "t2"}, wantDefault: "local", wantNames: []string{"local", "prod"}},
		{args: []string{"cluster", "add", "prod", "https://gantry.internal", "-t", "t3"}, wantCode: 1, wantDefault: "local", wantNames: []string{"local", "prod"}},
		{args: []string{"cluster", "add", "prod", "https://gantry2.internal", "-t", "t3", "--force", "--default"}, wantDefault: "prod", wantNames: []string{"local", "prod"}},
		{args: []string{"cluster", "default", "local"}, wantDefault: "local", wantNames: []string{"local", "prod"}},
		{args: []string{"cluster", "default", "nope"}, wantCode: 1, wantDefault: "local", wantNames: []string{"local", "prod"}},
		{args: []string{"cluster", "add", "bad name", "http://h", "-t", "t"}, wantCode: 1, wantDefault: "local", wantNames: []string{"local", "prod"}},
		{args: []string{"cluster", "add", "x", "not-a-url", "-t", "t"}, wantCode: 1, wantDefault: "local", wantNames: []string{"local", "prod"}},
		{args: []string{"cluster", "remove", "local"}, wantDefault: "", wantNames: []string{"prod"}},
		{args: []string{"cluster", "remove", "local"}, wantCode: 1, wantDefault: "", wantNames: []string{"prod"}},
	}
	for _, s := range steps {
		res := runCLI(t, "", s.args...)
		if res.code != s.wantCode {
			t.Fatalf("gantry %s: exit %d, want %d; stderr: %s", strings.Join(s.args, " "), res.code, s.wantCode, res.stderr)
		}
		cfg, err := loadConfig(path)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, c := range cfg.Clusters {
			names = append(names, c.Name)
		}
		if cfg.Default != s.wantDefault || !reflect.DeepEqual(names, s.wantNames) {
			t.Fatalf("after gantry %s: default %q clusters %v, want %q %v", strings.Join(s.args, " "), cfg.Default, names, s.wantDefault, s.wantNames)
		}
		checkMode(t, path, 0o600)
	}
	cfg, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := cfg.find("prod"); c.URL != "https://gantry2.internal" || c.Token != "t3" {
		t.Errorf("prod = %+v, want the --force replacement", c)
	}
}

// checkMode fails t unless path has exactly mode want.
func checkMode(t *testing.T, path string, want fs.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode(); got != want {
		t.Errorf("%s: mode %v, want %v", path, got, want)
	}
}

// mapEnv returns a getenv reading m.
func mapEnv(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}
