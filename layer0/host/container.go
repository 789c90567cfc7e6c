package host

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"math"
	"net"
	"net/url"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/go-connections/nat"

	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer0/readiness"
)

// Container labels the agent adds to keyspace's: LabelHost scopes a
// container to one agent, so that two agents of one cluster can share a
// Docker Engine; LabelService lets an orphaned container be deregistered
// from discovery without its assignment.
const (
	LabelHost    = keyspace.LabelHost
	LabelService = "gantry.service"
)

// ErrInvalidSpec is wrapped by the error of a job spec the agent refuses to
// run; such a job crashes without a container.
var ErrInvalidSpec = errors.New("invalid job spec")

var (
	envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	digestRE  = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	// userRE is a user name or uid, optionally with ":" and a group name
	// or gid, as Docker takes them.
	userRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,63})?$`)
)

// GantrydMountPath is where a job with MountGantryd finds gantryd.
const GantrydMountPath = "/usr/local/bin/gantryd"

// maxFiles bounds the artifacts, and the outputs, of one job.
const maxFiles = 32

// validateSpec checks what the agent relies on. A JobSpec cannot express
// devices or privileges; its only host paths are the agent's own mounts
// (artifacts from its cache and its gantryd binary, read-only) and the
// binds of the platform's own jobs (see validateSystem).
func validateSpec(s keyspace.JobSpec) error {
	var errs []error
	if s.Image == "" {
		errs = append(errs, errors.New("no image"))
	}
	if s.Port < 0 || s.Port > 65535 {
		errs = append(errs, fmt.Errorf("port %d out of range", s.Port))
	}
	for k, v := range s.Env {
		if !envNameRE.MatchString(k) {
			errs = append(errs, fmt.Errorf("env name %q", k))
		}
		if strings.ContainsRune(v, 0) {
			errs = append(errs, fmt.Errorf("env %s contains NUL", k))
		}
	}
	r := s.Resources
	if r.Memory < 0 || r.CPUShares < 0 || r.PIDs < 0 {
		errs = append(errs, errors.New("negative resource limit"))
	}
	if r.Memory > 0 && r.Memory < 6<<20 {
		errs = append(errs, errors.New("memory limit below 6 MiB"))
	}
	if s.StopTimeout < 0 || s.StopTimeout > time.Hour {
		errs = append(errs, fmt.Errorf("stop timeout %s out of range", s.StopTimeout))
	}
	if s.Health.Path != "" && !strings.HasPrefix(s.Health.Path, "/") {
		errs = append(errs, fmt.Errorf("health path %q does not start with /", s.Health.Path))
	}
	if s.Health.Interval < 0 || s.Health.Timeout < 0 {
		errs = append(errs, errors.New("negative health check interval or timeout"))
	}
	if s.Service != "" && (strings.ContainsAny(s.Service, "/ \t\n") || len(s.Service) > 200) {
		errs = append(errs, fmt.Errorf("service name %q", s.Service))
	}
	for _, v := range []string{s.App, s.Release, s.Type} {
		if strings.ContainsRune(v, 0) {
			errs = append(errs, errors.New("app, release or type contains NUL"))
		}
	}
	if s.User != "" && !userRE.MatchString(s.User) {
		errs = append(errs, fmt.Errorf("user %q is not a user or uid with an optional :group or :gid", s.User))
	}
	errs = append(errs, validateFiles(s)...)
	errs = append(errs, validateAttach(s)...)
	errs = append(errs, validateSystem(s)...)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidSpec, err)
	}
	return nil
}

// validateFiles checks the artifacts and outputs of s.
func validateFiles(s keyspace.JobSpec) []error {
	var errs []error
	if len(s.Artifacts) > maxFiles || len(s.Outputs) > maxFiles {
		errs = append(errs, fmt.Errorf("more than %d artifacts or outputs", maxFiles))
	}
	if len(s.Outputs) > 0 && !s.OneOff {
		errs = append(errs, errors.New("outputs of a job that is not one-off"))
	}
	targets := map[string]bool{}
	if s.MountGantryd {
		targets[GantrydMountPath] = true
	}
	for _, a := range s.Artifacts {
		if err := validateURL(a.URL); err != nil {
			errs = append(errs, fmt.Errorf("artifact %s: %w", a.Path, err))
		}
		if !digestRE.MatchString(a.Digest) {
			errs = append(errs, fmt.Errorf("artifact %s: digest %q is not sha256:<64 lower-case hex digits>", a.Path, a.Digest))
		}
		if err := validateContainerPath(a.Path); err != nil {
			errs = append(errs, fmt.Errorf("artifact: %w", err))
		} else if targets[a.Path] {
			errs = append(errs, fmt.Errorf("artifact %s: the path is mounted twice", a.Path))
		}
		targets[a.Path] = true
	}
	errs = append(errs, validateVolumes(s, targets)...)
	for _, o := range s.Outputs {
		if err := validateURL(o.URL); err != nil {
			errs = append(errs, fmt.Errorf("output %s: %w", o.Path, err))
		}
		if err := validateContainerPath(o.Path); err != nil {
			errs = append(errs, fmt.Errorf("output: %w", err))
		}
	}
	return errs
}

// validateSystem checks the fields of the platform's own jobs: a system
// job's name is a label value, and its binds are clean absolute paths
// mounted once each.
func validateSystem(s keyspace.JobSpec) []error {
	var errs []error
	if s.System != "" && !validLabelValue(s.System) {
		errs = append(errs, fmt.Errorf("system component %q is not a label value", s.System))
	}
	if len(s.Binds) > maxFiles {
		errs = append(errs, fmt.Errorf("more than %d binds", maxFiles))
	}
	targets := map[string]bool{}
	for _, b := range s.Binds {
		if err := validateContainerPath(b.Source); err != nil {
			errs = append(errs, fmt.Errorf("bind source: %w", err))
		}
		if err := validateContainerPath(b.Target); err != nil {
			errs = append(errs, fmt.Errorf("bind target: %w", err))
		} else if targets[b.Target] {
			errs = append(errs, fmt.Errorf("bind %s: the path is mounted twice", b.Target))
		}
		targets[b.Target] = true
	}
	return errs
}

// validateURL accepts an absolute http or https URL.
func validateURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return fmt.Errorf("URL %q is not an http or https URL without credentials", s)
	}
	return nil
}

// validateContainerPath accepts a clean absolute path other than "/".
func validateContainerPath(p string) error {
	if !path.IsAbs(p) || path.Clean(p) != p || p == "/" || strings.ContainsAny(p, "\x00\n") || len(p) > 1024 {
		return fmt.Errorf("path %q is not a clean absolute file path", p)
	}
	return nil
}

// stopTimeout is the grace period between SIGTERM and SIGKILL.
func stopTimeout(s keyspace.JobSpec) time.Duration {
	if s.StopTimeout > 0 {
		return s.StopTimeout
	}
	return DefaultStopTimeout
}

// stopSeconds is stopTimeout in whole seconds, rounded up, as Docker wants.
func stopSeconds(s keyspace.JobSpec) int {
	return int(math.Ceil(stopTimeout(s).Seconds()))
}

func checkInterval(h keyspace.HealthCheck) time.Duration {
	if h.Interval > 0 {
		return h.Interval
	}
	return DefaultCheckInterval
}

func checkTimeout(h keyspace.HealthCheck) time.Duration {
	if h.Timeout > 0 {
		return h.Timeout
	}
	return DefaultCheckTimeout
}

// containerName is gantry-<cluster>-<app>-<type>-<job>, where <job> is the
// job ID when short and otherwise a prefix of it plus a hash of the whole.
// A system job's name also holds the host ID after the cluster's, as the
// platform's other containers do, so hosts sharing one Docker engine tell
// their platform containers apart by name too.
func containerName(cluster, hostID string, s keyspace.JobSpec, jobID string) string {
	job := nameSafe(jobID)
	if len(job) > 16 || job != jobID {
		sum := sha256.Sum256([]byte(jobID))
		job = job[:min(len(job), 8)] + "-" + hex.EncodeToString(sum[:4])
	}
	parts := []string{"gantry", cluster}
	if s.System != "" && hostID != "" {
		parts = append(parts, nameSafe(hostID))
	}
	for _, p := range []string{s.App, s.Type} {
		if p = nameSafe(p); p != "" {
			parts = append(parts, p[:min(len(p), 30)])
		}
	}
	return strings.Join(append(parts, job), "-")
}

// nameSafe keeps the characters Docker allows in container names.
func nameSafe(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	return strings.Trim(b.String(), "-_.")
}

// containerPort is the spec's port in Docker's notation.
func containerPort(s keyspace.JobSpec) nat.Port {
	return nat.Port(strconv.Itoa(s.Port) + "/tcp")
}

// containerLabels are the labels of a job's container.
func containerLabels(cluster, host string, a keyspace.Assignment) map[string]string {
	l := map[string]string{
		keyspace.LabelCluster: cluster,
		keyspace.LabelJob:     a.JobID,
		keyspace.LabelApp:     a.Spec.App,
		keyspace.LabelRelease: a.Spec.Release,
		keyspace.LabelType:    a.Spec.Type,
		LabelHost:             host,
		LabelService:          a.Spec.Service,
	}
	if a.Spec.System != "" {
		l[keyspace.LabelSystem] = a.Spec.System
	}
	return l
}

// droppedCaps are removed from Docker's default capability set: apps have no
// use for raw sockets, device nodes or the audit log.
var droppedCaps = []string{"NET_RAW", "MKNOD", "AUDIT_WRITE"}

// containerConfig builds the create request of a job: its limits, its
// user, its environment with PORT, its port published on a free port of
// advertise (or the host's network for a HostNetwork job), the given
// read-only file mounts (artifacts, gantryd), volumes (see volumeMounts)
// and the spec's binds, and no privileges, capabilities or other host
// paths beyond Docker's defaults minus droppedCaps.
//
// ready, when not empty, is the host directory of the job's readiness
// socket (keyspace.HealthCheck.Socket): mounted read-write at
// readiness.MountDir, with the socket's path in readiness.EnvSocket.
func containerConfig(cluster, host, advertise string, a keyspace.Assignment, files []fileMount, volumes []mount.Mount, ready string) (*container.Config, *container.HostConfig) {
	s := a.Spec
	env := make([]string, 0, len(s.Env)+1)
	for _, k := range slices.Sorted(maps.Keys(s.Env)) {
		if k == "PORT" && s.Port > 0 {
			continue
		}
		env = append(env, k+"="+s.Env[k])
	}
	if s.Port > 0 {
		env = append(env, "PORT="+strconv.Itoa(s.Port))
	}
	if ready != "" {
		env = append(env, readiness.EnvSocket+"="+path.Join(readiness.MountDir, readiness.SocketName))
	}
	stop := stopSeconds(s)
	cfg := &container.Config{
		Image:       s.Image,
		Cmd:         s.Cmd,
		Entrypoint:  s.Entrypoint,
		Env:         env,
		User:        s.User,
		Labels:      containerLabels(cluster, host, a),
		StopTimeout: &stop,
	}

	mem := s.Resources.Memory
	if mem == 0 {
		mem = DefaultMemory
	}
	pids := s.Resources.PIDs
	if pids == 0 {
		pids = DefaultPIDs
	}
	hc := &container.HostConfig{
		Privileged:    false,
		CapDrop:       droppedCaps,
		SecurityOpt:   []string{"no-new-privileges"},
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyDisabled},
		LogConfig: container.LogConfig{
			Type:   "json-file",
			Config: map[string]string{"max-size": "10m", "max-file": "2"},
		},
		Resources: container.Resources{
			Memory:     mem,
			MemorySwap: mem,
			CPUShares:  s.Resources.CPUShares,
			PidsLimit:  &pids,
		},
	}
	for _, f := range files {
		hc.Mounts = append(hc.Mounts, mount.Mount{
			Type:     mount.TypeBind,
			Source:   f.source,
			Target:   f.target,
			ReadOnly: true,
		})
	}
	hc.Mounts = append(hc.Mounts, volumes...)
	if ready != "" {
		hc.Mounts = append(hc.Mounts, mount.Mount{Type: mount.TypeBind, Source: ready, Target: readiness.MountDir})
	}
	for _, b := range s.Binds {
		hc.Mounts = append(hc.Mounts, mount.Mount{Type: mount.TypeBind, Source: b.Source, Target: b.Target, ReadOnly: b.ReadOnly})
	}
	attachConfig(s, cfg, hc)
	if s.HostNetwork {
		hc.NetworkMode = network.NetworkHost
	} else if s.Port > 0 {
		p := containerPort(s)
		cfg.ExposedPorts = nat.PortSet{p: struct{}{}}
		hc.PortBindings = nat.PortMap{p: []nat.PortBinding{{HostIP: advertise, HostPort: ""}}}
	}
	return cfg, hc
}

// fileMount is a host file the agent mounts read-only into a container.
type fileMount struct {
	source string // absolute path on the host
	target string // absolute path in the container
}

// publishedAddr finds the host address Docker published the job's port on:
// for a job on the host's network, its port of the advertised address.
func publishedAddr(s keyspace.JobSpec, info container.InspectResponse, advertise string) (string, bool) {
	if s.HostNetwork && s.Port > 0 {
		return net.JoinHostPort(advertise, strconv.Itoa(s.Port)), true
	}
	if s.Port == 0 || info.NetworkSettings == nil {
		return "", false
	}
	for _, b := range info.NetworkSettings.Ports[containerPort(s)] {
		if b.HostPort == "" {
			continue
		}
		ip := b.HostIP
		if ip == "" || ip == "0.0.0.0" || ip == "::" {
			ip = advertise
		}
		return net.JoinHostPort(ip, b.HostPort), true
	}
	return "", false
}

// specFromLabels rebuilds the parts of a job spec that a container's labels
// record; enough to deregister and stop an orphaned container.
func specFromLabels(labels map[string]string) keyspace.JobSpec {
	return keyspace.JobSpec{
		App:     labels[keyspace.LabelApp],
		Release: labels[keyspace.LabelRelease],
		Type:    labels[keyspace.LabelType],
		Service: labels[LabelService],
	}
}

// readyDirName is the directory of the jobs' readiness sockets in the
// agent's state dir.
const readyDirName = "ready"

// readyDir is the host directory of job id's readiness socket
// (keyspace.HealthCheck.Socket): named by a digest of the ID, so that the
// socket's path stays short (a Unix socket's path has 107 bytes at most)
// and a new run of the agent finds it again.
func (a *agent) readyDir(id string) string {
	sum := sha256.Sum256([]byte(id))
	return filepath.Join(a.cfg.StateDir, readyDirName, hex.EncodeToString(sum[:8]))
}
