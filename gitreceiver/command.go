package gitreceiver

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// ErrBadCommand is returned for an SSH command the receiver does not serve.
var ErrBadCommand = errors.New("unsupported command")

// Command is a parsed git-over-SSH request.
type Command struct {
	// Service is "git-receive-pack" or "git-upload-pack".
	Service string
	// App is the app whose repository is addressed.
	App string
}

var appNameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{1,29}$`)

// ParseCommand parses the raw command of an SSH exec request, as git sends
// it: `git-receive-pack 'demo.git'`. The repository may be written `demo`,
// `demo.git`, `/demo.git` or `/demo`, quoted or not; `git receive-pack` (with
// a space) is accepted too.
func ParseCommand(raw string) (Command, error) {
	fields := strings.Fields(raw)
	if len(fields) == 0 {
		return Command{}, fmt.Errorf("%w: this server only serves git (push with `git push gantry main`)", ErrBadCommand)
	}
	if fields[0] == "git" && len(fields) > 1 {
		fields = append([]string{"git-" + fields[1]}, fields[2:]...)
	}
	service := fields[0]
	if service != "git-receive-pack" && service != "git-upload-pack" {
		return Command{}, fmt.Errorf("%w %q: this server only serves git push and fetch", ErrBadCommand, truncate(service, 40))
	}
	if len(fields) != 2 {
		return Command{}, fmt.Errorf("%w: %s takes exactly one repository argument", ErrBadCommand, service)
	}
	repo := fields[1]
	if len(repo) >= 2 && (repo[0] == '\'' || repo[0] == '"') && repo[len(repo)-1] == repo[0] {
		repo = repo[1 : len(repo)-1]
	}
	repo = strings.TrimPrefix(repo, "/")
	repo = strings.TrimSuffix(repo, "/")
	repo = strings.TrimSuffix(repo, ".git")
	if !appNameRE.MatchString(repo) {
		return Command{}, fmt.Errorf("%w: %q is not an app repository (want APP.git)", ErrBadCommand, truncate(fields[1], 60))
	}
	return Command{Service: service, App: repo}, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// RefUpdate is one ref update of a push, as git hands it to the hook.
type RefUpdate struct {
	Old  string `json:"old"`
	New  string `json:"new"`
	Name string `json:"name"`
}

// zeroID is the object ID git uses for "no object" (ref created or deleted).
const zeroID = "0000000000000000000000000000000000000000"

// Deletes reports whether the update deletes the ref.
func (u RefUpdate) Deletes() bool { return strings.Trim(u.New, "0") == "" }

// DeployBranches are the branches whose push builds and deploys.
var DeployBranches = []string{"main", "master"}

// ParseRefUpdates parses ref update lines as git gives them to hooks:
// `<old> <new> <ref>`.
func ParseRefUpdates(s string) ([]RefUpdate, error) {
	var out []RefUpdate
	for i, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 3 || !isObjectID(f[0]) || !isObjectID(f[1]) || !strings.HasPrefix(f[2], "refs/") {
			return nil, fmt.Errorf("ref update line %d: %q is not `<old> <new> <ref>`", i+1, truncate(line, 100))
		}
		out = append(out, RefUpdate{Old: f[0], New: f[1], Name: f[2]})
	}
	return out, nil
}

func isObjectID(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// deployRef picks the update to build from a push: exactly one update of a
// deploy branch, not a deletion. Any other ref is refused with a message
// naming the branches that deploy.
func deployRef(updates []RefUpdate) (RefUpdate, error) {
	var found []RefUpdate
	for _, u := range updates {
		branch, ok := strings.CutPrefix(u.Name, "refs/heads/")
		if !ok || !isDeployBranch(branch) {
			return RefUpdate{}, fmt.Errorf("pushing %s is not supported: only the %s branches deploy (git push gantry main)", u.Name, strings.Join(DeployBranches, " and "))
		}
		if u.Deletes() {
			return RefUpdate{}, fmt.Errorf("deleting %s is not allowed: it is the deployed branch", u.Name)
		}
		found = append(found, u)
	}
	switch len(found) {
	case 0:
		return RefUpdate{}, errors.New("nothing to deploy")
	case 1:
		return found[0], nil
	default:
		return RefUpdate{}, errors.New("push one deploy branch at a time (main or master)")
	}
}

func isDeployBranch(b string) bool {
	for _, d := range DeployBranches {
		if b == d {
			return true
		}
	}
	return false
}
