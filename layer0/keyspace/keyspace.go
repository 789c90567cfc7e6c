// Package keyspace defines the etcd key layout of a Gantry cluster and the
// values stored under each key family.
//
// Every key lives under /gantry/<cluster>/, so two clusters can share one etcd
// and one Docker engine without touching each other's state. Each key family
// has exactly one writer (see docs/ARCHITECTURE.md):
//
//	/gantry/<c>/hosts/<host>                    Host         host agent, under its lease
//	/gantry/<c>/hostflags/<host>                HostFlags    controller (drain, remove)
//	/gantry/<c>/formations/<app>/<release>/<t>  Formation    controller
//	/gantry/<c>/assignments/<host>/<job>        Assignment   scheduler (leader)
//	/gantry/<c>/jobs/<job>                      JobState     host agent, under its lease
//	/gantry/<c>/services/<service>/<instance>   discovery    host agent, under its lease
//	/gantry/<c>/routes/<domain>                 route        controller
//	/gantry/<c>/acme/challenges/<token>         key auth     controller (text, not JSON)
//	/gantry/<c>/elections/<name>                leader election keys
//
// Values are JSON.
package keyspace

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// ErrInvalidCluster is returned by New for a cluster ID that cannot be used
// in keys and container labels.
var ErrInvalidCluster = errors.New("invalid cluster id")

var clusterRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// Space is the key layout of one cluster. The zero value is not usable; get
// one from New.
type Space struct {
	cluster string
	root    string
}

// New returns the key layout of the cluster with the given ID
// (`^[a-z0-9][a-z0-9-]{0,62}$`).
func New(cluster string) (Space, error) {
	if !clusterRE.MatchString(cluster) {
		return Space{}, fmt.Errorf("%w %q: want lower-case letters, digits and dashes", ErrInvalidCluster, cluster)
	}
	return Space{cluster: cluster, root: "/gantry/" + cluster + "/"}, nil
}

// MustNew is New for IDs known to be valid (tests, constants); it panics on
// an invalid ID.
func MustNew(cluster string) Space {
	s, err := New(cluster)
	if err != nil {
		panic(err)
	}
	return s
}

// Cluster returns the cluster ID.
func (s Space) Cluster() string { return s.cluster }

// Root returns the prefix of every key of the cluster, with a trailing slash.
func (s Space) Root() string { return s.root }

// Hosts returns the prefix of the host family.
func (s Space) Hosts() string { return s.root + "hosts/" }

// Host returns the key of one host.
func (s Space) Host(id string) string { return s.Hosts() + id }

// HostFlags returns the prefix of the host flags family: what an operator
// asked of each host (drain, remove).
func (s Space) HostFlags() string { return s.root + "hostflags/" }

// HostFlag returns the key of one host's flags.
func (s Space) HostFlag(id string) string { return s.HostFlags() + id }

// Formations returns the prefix of the formation family.
func (s Space) Formations() string { return s.root + "formations/" }

// AppFormations returns the prefix of one app's formations.
func (s Space) AppFormations(app string) string { return s.Formations() + app + "/" }

// Formation returns the key of one app/release/type formation.
func (s Space) Formation(app, release, typ string) string {
	return s.AppFormations(app) + release + "/" + typ
}

// Assignments returns the prefix of the whole assignment family.
func (s Space) Assignments() string { return s.root + "assignments/" }

// HostAssignments returns the prefix of one host's assignments.
func (s Space) HostAssignments(host string) string { return s.Assignments() + host + "/" }

// Assignment returns the key of one job placed on a host.
func (s Space) Assignment(host, job string) string { return s.HostAssignments(host) + job }

// Jobs returns the prefix of the job state family.
func (s Space) Jobs() string { return s.root + "jobs/" }

// Job returns the key of one job's state.
func (s Space) Job(id string) string { return s.Jobs() + id }

// Services returns the prefix of the discovery family.
func (s Space) Services() string { return s.root + "services/" }

// Service returns the prefix of one service's instances.
func (s Space) Service(name string) string { return s.Services() + name + "/" }

// Instance returns the key of one instance of a service.
func (s Space) Instance(service, id string) string { return s.Service(service) + id }

// Routes returns the prefix of the route family.
func (s Space) Routes() string { return s.root + "routes/" }

// Route returns the key of the route of one domain (lower-cased).
func (s Space) Route(domain string) string { return s.Routes() + strings.ToLower(domain) }

// JoinTokens is the prefix of the join tokens (`gantryd join-token`):
// each key is the SHA-256 of a token's secret, under a lease.
func (s Space) JoinTokens() string { return s.root + "jointokens/" }

// JoinToken is the key of the join token whose secret has the SHA-256
// sum (hex).
func (s Space) JoinToken(sum string) string { return s.JoinTokens() + sum }

// Election returns the prefix used for the leader election called name.
func (s Space) Election(name string) string { return s.root + "elections/" + name }

// Last returns the last path element of key, e.g. the job ID of an
// assignment key.
func Last(key string) string {
	if i := strings.LastIndexByte(key, '/'); i >= 0 {
		return key[i+1:]
	}
	return key
}

// ACMEChallenges is the prefix of the HTTP-01 challenge answers that every
// router serves.
func (s Space) ACMEChallenges() string { return s.root + "acme/challenges/" }

// ACMEChallenge is the key of the HTTP-01 challenge answer for token; its
// value is the key authorization, as text.
func (s Space) ACMEChallenge(token string) string { return s.ACMEChallenges() + token }
