package slugbuilder

import (
	"errors"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	slugtypes "github.com/gantryhq/gantry/slugbuilder/types"
)

func TestConfigFromEnv(t *testing.T) {
	for _, tc := range []struct {
		name    string
		environ []string
		want    Config
	}{
		{
			name:    "defaults",
			environ: []string{"PATH=/usr/bin", "HOME=/app"},
			want: Config{
				SourcePath: slugtypes.SourcePath, CacheInPath: slugtypes.CacheInPath, SlugPath: slugtypes.SlugPath,
				CacheOutPath: slugtypes.CacheOutPath, ResultPath: slugtypes.ResultPath,
				Env: map[string]string{}, Environ: []string{"PATH=/usr/bin", "HOME=/app"},
				AppDir: slugtypes.AppDir, WorkDir: slugtypes.WorkDir,
			},
		},
		{
			name:    "a kept cache dir",
			environ: []string{"PATH=/usr/bin", "CACHE_DIR=/var/cache/gantry-build"},
			want: Config{
				SourcePath: slugtypes.SourcePath, CacheDir: "/var/cache/gantry-build", SlugPath: slugtypes.SlugPath, ResultPath: slugtypes.ResultPath,
				Env: map[string]string{}, Environ: []string{"PATH=/usr/bin"},
				AppDir: slugtypes.AppDir, WorkDir: slugtypes.WorkDir,
			},
		},
		{
			name: "everything set",
			environ: []string{
				"PATH=/usr/bin",
				"SOURCE=/in/src.tar",
				"CACHE_IN=/in/c.tgz",
				"SLUG_OUT=/out/s.tgz",
				"CACHE_OUT=/out/c.tgz",
				"RESULT_OUT=/out/r.json",
				"BUILDPACK_URL=https://git.example.com/pack.git#v2",
				"SLUG_MAX_SIZE=1048576",
				"COMPILE_TIMEOUT=20m",
				"GOPROXY=https://proxy.example",
				"CONFIG_VAR_DATABASE_URL=postgres://u:p@db/x?a=b",
				"CONFIG_VAR_EMPTY=",
				"CONFIG_VAR_MULTI=line one\nline two",
				"CONFIG_VAR_GOPROXY=https://app.example",
			},
			want: Config{
				SourcePath: "/in/src.tar", CacheInPath: "/in/c.tgz", SlugPath: "/out/s.tgz",
				CacheOutPath: "/out/c.tgz", ResultPath: "/out/r.json",
				BuildpackURL: "https://git.example.com/pack.git#v2",
				MaxSlugSize:  1 << 20, CompileTimeout: 20 * time.Minute,
				Env: map[string]string{
					"DATABASE_URL": "postgres://u:p@db/x?a=b", "EMPTY": "",
					"MULTI": "line one\nline two", "GOPROXY": "https://app.example",
				},
				Environ: []string{"PATH=/usr/bin", "GOPROXY=https://proxy.example"},
				AppDir:  slugtypes.AppDir, WorkDir: slugtypes.WorkDir,
			},
		},
		{
			name:    "cache and result turned off",
			environ: []string{"CACHE_IN=", "CACHE_OUT=", "RESULT_OUT="},
			want: Config{
				SourcePath: slugtypes.SourcePath, SlugPath: slugtypes.SlugPath,
				Env: map[string]string{}, Environ: []string{},
				AppDir: slugtypes.AppDir, WorkDir: slugtypes.WorkDir,
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ConfigFromEnv(tc.environ)
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got.Env, tc.want.Env) {
				t.Errorf("env %v, want %v", got.Env, tc.want.Env)
			}
			if !slices.Equal(got.Environ, tc.want.Environ) || got.Environ == nil {
				t.Errorf("environ %q, want %q", got.Environ, tc.want.Environ)
			}
			got.Env, got.Environ, tc.want.Env, tc.want.Environ = nil, nil, nil, nil
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestConfigFromEnvErrors(t *testing.T) {
	for _, tc := range []struct {
		env  []string
		want string
	}{
		{[]string{"SOURCE="}, "source path is required"},
		{[]string{"SLUG_OUT="}, "slug path is required"},
		{[]string{"SLUG_OUT=/out/x", "RESULT_OUT=/out/./x"}, "slug path and result path are the same file /out/x"},
		{[]string{"SLUG_MAX_SIZE=big"}, "SLUG_MAX_SIZE"},
		{[]string{"SLUG_MAX_SIZE=-1"}, "SLUG_MAX_SIZE"},
		{[]string{"COMPILE_TIMEOUT=soon"}, "COMPILE_TIMEOUT"},
		{[]string{"COMPILE_TIMEOUT=-1m"}, "COMPILE_TIMEOUT"},
		{[]string{"CONFIG_VAR_=x"}, `config var name ""`},
		{[]string{"CONFIG_VAR_../x=1"}, `CONFIG_VAR_../x: config var name "../x"`},
		{[]string{"CONFIG_VAR_1ABC=1"}, `config var name "1ABC"`},
		{[]string{"CONFIG_VAR_A-B=1"}, `config var name "A-B"`},
		{[]string{"BUILDPACK_URL=ssh://git@x/y"}, "refused buildpack URL"},
		{[]string{"CACHE_DIR=/c", "CACHE_IN=/in/c.tgz"}, "a cache dir excludes the cache input and output paths"},
		{[]string{"CACHE_DIR=relative/c"}, `cache dir "relative/c" is not an absolute path`},
	} {
		t.Run(tc.want, func(t *testing.T) {
			_, err := ConfigFromEnv(tc.env)
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want ErrInvalidConfig with %q", err, tc.want)
			}
		})
	}
}

// FuzzConfigFromEnv checks that whatever the environment, a Config that
// ConfigFromEnv accepts holds only config var names that are safe file
// names in ENV_DIR and keeps none of the variables it read in Environ.
func FuzzConfigFromEnv(f *testing.F) {
	f.Add("CONFIG_VAR_A=1\nSOURCE=/x\nPATH=/bin")
	f.Add("CONFIG_VAR_../../etc/passwd=x\nCONFIG_VAR_.=y")
	f.Add("CONFIG_VAR_A/B=1\nSLUG_MAX_SIZE=12")
	f.Fuzz(func(t *testing.T, env string) {
		cfg, err := ConfigFromEnv(strings.Split(env, "\n"))
		if err != nil {
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("err = %v, want ErrInvalidConfig", err)
			}
			return
		}
		for name := range cfg.Env {
			if !configVarName.MatchString(name) || strings.ContainsAny(name, "/.\x00") {
				t.Fatalf("accepted config var name %q", name)
			}
		}
		for _, kv := range cfg.Environ {
			if strings.HasPrefix(kv, slugtypes.EnvConfigVarPrefix) || strings.HasPrefix(kv, slugtypes.EnvSource+"=") || strings.HasPrefix(kv, slugtypes.EnvSlugOut+"=") {
				t.Fatalf("environ keeps %q", kv)
			}
		}
	})
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://user:pw@host/p?X-Sig=abc": "https://host/p?...",
		"http://host/p":                    "http://host/p",
		"https://token@git.example/p#main": "https://git.example/p#main",
		// Shown as written, not re-encoded.
		"https://git.example/my pack#v1":       "https://git.example/my pack#v1",
		"https://git.example/ünï?a=b c#x":      "https://git.example/ünï?...#x",
		"https://u@h@git.example/p":            "https://git.example/p",
		"not a url at all":                     "not a url at all",
		"https://git.example/p%20q?x=1":        "https://git.example/p%20q?...",
		"git@git.example.com:org/pack.git?x=y": "git@git.example.com:org/pack.git?...",
	} {
		if got := redactURL(in); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
}
