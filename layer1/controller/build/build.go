// Package build is the controller's build orchestrator: it turns an
// app's stored source archive into a release. A build runs `gantryd
// slugbuilder` as a one-off job on the builder image (through the
// scheduler, as a formation in etcd), streams the job's output from its
// host agent, reads the slug and the result from the blobstore, makes the
// release of the slug and follows its deployment. One build of an app runs
// at a time across all controllers, under the app's build lock in
// PostgreSQL (see Builder.lock). See docs/ARCHITECTURE.md, "Build path".
package build

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	hostclient "github.com/gantryhq/gantry/layer0/host/client"
	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer1/blobstore"
	"github.com/gantryhq/gantry/layer1/controller/etcdkv"
	"github.com/gantryhq/gantry/layer1/controller/store"
	"github.com/gantryhq/gantry/layer1/controller/types"
	slugtypes "github.com/gantryhq/gantry/slugbuilder/types"
)

// Limits and timings of builds.
const (
	// Type is the process type of build jobs: their job IDs are
	// <app>.build.1.<hex>.
	Type = "build"
	// ReleasePrefix starts the release segment of a build's formation key
	// (formations/<app>/build-<id>/build).
	ReleasePrefix = "build-"
	// buildPIDs is the PID limit of a build job (compilers fork a lot).
	buildPIDs = 4096
	// buildStopTimeout is the grace period of a cancelled build job.
	buildStopTimeout = 5 * time.Second
	// buildCacheVolume is the volume, on the building host, that keeps an
	// app's build cache from one build to the next.
	buildCacheVolume = "build-cache"
	// placeTimeout bounds the wait for the scheduler to place a build job.
	placeTimeout = 2 * time.Minute
	// maxResultSize bounds the slugbuilder's result JSON.
	maxResultSize = 1 << 20
	// logDrain is how long the build output may still arrive once the
	// build job's state is final.
	logDrain = 5 * time.Second
	// cleanupTimeout bounds the clean-up after a build.
	cleanupTimeout = 30 * time.Second
	// deployPollInterval is how often a build watches its deployment.
	deployPollInterval = time.Second
	// deployReportEvery is how often a waiting deployment says so.
	deployReportEvery = 15 * time.Second
)

// Blob paths of builds. Every path starts with the app's name after its
// kind, so deleting an app deletes its blobs by prefix.
const (
	SlugsPrefix  = "slugs/"  // slugs/<app>/<build>.tgz, referenced by releases
	BuildsPrefix = "builds/" // builds/<app>/<build>/{source.tar,result.json}, deleted after the build
)

// SlugPath is the blob of the slug of build id of app.
func SlugPath(app, id string) string { return SlugsPrefix + app + "/" + id + ".tgz" }

// Dir is the prefix of the blobs that build id of app keeps while it runs.
func Dir(app, id string) string { return BuildsPrefix + app + "/" + id + "/" }

// SourcePath is the blob of the source archive of build id of app.
func SourcePath(app, id string) string { return Dir(app, id) + "source.tar" }

func resultPath(app, id string) string { return Dir(app, id) + "result.json" }

