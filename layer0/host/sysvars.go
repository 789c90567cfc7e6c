package host

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/gantryhq/gantry/layer0/keyspace"
)

// The per-host values a system job's command and binds may name as
// {{name}} (see Config.SystemVars): one template runs on every host of a
// cluster, each with its own data dir, address and etcd endpoints.
const (
	// SystemVarData is the host's data dir.
	SystemVarData = "data"
	// SystemVarAddr is the host's advertised address.
	SystemVarAddr = "addr"
	// SystemVarEtcd is the host's etcd endpoints, comma-separated.
	SystemVarEtcd = "etcd"
)

// systemVarRE matches a placeholder.
var systemVarRE = regexp.MustCompile(`\{\{([a-z]+)\}\}`)

// expandSystem returns a with the placeholders of a system job's command,
// entrypoint and binds replaced by vars. A placeholder vars has no value
// for is an error: the job could not run as meant on this host. Other
// jobs are returned as they are: an app's command is its own.
func expandSystem(a keyspace.Assignment, vars map[string]string) (keyspace.Assignment, error) {
	s := a.Spec
	if s.System == "" {
		return a, nil
	}
	var missing []string
	expand := func(v string) string {
		return systemVarRE.ReplaceAllStringFunc(v, func(m string) string {
			name := m[2 : len(m)-2]
			if val, ok := vars[name]; ok && val != "" {
				return val
			}
			if !slices.Contains(missing, name) {
				missing = append(missing, name)
			}
			return m
		})
	}
	s.Cmd = expandAll(s.Cmd, expand)
	s.Entrypoint = expandAll(s.Entrypoint, expand)
	if len(s.Binds) > 0 {
		binds := slices.Clone(s.Binds)
		for i := range binds {
			binds[i].Source, binds[i].Target = expand(binds[i].Source), expand(binds[i].Target)
		}
		s.Binds = binds
	}
	if len(missing) > 0 {
		return a, fmt.Errorf("system job %s names {{%s}}, which this host does not set", a.JobID, strings.Join(missing, "}}, {{"))
	}
	a.Spec = s
	return a, nil
}

func expandAll(in []string, expand func(string) string) []string {
	if len(in) == 0 {
		return in
	}
	out := make([]string, len(in))
	for i, v := range in {
		out[i] = expand(v)
	}
	return out
}
