package controller

import (
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/gantryhq/gantry/layer1/controller/types"
)

// maxPathParam is the longest value of a path parameter that can name an
// object, in bytes (a domain, the longest, has at most 253).
const maxPathParam = 512

// pathParam says which values of one wildcard of the API's paths can name
// an object, and which error answers a value that cannot.
type pathParam struct {
	// valid reports whether v can name an object; v is valid UTF-8
	// without control characters and at most maxPathParam bytes when it
	// is called.
	valid func(v string) bool
	// notFound is the 404 of a value that names no object.
	notFound *types.Error
}

// uuidRegexp matches the IDs PostgreSQL gives deployments.
var uuidRegexp = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// pathParams are the wildcards of the API's paths (see routes). Every one
// is checked before a handler runs, so a value no object can have (a NUL
// byte or invalid UTF-8, which PostgreSQL refuses, or a name that breaks
// the naming rules) gets the 404 of its object, never reaches SQL or etcd,
// and never becomes a 500.
var pathParams = map[string]pathParam{
	// The database's rule for app names (ValidateAppName, for new apps,
	// also refuses a trailing dash).
	"app":         {types.AppNameRegexp.MatchString, types.ErrAppNotFound},
	"version":     {func(v string) bool { _, ok := parseVersion(v); return ok }, types.ErrReleaseNotFound},
	"id":          {uuidRegexp.MatchString, types.ErrDeploymentNotFound},
	"domain":      {func(v string) bool { return types.ValidateDomain(v) == nil }, types.ErrRouteNotFound},
	"job":         {func(string) bool { return true }, types.ErrJobNotFound},
	"fingerprint": {func(string) bool { return true }, types.ErrKeyNotFound},
	"host":        {func(string) bool { return true }, types.ErrHostNotFound},
}

// parseVersion parses a release version of a path, "3" or "v3": a
// number from 1 to the largest version PostgreSQL stores (int32).
func parseVersion(v string) (int, bool) {
	n, err := strconv.ParseInt(strings.TrimPrefix(v, "v"), 10, 32)
	if err != nil || n < 1 || strings.HasPrefix(v, "+") || strings.HasPrefix(v, "v+") {
		return 0, false
	}
	return int(n), true
}

// plainText reports whether v is valid UTF-8 without control characters
// and at most maxPathParam bytes: what every path parameter must be.
func plainText(v string) bool {
	return len(v) <= maxPathParam && utf8.ValidString(v) && !strings.ContainsFunc(v, unicode.IsControl)
}

// checkParams wraps the handler of the route pattern: it answers the 404
// of the first path parameter whose value cannot name an object. When a
// later parameter is the bad one, the app it belongs to is looked up
// first, so that an unknown app is reported as such whatever follows it.
func (s *Server) checkParams(pattern string, next http.HandlerFunc) http.HandlerFunc {
	names := patternParams(pattern)
	for _, name := range names {
		if _, ok := pathParams[name]; !ok {
			panic(fmt.Sprintf("controller: route %s: no rule for the path parameter %q", pattern, name))
		}
	}
	if len(names) == 0 {
		return next
	}
	return func(w http.ResponseWriter, r *http.Request) {
		for _, name := range names {
			v := r.PathValue(name)
			p := pathParams[name]
			if plainText(v) && p.valid(v) {
				continue
			}
			if name != "app" && slices.Contains(names, "app") {
				// The app is valid (it came first); it must exist too.
				if _, err := s.store.GetApp(r.Context(), r.PathValue("app")); err != nil {
					s.fail(w, r, err)
					return
				}
			}
			writeError(w, p.notFound.WithMessage("%s", notFoundMessage(p.notFound, r)))
			return
		}
		next(w, r)
	}
}

// patternParams returns the names of the wildcards of a route pattern
// ("GET /v1/apps/{app}/jobs/{job}": app, job), in order.
func patternParams(pattern string) []string {
	var names []string
	for seg := range strings.SplitSeq(pattern, "/") {
		if strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") {
			names = append(names, strings.TrimSuffix(strings.TrimPrefix(seg, "{"), "}"))
		}
	}
	return names
}

// notFoundMessage is the message of a 404 about the objects r names.
func notFoundMessage(e *types.Error, r *http.Request) string {
	if e == types.ErrJobNotFound {
		return fmt.Sprintf("app %q has no job %q", r.PathValue("app"), r.PathValue("job"))
	}
	return describe(e, r)
}

// validateUpdateApp returns an ErrInvalid when req, the body of PATCH
// /v1/apps/{app}, changes nothing (the JSON decoder has refused unknown
// fields and values of the wrong type already).
func validateUpdateApp(req types.UpdateAppRequest) error {
	if req.HTTPSOnly == nil {
		return types.ErrInvalid.WithMessage(`the body changes nothing: send {"https_only": true} or {"https_only": false}`)
	}
	return nil
}