// NewID returns a new build ID: 12 random hex digits.
func NewID() string {
	var b [6]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

// Store is the controller's state that a build reads and writes.
type Store interface {
	Config(ctx context.Context, app string) (map[string]string, error)
	// BuildHost returns the host of the app's last successful build job,
	// where its build cache is, or ""; SetBuildHost records it.
	BuildHost(ctx context.Context, app string) (string, error)
	SetBuildHost(ctx context.Context, app, host string) error
	DeployRelease(ctx context.Context, app string, r store.NewRelease) (types.Release, store.Deployment, error)
}

var _ Store = (*store.Store)(nil)

// Deployments is the controller's side of the deployment of a build's
// release.
type Deployments interface {
	// Released is called once the release is stored: the app is mirrored
	// into etcd, the deployer woken and the slugs no release needs
	// deleted. Failures are the callee's to log.
	Released(ctx context.Context, app string)
	// Deployment returns the API's view of a deployment of app;
	// store.ErrNotFound when the app is gone.
	Deployment(ctx context.Context, app, id string) (types.Deployment, error)
	// Changed returns a channel closed at the next change of a deployment.
	Changed() <-chan struct{}
}

// Hosts finds the host agents that run the build jobs.
type Hosts interface {
	// Host returns the record of a host, nil when it has none (its lease
	// expired).
	Host(ctx context.Context, id string) (*keyspace.Host, error)
	// Logs opens the output of a job on the agent at apiURL.
	Logs(ctx context.Context, apiURL, jobID string, opts hostclient.LogOptions) (*hostclient.LogStream, error)
}

// Outputs reads the files a build job left in the blobstore.
type Outputs interface {
	Get(ctx context.Context, path string) (blobstore.Blob, io.ReadCloser, error)
	Stat(ctx context.Context, path string) (blobstore.Blob, error)
}

// Cleaner removes what a build leaves in the blobstore.
type Cleaner interface {
	Delete(ctx context.Context, path string) error
	DeletePrefix(ctx context.Context, prefix string) (int, error)
	Vacuum(ctx context.Context) error
}

// Blobs is the blobstore as a build uses it.
type Blobs interface {
	Outputs
	Cleaner
}

var _ Blobs = (*blobstore.Store)(nil)

// Config is what a Builder needs. Every field is required unless it says
// otherwise.
type Config struct {
	// Etcd is the client of the cluster's etcd: the build job's formation
	// is put there, and its assignment and state watched.
	Etcd *clientv3.Client
	// Space is the cluster's key space.
	Space       keyspace.Space
	Store       Store
	Deployments Deployments
	Hosts       Hosts
	// Conns gives the connections that hold the build locks.
	Conns Conns
	// BuilderImage is the image of the build jobs; StackImage that of the
	// releases they make.
	BuilderImage, StackImage string
	// BuildEnv is added to the environment of every build job; nil adds
	// nothing.
	BuildEnv map[string]string
	// Memory is the memory limit of a build job, in bytes.
	Memory int64
	// Timeout bounds the build job, from its formation to its end.
	Timeout time.Duration
	// BlobURL returns the URL of a blob as the host agents reach it.
	BlobURL func(path string) string
	// WebURL returns where the router serves an app, or "".
	WebURL func(app string) string
	// Logger receives the builds' logs; nil discards them.
	Logger *slog.Logger
}

// Builder runs builds; it is safe for concurrent use.
type Builder struct {
	cfg Config
	log *slog.Logger
}

// New returns the Builder of cfg.
func New(cfg Config) *Builder {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Builder{cfg: cfg, log: log}
}

// Request is one build: a source archive already stored in Blobs.
type Request struct {
	App string
	// ID is the build's ID (NewID); the source is at SourcePath(App, ID).
	ID string
	// Commit is the git commit built, or "".
	Commit string
	Source blobstore.Blob
	Blobs  Blobs
}

// Run builds req, makes a release of the slug and follows its deployment,
// writing the progress to out, and returns the outcome (not yet written
// to out: see Output.Done). It always cleans up: the build job's
// formation goes (the agent stops and removes its container), and so do
// the source and the other blobs no release needs.
func (bd *Builder) Run(ctx context.Context, req Request, out *Output) types.Build {
	b := &buildRun{
		bd: bd, blobs: req.Blobs, out: out, app: req.App, id: req.ID, commit: req.Commit, source: req.Source,
		log: bd.log.With("app", req.App, "build", req.ID),
	}
	res := b.run(ctx)
	b.log.Info("build finished", "status", res.Status, "release", res.Release, "err", res.Error)
	return res
}

// Output writes the events of a build's answer (NDJSON
// types.BuildEvent), each flushed at once. It is safe for concurrent use;
// write errors (the client left) are ignored, since the request's context
// ends the build then.
type Output struct {
	mu  sync.Mutex
	enc *json.Encoder
	rc  *http.ResponseController
	// errorShown is set once the output holds an error line (" !     ").
	errorShown bool
}

func (o *Output) event(e types.BuildEvent) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if e.Event == types.BuildOutput && strings.HasPrefix(e.Text, " !") {
		o.errorShown = true
	}
	_ = o.enc.Encode(e)
	_ = o.rc.Flush()
}

// NewOutput returns the Output of the answer w, with its headers sent.
func NewOutput(w http.ResponseWriter) *Output {
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	o := &Output{enc: json.NewEncoder(w), rc: http.NewResponseController(w)}
	o.flush()
	return o
}

func (o *Output) flush() {
	o.mu.Lock()
	defer o.mu.Unlock()
	_ = o.rc.Flush()
}

