package cli

import (
	"errors"
	"testing"
)

func TestResolveTarget(t *testing.T) {
	t.Parallel()
	cfg := &config{Default: "local", Clusters: []cluster{
		{Name: "local", URL: "http://127.0.0.1:8081", Token: "tok-local"},
		{Name: "prod", URL: "https://gantry.internal", Token: "tok-prod"},
	}}
	noDefault := &config{Clusters: cfg.Clusters}
	broken := errors.New("config file is broken")
	tests := []struct {
		name    string
		flag    string
		env     map[string]string
		cfg     *config
		loadErr error
		want    target
		wantErr error
	}{
		{
			name: "config default",
			cfg:  cfg,
			want: target{URL: "http://127.0.0.1:8081", Token: "tok-local", Source: "cluster local", TokenSource: "cluster local"},
		},
		{
			name: "GANTRY_TOKEN overrides the default's token",
			cfg:  cfg, env: map[string]string{"GANTRY_TOKEN": "tok-env"},
			want: target{URL: "http://127.0.0.1:8081", Token: "tok-env", Source: "cluster local", TokenSource: "GANTRY_TOKEN"},
		},
		{
			name: "GANTRY_URL and GANTRY_TOKEN override the default",
			cfg:  cfg, env: map[string]string{"GANTRY_URL": "http://127.0.0.2:9000/", "GANTRY_TOKEN": "tok-env"},
			want: target{URL: "http://127.0.0.2:9000", Token: "tok-env", Source: "GANTRY_URL", TokenSource: "GANTRY_TOKEN"},
		},
		{
			name: "GANTRY_URL never sends the default's token elsewhere",
			cfg:  cfg, env: map[string]string{"GANTRY_URL": "http://127.0.0.2:9000"},
			want: target{URL: "http://127.0.0.2:9000", Source: "GANTRY_URL", TokenSource: "GANTRY_TOKEN"},
		},
		{
			name:    "GANTRY_URL needs no config file",
			loadErr: broken, env: map[string]string{"GANTRY_URL": "http://127.0.0.2:9000", "GANTRY_TOKEN": "x"},
			want: target{URL: "http://127.0.0.2:9000", Token: "x", Source: "GANTRY_URL", TokenSource: "GANTRY_TOKEN"},
		},
		{
			name: "flag beats environment and default",
			flag: "prod", cfg: cfg, env: map[string]string{"GANTRY_URL": "http://127.0.0.2:9000", "GANTRY_TOKEN": "tok-env"},
			want: target{URL: "https://gantry.internal", Token: "tok-prod", Source: "cluster prod", TokenSource: "cluster prod"},
		},
		{name: "flag names an unknown cluster", flag: "nope", cfg: cfg, wantErr: errAny},
		{name: "flag with a broken config file", flag: "prod", loadErr: broken, wantErr: broken},
		{name: "no default, no environment", cfg: noDefault, wantErr: ErrNoCluster},
		{name: "empty config", cfg: &config{}, wantErr: ErrNoCluster},
		{name: "invalid GANTRY_URL", cfg: cfg, env: map[string]string{"GANTRY_URL": "127.0.0.1:8081"}, wantErr: errAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			load := func() (*config, error) { return tt.cfg, tt.loadErr }
			got, err := resolveTarget(tt.flag, mapEnv(tt.env), load)
			switch {
			case tt.wantErr == errAny && err == nil:
				t.Fatalf("got %+v, want an error", got)
			case tt.wantErr != nil && tt.wantErr != errAny && !errors.Is(err, tt.wantErr):
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			case tt.wantErr == nil && err != nil:
				t.Fatal(err)
			}
			if tt.wantErr == nil && got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// errAny stands for "some error" in test tables.
var errAny = errors.New("any error")
