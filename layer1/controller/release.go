package controller

import (
	"errors"
	"maps"
	"net/http"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/distribution/reference"

	"github.com/gantryhq/gantry/layer1/controller/argv"
	"github.com/gantryhq/gantry/layer1/controller/store"
	"github.com/gantryhq/gantry/layer1/controller/types"
)

// Limits of a release request.
const (
	// maxDescription is the longest release description, in bytes.
	maxDescription = 1024
	// maxHealthPath is the longest health check path, in bytes.
	maxHealthPath = 1024
)

// createRelease stores a release of an image with the app's config vars and
// deploys it (POST /v1/apps/{app}/releases).
func (s *Server) createRelease(w http.ResponseWriter, r *http.Request) {
	var req types.ReleaseRequest
	if e := decodeJSON(w, r, &req, false); e != nil {
		writeError(w, e)
		return
	}
	if err := validateReleaseRequest(req); err != nil {
		s.fail(w, r, err)
		return
	}
	description := req.Description
	if description == "" {
		description = "image " + req.Image
	}
	app := r.PathValue("app")
	rel, d, err := s.store.DeployRelease(r.Context(), app, store.NewRelease{
		Description: description,
		Image:       req.Image,
		Processes:   req.Processes,
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("release created", "app", app, "release", rel.Version, "image", rel.Image, "deployment", d.Status)
	s.deploymentMade(w, r, app, d)
	writeJSON(w, http.StatusCreated, rel)
}

// validateReleaseRequest returns an ErrInvalid that names the first problem
// of req: a missing or malformed image reference, no process, a bad process
// type, a command that does not split into arguments (see package argv), a
// bad health check path, or a description that is too long.
func validateReleaseRequest(req types.ReleaseRequest) error {
	if err := validateImage(req.Image); err != nil {
		return err
	}
	if len(req.Processes) == 0 {
		return types.ErrInvalid.WithMessage(`the release has no process; give at least one, e.g. "processes": {"web": {"command": "/server"}}`)
	}
	commands := make(map[string]string, len(req.Processes))
	for typ, p := range req.Processes {
		commands[typ] = p.Command
	}
	if err := types.ValidateProcesses(commands); err != nil {
		return err
	}
	for _, typ := range slices.Sorted(maps.Keys(req.Processes)) {
		if err := validateProcess(typ, req.Processes[typ]); err != nil {
			return err
		}
	}
	switch {
	case len(req.Description) > maxDescription:
		return types.ErrInvalid.WithMessage("the description is %d bytes, the limit is %d", len(req.Description), maxDescription)
	case !utf8.ValidString(req.Description) || strings.ContainsRune(req.Description, 0):
		return types.ErrInvalid.WithMessage("the description is not valid UTF-8 text")
	}
	return nil
}

// validateImage checks that ref is a Docker image reference with a
// repository ("demo", "demo:v2", "registry.example:5000/team/demo@sha256:..."):
// a digest or image ID alone ("sha256:...") is refused, as is a name that
// is not in the canonical, lower-case form.
func validateImage(ref string) error {
	if ref == "" {
		return types.ErrInvalid.WithMessage(`no image; name a Docker image present on the hosts, e.g. "image": "demo:v2"`)
	}
	for _, alg := range []string{"sha256:", "sha384:", "sha512:"} {
		if strings.HasPrefix(ref, alg) {
			return types.ErrInvalid.WithMessage("invalid image reference %q: a digest or image ID alone has no repository; "+
				"name the image, e.g. demo:v2 or demo@sha256:<hex> (docker tag <id> demo:v2 names an image ID)", ref)
		}
	}
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return types.ErrInvalid.WithMessage("invalid image reference %q: %v (want NAME[:TAG][@DIGEST], e.g. demo:v2)", ref, err)
	}
	// The parser takes a first component in capitals for a registry's
	// host name; Gantry wants image names in their canonical lower case.
	if name := named.Name(); strings.ToLower(name) != name {
		return types.ErrInvalid.WithMessage("invalid image reference %q: image names are lower case (want NAME[:TAG][@DIGEST], e.g. demo:v2)", ref)
	}
	return nil
}

// validateProcess checks the command and health check of process type typ.
func validateProcess(typ string, p types.Process) error {
	if strings.TrimSpace(p.Command) == "" {
		return types.ErrInvalid.WithMessage("process %s: the command is empty", typ)
	}
	if p.System != nil {
		return types.ErrInvalid.WithMessage("process %s: \"system\" is set only by the platform, on its own apps", typ)
	}
	if _, err := argv.Split(p.Command); err != nil {
		hint := ""
		if errors.Is(err, argv.ErrShellSyntax) {
			hint = "; commands run without a shell: wrap it in sh -c '...' if the image has one"
		}
		return types.ErrInvalid.WithMessage("process %s: command %q: %v%s", typ, p.Command, err, hint)
	}
	if p.HealthPath == "" {
		return nil
	}
	switch {
	case typ != "web":
		return types.ErrInvalid.WithMessage("process %s: a health check path applies only to web processes, the ones that listen on $PORT", typ)
	case !strings.HasPrefix(p.HealthPath, "/"):
		return types.ErrInvalid.WithMessage("process %s: the health check path %q does not start with /", typ, p.HealthPath)
	case len(p.HealthPath) > maxHealthPath:
		return types.ErrInvalid.WithMessage("process %s: the health check path is %d bytes, the limit is %d", typ, len(p.HealthPath), maxHealthPath)
	case strings.IndexFunc(p.HealthPath, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) || r == utf8.RuneError }) >= 0:
		return types.ErrInvalid.WithMessage("process %s: the health check path %q holds a space, a control character or invalid UTF-8", typ, p.HealthPath)
	}
	return nil
}