// text sends one line of output.
func (o *Output) text(line string) {
	o.event(types.BuildEvent{Event: types.BuildOutput, Text: line})
}

// step sends a "-----> " line.
func (o *Output) step(format string, args ...any) {
	o.text("-----> " + fmt.Sprintf(format, args...))
}

// problem sends " !     " lines, one per line of the message.
func (o *Output) problem(format string, args ...any) {
	for line := range strings.SplitSeq(fmt.Sprintf(format, args...), "\n") {
		o.text(" !     " + line)
	}
}

// Done writes the outcome of the build, the answer's last event.
func (o *Output) Done(b types.Build) {
	o.event(types.BuildEvent{Event: types.BuildDone, Build: &b})
}

func (o *Output) sawError() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.errorShown
}

// buildRun is one build: from the stored source to the deployed release.
type buildRun struct {
	bd     *Builder
	blobs  Blobs
	out    *Output
	log    *slog.Logger
	app    string
	id     string
	commit string
	source blobstore.Blob

	// formation is the etcd key of the build job's formation, once put.
	formation string
	// host is the ID of the host the build job was placed on, once
	// placed.
	host string
	// released is set once a release references the slug.
	released bool
	// stderr keeps the last lines the build job wrote on stderr (its
	// operational logs), shown when it fails without saying why.
	stderrMu sync.Mutex
	stderr   []string
}

// buildFailure is a failed build's outcome.
type buildFailure struct{ err *types.Error }

func (f *buildFailure) Error() string { return f.err.Error() }

// failed returns the failure of code e with a message.
func failed(e *types.Error, format string, args ...any) error {
	return &buildFailure{err: e.WithMessage(format, args...)}
}

// run builds, releases and deploys, and returns the outcome. It always
// cleans up: the build job's formation goes (the agent stops and removes
// its container), and so do the source and the other blobs no release
// needs.
func (b *buildRun) run(ctx context.Context) types.Build {
	res := types.Build{ID: b.id, App: b.app, Commit: b.commit, Status: types.BuildFailed}
	err := func() error {
		// The lock covers the deployment too: a second build waits until
		// the first one's release is up (or has failed), and until the
		// first one is cleaned up.
		unlock, err := b.bd.lock(ctx, b.app, func() {
			b.out.step("Waiting for another build of %s to finish...", b.app)
		})
		if err != nil {
			b.cleanup(ctx)
			return err
		}
		defer unlock()
		defer b.cleanup(ctx)
		dep, err := b.buildAndRelease(ctx, &res)
		if err != nil {
			return err
		}
		return b.deploy(ctx, dep, &res)
	}()
	res.Host = b.host
	var f *buildFailure
	var invalid *types.Error
	switch {
	case err == nil:
		res.Status = types.BuildSucceeded
	case errors.As(err, &f):
		res.Error = f.err
	case errors.As(err, &invalid) && errors.Is(err, types.ErrInvalid):
		// The release could not be made of the app's state (a config over
		// the limit).
		b.out.problem("%s", invalid.Message)
		res.Error = types.ErrBuildFailed.WithMessage("%s", invalid.Message)
	case ctx.Err() != nil:
		res.Error = types.ErrBuildFailed.WithMessage("the build was cancelled")
	case errors.Is(err, etcdkv.ErrUnreachable):
		b.log.Warn("build failed: etcd unreachable", "err", err)
		res.Error = types.ErrUnavailable.WithMessage("etcd is unreachable; try again when it is back")
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, blobstore.ErrUnavailable):
		b.log.Warn("build failed: PostgreSQL unreachable", "err", err)
		res.Error = types.ErrUnavailable.WithMessage("PostgreSQL is unreachable; try again when it is back")
	default:
		b.log.Error("build failed", "err", err)
		res.Error = types.ErrInternal
	}
	return res
}

