package node

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"os/exec"
	"time"
)

// goSettings are the go command's settings that builds of Go apps take
// from this machine: where modules and toolchains come from and how they
// are checked.
var goSettings = []string{"GOPROXY", "GOFLAGS", "GOSUMDB", "GOPRIVATE", "GONOPROXY", "GONOSUMDB"}

// passedSettings are the other settings of the environment that builds get
// as they are (the Python buildpack's package index).
var passedSettings = []string{"PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST"}

// goEnvTimeout bounds `go env`.
const goEnvTimeout = 30 * time.Second

// BuildEnv returns the environment that build jobs get from this machine:
// each Go setting from gantryd's environment, else from `go env` when the
// go command is installed, and the other settings from the environment.
// Empty values are left out.
func BuildEnv(ctx context.Context, log *slog.Logger) map[string]string {
	env := map[string]string{}
	for _, name := range append(goSettings, passedSettings...) {
		if v := os.Getenv(name); v != "" {
			env[name] = v
		}
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		log.Info("no go command on this machine; builds of Go apps use their defaults for the settings not in the environment", "settings", goSettings)
		return env
	}
	ctx, cancel := context.WithTimeout(ctx, goEnvTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, goCmd, append([]string{"env", "-json"}, goSettings...)...).Output()
	if err != nil {
		log.Warn("go env failed; builds of Go apps use the defaults", "err", err)
		return env
	}
	var values map[string]string
	if err := json.Unmarshal(out, &values); err != nil {
		log.Warn("go env printed something unexpected; builds of Go apps use the defaults", "err", err)
		return env
	}
	for _, name := range goSettings {
		if _, set := env[name]; !set && values[name] != "" {
			env[name] = values[name]
		}
	}
	return env
}
