package slugbuilder

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
)

// slugignore holds the patterns of a .slugignore file. The syntax is a
// subset of gitignore:
//
//   - one pattern per line; blank lines and lines starting with "#" are
//     skipped; surrounding spaces are trimmed; "\#" and "\!" start a pattern
//     with a literal "#" or "!";
//   - a pattern with no "/" but a trailing one matches a file or directory
//     name at any depth ("*.log", "tmp/");
//   - a pattern with a leading or inner "/" is anchored at the app's root
//     ("/docs", "spec/fixtures");
//   - "*" matches any run of characters but "/", "?" one character but "/",
//     "[a-z]" a class, "\" escapes; a whole "**" segment matches any number
//     of directories ("**/test", "assets/**/*.psd", "vendor/**");
//   - a trailing "/" matches directories only;
//   - a leading "!" re-includes what an earlier pattern excluded (the last
//     matching pattern wins), but never a path inside an excluded directory.
//
// A matched directory is removed with everything in it.
type slugignore struct {
	rules []ignoreRule
}

type ignoreRule struct {
	negate   bool
	dirOnly  bool
	anchored bool     // matched against the whole path, not only its name
	segs     []string // path.Match patterns, or "**"
}

// parseSlugignore parses the contents of a .slugignore file. A malformed
// glob or a ".." segment is an error naming the line.
func parseSlugignore(data []byte) (*slugignore, error) {
	ig := &slugignore{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		rule, ok, err := parseIgnoreLine(sc.Text())
		if err != nil {
			return nil, fmt.Errorf(".slugignore line %d: %w", n, err)
		}
		if ok {
			ig.rules = append(ig.rules, rule)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf(".slugignore: %w", err)
	}
	return ig, nil
}

func parseIgnoreLine(line string) (ignoreRule, bool, error) {
	var r ignoreRule
	p := strings.TrimSpace(line)
	if p == "" || p[0] == '#' {
		return r, false, nil
	}
	switch {
	case p[0] == '!':
		r.negate = true
		p = p[1:]
	case strings.HasPrefix(p, `\#`), strings.HasPrefix(p, `\!`):
		p = p[1:]
	}
	for strings.HasSuffix(p, "/") {
		r.dirOnly = true
		p = p[:len(p)-1]
	}
	if strings.Contains(p, "/") {
		r.anchored = true
	}
	for _, seg := range strings.Split(p, "/") {
		switch seg {
		case "", ".":
			continue
		case "..":
			return r, false, fmt.Errorf("pattern %q: \"..\" cannot name anything inside the app", line)
		case "**":
			if n := len(r.segs); n > 0 && r.segs[n-1] == "**" {
				continue
			}
		default:
			if _, err := path.Match(seg, ""); err != nil {
				return r, false, fmt.Errorf("pattern %q: %w", line, err)
			}
		}
		r.segs = append(r.segs, seg)
	}
	if len(r.segs) == 0 {
		return r, false, nil // "/" or "!": nothing to match
	}
	return r, true, nil
}

// match reports whether the slash-separated path rel (relative to the app's
// root, no leading "/") is excluded: itself or one of its parent
// directories matches.
func (ig *slugignore) match(rel string, isDir bool) bool {
	segs := strings.Split(rel, "/")
	for i := 1; i < len(segs); i++ {
		if ig.matchOne(segs[:i], true) {
			return true
		}
	}
	return ig.matchOne(segs, isDir)
}

// matchOne applies the rules to one path, ignoring its parents: the last
// matching rule decides.
func (ig *slugignore) matchOne(segs []string, isDir bool) bool {
	excluded := false
	for _, r := range ig.rules {
		if r.negate == excluded && r.matches(segs, isDir) {
			excluded = !r.negate
		}
	}
	return excluded
}

func (r ignoreRule) matches(segs []string, isDir bool) bool {
	if r.dirOnly && !isDir {
		return false
	}
	if !r.anchored {
		ok, _ := path.Match(r.segs[0], segs[len(segs)-1])
		return ok
	}
	return matchSegments(r.segs, segs)
}

// matchSegments matches path segments against pattern segments, where "**"
// stands for any number of segments (at least one when it ends the
// pattern, as in gitignore's "dir/**"). It runs in time proportional to
// len(pat)*len(name).
func matchSegments(pat, name []string) bool {
	// ok[j] reports whether pat[i:] matches name[j:], for the current i,
	// computed from the end of the pattern backwards.
	ok := make([]bool, len(name)+1)
	next := make([]bool, len(name)+1)
	ok[len(name)] = true
	for i := len(pat) - 1; i >= 0; i-- {
		for j := len(name); j >= 0; j-- {
			switch {
			case pat[i] == "**" && i == len(pat)-1:
				next[j] = j < len(name)
			case pat[i] == "**":
				// Zero segments, or one more and "**" again.
				next[j] = ok[j] || (j < len(name) && next[j+1])
			case j == len(name):
				next[j] = false
			default:
				m, _ := path.Match(pat[i], name[j])
				next[j] = m && ok[j+1]
			}
		}
		ok, next = next, ok
	}
	return ok[0]
}

// applySlugignore removes from dir every path the rules exclude and returns
// the removed paths, relative to dir. It works through an os.Root of dir:
// symbolic links are removed, never followed, and nothing outside dir is
// touched.
func applySlugignore(dir string, ig *slugignore) ([]string, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("apply .slugignore: %w", err)
	}
	defer root.Close()
	var removed []string
	err = fs.WalkDir(root.FS(), ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if name == "." {
			return nil
		}
		if !ig.matchOne(strings.Split(name, "/"), d.IsDir()) {
			return nil
		}
		if err := root.RemoveAll(name); err != nil {
			return err
		}
		removed = append(removed, name)
		if d.IsDir() {
			return fs.SkipDir
		}
		return nil
	})
	if err != nil {
		return removed, fmt.Errorf("apply .slugignore: %w", err)
	}
	return removed, nil
}