// buildAndRelease runs the build job and creates the release of its slug.
func (b *buildRun) buildAndRelease(ctx context.Context, res *types.Build) (store.Deployment, error) {
	result, err := b.runJob(ctx)
	if err != nil {
		return store.Deployment{}, err
	}
	if err := types.ValidateProcesses(result.ProcessTypes); err != nil {
		var e *types.Error
		msg := err.Error()
		if errors.As(err, &e) {
			msg = e.Message
		}
		b.out.problem("Invalid process types: %s", msg)
		return store.Deployment{}, failed(types.ErrBuildFailed, "invalid process types: %s", msg)
	}
	processes := map[string]types.Process{}
	for typ, cmd := range result.ProcessTypes {
		processes[typ] = types.Process{Command: cmd}
	}
	if len(processes) == 0 {
		b.out.problem("The app defines no process types: add a Procfile, e.g. \"web: ./server\"")
		return store.Deployment{}, failed(types.ErrBuildFailed, "no process types: add a Procfile")
	}
	if ctx.Err() != nil {
		return store.Deployment{}, ctx.Err()
	}
	description := "push (build " + b.id + ")"
	if b.commit != "" {
		description = "push of commit " + b.commit[:min(7, len(b.commit))]
	}
	rel, dep, err := b.bd.cfg.Store.DeployRelease(ctx, b.app, store.NewRelease{
		Description: description,
		Image:       b.bd.cfg.StackImage,
		Slug:        result.SlugDigest,
		SlugPath:    SlugPath(b.app, b.id),
		Processes:   processes,
	})
	if err != nil {
		return store.Deployment{}, fmt.Errorf("create the release: %w", err)
	}
	b.released = true
	res.Release = rel.Version
	b.log.Info("release created", "release", rel.Version, "slug", result.SlugDigest, "deployment", dep.Status)
	b.out.step("Creating release v%d", rel.Version)
	// The deployment runs whether or not the client stays.
	b.bd.cfg.Deployments.Released(context.WithoutCancel(ctx), b.app)
	return dep, nil
}

// runJob runs the build job and returns the slugbuilder's result, with
// the slug stored.
func (b *buildRun) runJob(ctx context.Context) (slugtypes.Result, error) {
	config, err := b.bd.cfg.Store.Config(ctx, b.app)
	if err != nil {
		return slugtypes.Result{}, err
	}
	spec := b.jobSpec(config)
	// The build runs where the last one did, to find the app's build
	// cache there; the preference is soft: without it the build runs
	// elsewhere, cold.
	spec.PreferHost, err = b.bd.cfg.Store.BuildHost(ctx, b.app)
	if err != nil {
		b.log.Warn("read the host of the app's build cache", "err", err)
	}
	ctx, cancel := context.WithTimeout(ctx, b.bd.cfg.Timeout)
	defer cancel()
	key := b.bd.cfg.Space.Formation(b.app, spec.Release, Type)
	b.formation = key
	if err := etcdkv.Put(ctx, b.bd.cfg.Etcd, key, etcdkv.MustJSON(keyspace.Formation{
		App: b.app, Release: spec.Release, Type: Type, Count: 1, Template: spec, UpdatedAt: time.Now().UTC(),
	})); err != nil {
		return slugtypes.Result{}, err
	}
	st, err := b.follow(ctx)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
			b.out.problem("The build did not finish within %s", b.bd.cfg.Timeout)
			return slugtypes.Result{}, failed(types.ErrBuildFailed, "the build timed out after %s", b.bd.cfg.Timeout)
		}
		return slugtypes.Result{}, err
	}
	if st.State != keyspace.StateDown {
		return slugtypes.Result{}, b.jobFailed(st)
	}
	// The job has left its cache on its host: the next build goes there.
	if err := b.bd.cfg.Store.SetBuildHost(ctx, b.app, b.host); err != nil {
		b.log.Warn("record the host of the app's build cache", "host", b.host, "err", err)
	}
	return b.readResult(ctx)
}

