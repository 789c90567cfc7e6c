package gitreceiver

import (
	"errors"
	"fmt"
	"strings"

	"github.com/gantryhq/gantry/layer1/controller/types"
)

// ErrBadCommand is returned for an SSH command the receiver does not serve.
var ErrBadCommand = errors.New("unsupported command")

// Errors that reject a push's ref updates.
var (
	// ErrNotDeployBranch rejects a push of a ref other than a deploy branch.
	ErrNotDeployBranch = errors.New("not a deploy branch")
	// ErrDeleteDeployBranch rejects the deletion of a deploy branch.
	ErrDeleteDeployBranch = errors.New("deleting the deploy branch is not supported")
	// ErrRefMoved rejects a push whose branch another push moved after
	// this one began.
	ErrRefMoved = errors.New("changed by another push")
)

// Rejection reasons, as git shows them: "! [remote rejected] main -> main
// (reason)".
const (
	reasonNotDeployBranch = "not a deploy branch"
	reasonDeleteBranch    = "deleting the deploy branch is not supported"
	reasonRefMoved        = "changed by another push"
	reasonOneBranch       = "one deploy branch per push"
)

// Command is a parsed git-over-SSH request.
type Command struct {
	// Service is "git-receive-pack" or "git-upload-pack".
	Service string
	// App is the app whose repository is addressed.
	App string
}

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
	path := fields[1]
	if len(path) >= 2 && (path[0] == '\'' || path[0] == '"') && path[len(path)-1] == path[0] {
		path = path[1 : len(path)-1]
	}
	repo := strings.TrimPrefix(path, "/")
	repo = strings.TrimSuffix(repo, "/")
	repo = strings.TrimSuffix(repo, ".git")
	if err := types.ValidateAppName(repo); err != nil {
		why := err.Error()
		var apiErr *types.Error
		if errors.As(err, &apiErr) {
			why = apiErr.Message
		}
		return Command{}, fmt.Errorf("%w: %s is not an app repository (want /APP.git): %s", ErrBadCommand, truncate(path, 60), why)
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
func (u RefUpdate) Deletes() bool { return isZeroID(u.New) }

// isZeroID reports whether id is git's "no object" ID (of SHA-1 or SHA-256).
func isZeroID(id string) bool { return strings.Trim(id, "0") == "" }

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
// deploy branch, not a deletion. Anything else is a *Rejection whose
// message names what is wrong and which branches deploy.
func deployRef(updates []RefUpdate) (RefUpdate, error) {
	var found []RefUpdate
	for _, u := range updates {
		branch, ok := strings.CutPrefix(u.Name, "refs/heads/")
		if !ok || !isDeployBranch(branch) {
			return RefUpdate{}, &Rejection{Reason: reasonNotDeployBranch, Err: fmt.Errorf("%w: pushing %s is not supported: only the %s branches deploy (git push gantry main)",
				ErrNotDeployBranch, u.Name, strings.Join(DeployBranches, " and "))}
		}
		if u.Deletes() {
			return RefUpdate{}, &Rejection{Reason: reasonDeleteBranch, Err: fmt.Errorf("%w: %s is the branch that deploys; to stop the app, scale it down (gantry scale web=0); to remove it, gantry destroy",
				ErrDeleteDeployBranch, u.Name)}
		}
		found = append(found, u)
	}
	switch len(found) {
	case 0:
		return RefUpdate{}, &Rejection{Reason: reasonNotDeployBranch, Err: fmt.Errorf("%w: nothing to deploy", ErrNotDeployBranch)}
	case 1:
		return found[0], nil
	default:
		return RefUpdate{}, &Rejection{Reason: reasonOneBranch, Err: errors.New("push one deploy branch at a time (main or master)")}
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
