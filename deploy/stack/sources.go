package stack

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// maxSourcesFile bounds how much of one apt sources file is read.
const maxSourcesFile = 1 << 20

// aptSource is one entry of the apt configuration: a line of the one-line
// format (sources.list) or a stanza of the deb822 format (*.sources).
type aptSource struct {
	Types      []string // "deb", "deb-src"
	URIs       []string
	Suites     []string
	Components []string
	Enabled    bool
}

// debianSuites are the suite names of the main Debian archive. Suites such as
// "bookworm-security" or "bookworm-updates" are served by other archives or
// are overlays, and third-party repositories use names of their own.
var debianSuites = []string{
	"buster", "bullseye", "bookworm", "trixie", "forky", "duke", "sid",
	"oldoldstable", "oldstable", "stable", "testing", "unstable",
}

// mirrorSchemes are the URI schemes debootstrap can fetch from.
var mirrorSchemes = []string{"http", "https", "file"}

// parseOneLine parses the one-line format of sources.list(5):
//
//	deb [ option=value ... ] uri suite [component ...]
//
// Everything after '#' is a comment. Lines that are not deb or deb-src
// entries, or lack a URI or suite, are skipped as apt would reject them.
func parseOneLine(data string) []aptSource {
	var out []aptSource
	for line := range strings.Lines(data) {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) == 0 || (fields[0] != "deb" && fields[0] != "deb-src") {
			continue
		}
		rest := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), fields[0]))
		if strings.HasPrefix(rest, "[") {
			end := strings.IndexByte(rest, ']')
			if end < 0 {
				continue
			}
			rest = rest[end+1:]
		}
		args := strings.Fields(rest)
		if len(args) < 2 {
			continue
		}
		out = append(out, aptSource{
			Types:      []string{fields[0]},
			URIs:       []string{args[0]},
			Suites:     []string{args[1]},
			Components: args[2:],
			Enabled:    true,
		})
	}
	return out
}

// parseDeb822 parses the deb822 format of sources.list(5): stanzas of
// "Field: value" lines separated by blank lines, continuation lines starting
// with white space, comment lines starting with '#'. Field names are case
// insensitive. Stanzas without Types, URIs or Suites are skipped.
func parseDeb822(data string) []aptSource {
	var out []aptSource
	fields := map[string]string{}
	last := ""
	flush := func() {
		src := aptSource{
			Types:      strings.Fields(fields["types"]),
			URIs:       strings.Fields(fields["uris"]),
			Suites:     strings.Fields(fields["suites"]),
			Components: strings.Fields(fields["components"]),
			Enabled:    parseAptBool(fields["enabled"], true),
		}
		if len(src.Types) > 0 && len(src.URIs) > 0 && len(src.Suites) > 0 {
			out = append(out, src)
		}
		clear(fields)
		last = ""
	}
	for line := range strings.Lines(data) {
		line = strings.TrimRight(line, "\r\n")
		switch {
		case strings.HasPrefix(line, "#"):
			continue
		case strings.TrimSpace(line) == "":
			flush()
		case line[0] == ' ' || line[0] == '\t':
			if last != "" {
				fields[last] += "\n" + strings.TrimSpace(line)
			}
		default:
			key, val, ok := strings.Cut(line, ":")
			if !ok {
				last = ""
				continue
			}
			last = strings.ToLower(strings.TrimSpace(key))
			fields[last] = strings.TrimSpace(val)
		}
	}
	flush()
	return out
}

// parseAptBool reads a boolean option value the way apt does; an empty or
// unknown value yields def.
func parseAptBool(v string, def bool) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "yes", "true", "with", "on", "enable", "1":
		return true
	case "no", "false", "without", "off", "disable", "0":
		return false
	}
	return def
}

// mainArchive returns the URI of the first enabled binary ("deb") entry of
// the main Debian archive: component main and a Debian release suite, which
// rules out the security archive, the updates and backports suites and
// third-party repositories. It reports false when there is none.
func mainArchive(sources []aptSource) (string, bool) {
	for _, s := range sources {
		if !s.Enabled || !slices.Contains(s.Types, "deb") || !slices.Contains(s.Components, "main") {
			continue
		}
		if !slices.ContainsFunc(s.Suites, func(suite string) bool { return slices.Contains(debianSuites, suite) }) {
			continue
		}
		for _, u := range s.URIs {
			if usableMirror(u) {
				return u, true
			}
		}
	}
	return "", false
}

// usableMirror reports whether debootstrap can fetch from uri.
func usableMirror(uri string) bool {
	u, err := url.Parse(uri)
	if err != nil || !slices.Contains(mirrorSchemes, u.Scheme) {
		return false
	}
	if u.Scheme == "file" {
		return u.Path != ""
	}
	return u.Host != ""
}

// findMirror returns the main Debian archive named by the apt configuration
// under aptDir (normally /etc/apt), reading the files in apt's own order:
// sources.list, then sources.list.d/*.list and *.sources by name.
func findMirror(aptDir string) (string, error) {
	files := []string{filepath.Join(aptDir, "sources.list")}
	entries, err := os.ReadDir(filepath.Join(aptDir, "sources.list.d"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read apt sources: %w", err)
	}
	var names []string
	for _, e := range entries {
		if n := e.Name(); !e.IsDir() && (strings.HasSuffix(n, ".list") || strings.HasSuffix(n, ".sources")) {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		files = append(files, filepath.Join(aptDir, "sources.list.d", n))
	}

	var sources []aptSource
	for _, name := range files {
		data, err := readSmallFile(name)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("read apt sources: %w", err)
		}
		if strings.HasSuffix(name, ".sources") {
			sources = append(sources, parseDeb822(data)...)
		} else {
			sources = append(sources, parseOneLine(data)...)
		}
	}
	if uri, ok := mainArchive(sources); ok {
		return uri, nil
	}
	return "", fmt.Errorf("%w: no enabled deb entry for the main Debian archive in %s", ErrNoMirror, strings.Join(files, ", "))
}

// readSmallFile reads at most maxSourcesFile bytes of name.
func readSmallFile(name string) (string, error) {
	f, err := os.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSourcesFile))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", name, err)
	}
	return string(data), nil
}