// jobSpec is the build job: `gantryd slugbuilder` on the builder image, as
// the image's unprivileged user, with the source mounted, the app's
// build-cache volume of the building host as its CACHE_DIR, and the slug
// and the result uploaded afterwards.
func (b *buildRun) jobSpec(config map[string]string) keyspace.JobSpec {
	cfg := b.bd.cfg
	env := map[string]string{}
	maps.Copy(env, cfg.BuildEnv)
	// Only warnings of the builder's own logs: its output is the build's.
	env["GANTRY_LOG_LEVEL"] = "warn"
	for name, value := range config {
		env[slugtypes.EnvConfigVarPrefix+name] = value
	}
	if u, ok := config[slugtypes.EnvBuildpackURL]; ok {
		env[slugtypes.EnvBuildpackURL] = u
	}
	env[slugtypes.EnvCacheDir] = slugtypes.CacheDir
	artifacts := []keyspace.Artifact{{URL: cfg.BlobURL(b.source.Path), Digest: b.source.Digest, Path: slugtypes.SourcePath}}
	return keyspace.JobSpec{
		App:         b.app,
		Release:     ReleasePrefix + b.id,
		Type:        Type,
		Image:       cfg.BuilderImage,
		Cmd:         []string{types.GantrydPath, "slugbuilder"},
		Env:         env,
		Resources:   keyspace.Resources{Memory: cfg.Memory, PIDs: buildPIDs},
		StopTimeout: buildStopTimeout,
		User:        types.AppUser,
		Artifacts:   artifacts,
		Outputs: []keyspace.Output{
			{Path: slugtypes.SlugPath, URL: cfg.BlobURL(SlugPath(b.app, b.id))},
			{Path: slugtypes.ResultPath, URL: cfg.BlobURL(resultPath(b.app, b.id))},
		},
		Volumes:      []keyspace.Volume{{Name: buildCacheVolume, Path: slugtypes.CacheDir}},
		MountGantryd: true,
		OneOff:       true,
	}
}

// jobFailed reports a build job that crashed, and returns the failure.
func (b *buildRun) jobFailed(st keyspace.JobState) error {
	switch {
	case st.Error == "out of memory":
		b.out.problem("The build ran out of memory (its limit is %d MiB)", b.bd.cfg.Memory>>20)
	case strings.HasPrefix(st.Error, "image not found"):
		b.out.problem("%s: the builder image is missing on host %s (gantryd stack build makes it)", st.Error, st.HostID)
	case st.Error != "":
		b.out.problem("%s", st.Error)
	}
	if !b.out.sawError() {
		// The builder said nothing about the failure on its output; its
		// own logs may.
		b.stderrMu.Lock()
		lines := slices.Clone(b.stderr)
		b.stderrMu.Unlock()
		for _, l := range lines {
			b.out.problem("%s", l)
		}
	}
	if st.ExitCode != nil && *st.ExitCode != 0 {
		return failed(types.ErrBuildFailed, "the build failed (exit status %d)", *st.ExitCode)
	}
	return failed(types.ErrBuildFailed, "the build failed")
}

// readResult reads the slugbuilder's result and checks it against the
// stored slug.
func (b *buildRun) readResult(ctx context.Context) (slugtypes.Result, error) {
	_, rc, err := b.blobs.Get(ctx, resultPath(b.app, b.id))
	if err != nil {
		return slugtypes.Result{}, fmt.Errorf("read the build result: %w", err)
	}
	defer rc.Close()
	var res slugtypes.Result
	if err := json.NewDecoder(io.LimitReader(rc, maxResultSize)).Decode(&res); err != nil {
		return slugtypes.Result{}, fmt.Errorf("decode the build result: %w", err)
	}
	slug, err := b.blobs.Stat(ctx, SlugPath(b.app, b.id))
	if err != nil {
		return slugtypes.Result{}, fmt.Errorf("the slug: %w", err)
	}
	if slug.Digest != res.SlugDigest {
		return slugtypes.Result{}, fmt.Errorf("the stored slug has digest %s, the build made %s", slug.Digest, res.SlugDigest)
	}
	return res, nil
}

// cleanup removes the build job's formation and the blobs no release
// needs, whether or not the client is still there.
func (b *buildRun) cleanup(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if b.formation != "" {
		if err := etcdkv.Delete(ctx, b.bd.cfg.Etcd, b.formation); err != nil {
			b.log.Warn("remove the build job's formation", "key", b.formation, "err", err)
		}
	}
	if _, err := b.blobs.DeletePrefix(ctx, Dir(b.app, b.id)); err != nil {
		b.log.Warn("delete the build's blobs", "err", err)
	}
	if !b.released {
		if err := b.blobs.Delete(ctx, SlugPath(b.app, b.id)); err != nil && !errors.Is(err, blobstore.ErrNotFound) {
			b.log.Warn("delete blob", "path", SlugPath(b.app, b.id), "err", err)
		}
	}
	// The build's source and result, and the slugs pruned after its
	// release, leave dead pages; reusing them keeps the database at the
	// size of the kept slugs whatever the number of builds.
	if err := b.blobs.Vacuum(ctx); err != nil {
		b.log.Warn("vacuum the blobs' large objects", "err", err)
	}
}
