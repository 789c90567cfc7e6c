package slugbuilder

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// goVersion is a Go version as go.mod writes it: "1.26" (a language
// version), "1.26rc1", "1.26.8".
type goVersion struct {
	minor int
	kind  int // versionLang < versionBeta < versionRC < versionRelease
	num   int // the patch of a release, the number of a beta or rc
}

const (
	versionLang = iota
	versionBeta
	versionRC
	versionRelease
)

var goVersionRE = regexp.MustCompile(`^1\.(\d{1,4})(?:\.(\d{1,4})|(rc|beta)(\d{1,4}))?$`)

// parseGoVersion parses "1.26", "1.26.8", "1.27rc1", with or without the
// "go" prefix.
func parseGoVersion(s string) (goVersion, error) {
	m := goVersionRE.FindStringSubmatch(strings.TrimPrefix(s, "go"))
	if m == nil {
		return goVersion{}, fmt.Errorf("%q is not a Go version", s)
	}
	v := goVersion{}
	v.minor, _ = strconv.Atoi(m[1])
	switch {
	case m[2] != "":
		v.kind = versionRelease
		v.num, _ = strconv.Atoi(m[2])
	case m[3] == "rc":
		v.kind = versionRC
		v.num, _ = strconv.Atoi(m[4])
	case m[3] == "beta":
		v.kind = versionBeta
		v.num, _ = strconv.Atoi(m[4])
	}
	return v, nil
}

// String returns the toolchain name: "go1.26.8", "go1.27rc1", or "go1.26"
// for a language version.
func (v goVersion) String() string {
	switch v.kind {
	case versionBeta:
		return fmt.Sprintf("go1.%dbeta%d", v.minor, v.num)
	case versionRC:
		return fmt.Sprintf("go1.%drc%d", v.minor, v.num)
	case versionRelease:
		return fmt.Sprintf("go1.%d.%d", v.minor, v.num)
	}
	return fmt.Sprintf("go1.%d", v.minor)
}

func compareGoVersions(a, b goVersion) int {
	return cmp.Or(cmp.Compare(a.minor, b.minor), cmp.Compare(a.kind, b.kind), cmp.Compare(a.num, b.num))
}

// goMod holds what the Go buildpack reads from go.mod.
type goMod struct {
	goLine        string // "1.26"
	toolchainLine string // "go1.26.8", or "" (also for "toolchain default")
}

// parseGoMod reads the top-level go and toolchain lines of a go.mod file.
func parseGoMod(data []byte) (goMod, error) {
	var m goMod
	depth := 0
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "//")
		f := strings.Fields(line)
		switch {
		case len(f) == 0:
			continue
		case f[len(f)-1] == "(":
			depth++
			continue
		case f[0] == ")":
			depth = max(depth-1, 0)
			continue
		case depth > 0 || len(f) != 2:
			continue
		}
		switch f[0] {
		case "go":
			if _, err := parseGoVersion(f[1]); err != nil {
				return m, fmt.Errorf("go.mod line %d: %w", n, err)
			}
			m.goLine = f[1]
		case "toolchain":
			if f[1] == "default" {
				continue
			}
			if !strings.HasPrefix(f[1], "go") {
				return m, fmt.Errorf("go.mod line %d: toolchain %q is not a Go toolchain name", n, f[1])
			}
			if _, err := parseGoVersion(f[1]); err != nil {
				return m, fmt.Errorf("go.mod line %d: %w", n, err)
			}
			m.toolchainLine = f[1]
		}
	}
	if err := sc.Err(); err != nil {
		return m, fmt.Errorf("go.mod: %w", err)
	}
	if m.goLine == "" {
		return m, errors.New("go.mod has no go line (such as \"go 1.26\"): the Go version cannot be chosen")
	}
	return m, nil
}

// toolchainChoice is the toolchain a go.mod asks for.
type toolchainChoice struct {
	version goVersion // exact, unless newestOf is set
	// newestOf is set for a "go 1.N" line with no newer toolchain line:
	// the newest go1.N.x release on the module proxy is wanted.
	newestOf bool
	why      string
}

// chooseToolchain applies the go command's rule: the toolchain line when
// it is at least the go line, else the go line. A go line without a patch
// ("go 1.26") stands for the newest 1.26.x release.
func chooseToolchain(m goMod) (toolchainChoice, error) {
	g, err := parseGoVersion(m.goLine)
	if err != nil {
		return toolchainChoice{}, err
	}
	if m.toolchainLine != "" {
		t, err := parseGoVersion(m.toolchainLine)
		if err != nil {
			return toolchainChoice{}, err
		}
		if t.kind != versionLang && compareGoVersions(t, g) >= 0 {
			return toolchainChoice{version: t, why: "the toolchain line of go.mod"}, nil
		}
	}
	if g.kind != versionLang {
		return toolchainChoice{version: g, why: "the go line of go.mod"}, nil
	}
	return toolchainChoice{version: g, newestOf: true, why: "the newest go1." + strconv.Itoa(g.minor) + ".x on the module proxy, for \"go " + m.goLine + "\" in go.mod"}, nil
}

// newestRelease picks, from the versions of the golang.org/toolchain module
// ("v0.0.1-go1.26.8.linux-amd64", one per line), the newest release of the
// minor version of want for arch. ok is false when there is none.
func newestRelease(list []byte, want goVersion, arch string) (goVersion, bool) {
	var best goVersion
	found := false
	suffix := ".linux-" + arch
	for _, line := range strings.Fields(string(list)) {
		name, ok := strings.CutPrefix(line, "v0.0.1-")
		if !ok {
			continue
		}
		name, ok = strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		v, err := parseGoVersion(name)
		if err != nil || v.kind != versionRelease || v.minor != want.minor {
			continue
		}
		if !found || compareGoVersions(v, best) > 0 {
			best, found = v, true
		}
	}
	return best, found
}
