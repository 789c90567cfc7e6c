package scheduler

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"

	"github.com/gantryhq/gantry/layer0/keyspace"
)

// family holds the decoded values of one key family at one revision.
// Values whose bytes did not change since the last update are not decoded
// again.
type family[T any] struct {
	name   string
	prefix string
	// identify fills the identity fields of v from the key after the
	// prefix; it reports false for a key outside the family's layout.
	identify func(rest string, v *T) bool

	loaded bool
	rev    int64
	cache  map[string]entry[T]
	list   []T // the decodable values
}

type entry[T any] struct {
	raw []byte
	val T
	ok  bool
}

// update replaces the family's content with kvs, read at revision rev,
// unless the family already holds a later revision. Undecodable values are
// logged once and left out.
func (f *family[T]) update(log *slog.Logger, rev int64, kvs map[string][]byte) {
	if f.loaded && rev < f.rev {
		return
	}
	next := make(map[string]entry[T], len(kvs))
	list := make([]T, 0, len(kvs))
	for k, raw := range kvs {
		e, ok := f.cache[k]
		if !ok || !bytes.Equal(e.raw, raw) {
			e = entry[T]{raw: raw}
			if err := json.Unmarshal(raw, &e.val); err != nil {
				log.Warn("skipping undecodable value", "family", f.name, "key", k, "err", err)
			} else if !f.identify(strings.TrimPrefix(k, f.prefix), &e.val) {
				log.Warn("skipping key outside the layout", "family", f.name, "key", k)
			} else {
				e.ok = true
			}
		}
		next[k] = e
		if e.ok {
			list = append(list, e.val)
		}
	}
	f.cache, f.list, f.rev, f.loaded = next, list, rev, true
}

// pathParts splits rest into exactly n non-empty parts.
func pathParts(rest string, n int) ([]string, bool) {
	parts := strings.Split(rest, "/")
	if len(parts) != n {
		return nil, false
	}
	for _, p := range parts {
		if p == "" {
			return nil, false
		}
	}
	return parts, true
}

func hostFamily(space keyspace.Space) family[keyspace.Host] {
	return family[keyspace.Host]{name: "hosts", prefix: space.Hosts(), identify: func(rest string, h *keyspace.Host) bool {
		p, ok := pathParts(rest, 1)
		if ok {
			h.ID = p[0]
		}
		return ok
	}}
}

func formationFamily(space keyspace.Space) family[keyspace.Formation] {
	return family[keyspace.Formation]{name: "formations", prefix: space.Formations(), identify: func(rest string, f *keyspace.Formation) bool {
		p, ok := pathParts(rest, 3)
		if ok {
			f.App, f.Release, f.Type = p[0], p[1], p[2]
		}
		return ok
	}}
}

func assignmentFamily(space keyspace.Space) family[keyspace.Assignment] {
	return family[keyspace.Assignment]{name: "assignments", prefix: space.Assignments(), identify: func(rest string, a *keyspace.Assignment) bool {
		p, ok := pathParts(rest, 2)
		if ok {
			a.HostID, a.JobID = p[0], p[1]
		}
		return ok
	}}
}

func jobFamily(space keyspace.Space) family[keyspace.JobState] {
	return family[keyspace.JobState]{name: "jobs", prefix: space.Jobs(), identify: func(rest string, j *keyspace.JobState) bool {
		p, ok := pathParts(rest, 1)
		if ok {
			j.JobID = p[0]
		}
		return ok
	}}
}

// hostFlags is one host's flags with the host's ID, which is in the key.
type hostFlags struct {
	ID string `json:"-"`
	keyspace.HostFlags
}

func hostFlagsFamily(space keyspace.Space) family[hostFlags] {
	return family[hostFlags]{name: "hostflags", prefix: space.HostFlags(), identify: func(rest string, f *hostFlags) bool {
		p, ok := pathParts(rest, 1)
		if ok {
			f.ID = p[0]
		}
		return ok
	}}
}
