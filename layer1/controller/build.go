package controller

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer1/blobstore"
	"github.com/gantryhq/gantry/layer1/controller/etcdkv"
	"github.com/gantryhq/gantry/layer1/controller/store"
	"github.com/gantryhq/gantry/layer1/controller/types"
	slugtypes "github.com/gantryhq/gantry/slugbuilder/types"
)

// Limits and timings of builds.
const (
	// MaxSourceSize is the largest source archive a build accepts, in
	// bytes.
	MaxSourceSize = 1 << 30
	// BuildType is the process type of build jobs: their job IDs are
	// <app>.build.1.<hex>.
	BuildType = "build"
	// buildReleasePrefix starts the release segment of a build's
	// formation key (formations/<app>/build-<id>/build).
	buildReleasePrefix = "build-"
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
	// lockPoll is how often a waiting build tries the app's build lock.
	lockPoll = time.Second
	// logDrain is how long the build output may still arrive once the
	// build job's state is final.
	logDrain = 5 * time.Second
	// cleanupTimeout bounds the clean-up after a build.
	cleanupTimeout = 30 * time.Second
	// deployPollInterval is how often a build watches its deployment.
	deployPollInterval = time.Second
	// deployReportEvery is how often a waiting deployment says so.
	deployReportEvery = 15 * time.Second
	// lastLines is how many lines of a job's output a failure shows.
	lastLines = 10
	// buildLockSpace is the first key of the PostgreSQL advisory locks
	// that serialise the builds of an app ("buil"); the second is a hash
	// of the app's name.
	buildLockSpace int32 = 0x6275696c
)

// commitPattern matches the commit a build request may name.
var commitPattern = regexp.MustCompile(`^[0-9a-f]{4,64}$`)

// build builds the source archive in the request body into a slug, makes
// it a release and deploys it (POST /v1/apps/{app}/builds). The source is
// stored first; then the answer is a stream of types.BuildEvent (NDJSON)
// that ends with the outcome. See docs/API.md.
func (s *Server) build(w http.ResponseWriter, r *http.Request) {
	app := r.PathValue("app")
	commit := r.URL.Query().Get("commit")
	if commit != "" && !commitPattern.MatchString(commit) {
		writeError(w, types.ErrInvalid.WithMessage("commit %q is not a git object ID (4 to 64 lower-case hex digits)", commit))
		return
	}
	if _, err := s.store.GetApp(r.Context(), app); err != nil {
		s.fail(w, r, err)
		return
	}
	if s.cfg.BuilderImage == "" || s.cfg.StackImage == "" || s.cfg.InternalURL == "" {
		writeError(w, types.ErrUnavailable.WithMessage("this controller runs no builds: it has no builder image, stack image or internal URL configured"))
		return
	}
	blobs, err := s.blobStore(r.Context())
	if err != nil {
		s.failBlob(w, r, err)
		return
	}
	id := newBuildID()
	body := &bodyReader{r: r.Body}
	src, err := blobs.Put(r.Context(), sourcePath(app, id), body, MaxSourceSize)
	switch {
	case errors.Is(err, blobstore.ErrTooLarge):
		writeError(w, types.ErrTooLarge.WithMessage("the source archive is larger than %d bytes", MaxSourceSize))
		return
	case err != nil && (body.err != nil || r.Context().Err() != nil):
		s.log.Warn("source upload interrupted", "app", app, "err", err)
		writeError(w, types.ErrBadRequest.WithMessage("the upload of the source archive was interrupted"))
		return
	case err != nil:
		s.failBlob(w, r, err)
		return
	case src.Size == 0:
		s.deleteBlob(r.Context(), sourcePath(app, id))
		writeError(w, types.ErrInvalid.WithMessage("the source archive is empty; send a tar archive of the app's source (git archive)"))
		return
	}

	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	out := &buildOutput{enc: json.NewEncoder(w), rc: http.NewResponseController(w)}
	out.flush()
	b := &buildRun{
		s: s, blobs: blobs, out: out, app: app, id: id, commit: commit, source: src,
		log: s.log.With("app", app, "build", id),
	}
	res := b.run(r.Context())
	b.log.Info("build finished", "status", res.Status, "release", res.Release, "err", res.Error)
	out.done(res)
}

// bodyReader remembers the error of the request body, so that a failed
// upload is told apart from a failure of the store.
type bodyReader struct {
	r   io.Reader
	err error
}

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF {
		b.err = err
	}
	return n, err
}

func newBuildID() string {
	var b [6]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

// buildOutput writes the events of a build's answer, each flushed at once.
// It is safe for concurrent use; write errors (the client left) are
// ignored, since the request's context ends the build then.
type buildOutput struct {
	mu  sync.Mutex
	enc *json.Encoder
	rc  *http.ResponseController
	// errorShown is set once the output holds an error line (" !     ").
	errorShown bool
}

func (o *buildOutput) event(e types.BuildEvent) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if e.Event == types.BuildOutput && strings.HasPrefix(e.Text, " !") {
		o.errorShown = true
	}
	_ = o.enc.Encode(e)
	_ = o.rc.Flush()
}

func (o *buildOutput) flush() {
	o.mu.Lock()
	defer o.mu.Unlock()
	_ = o.rc.Flush()
}

// text sends one line of output.
func (o *buildOutput) text(line string) {
	o.event(types.BuildEvent{Event: types.BuildOutput, Text: line})
}

// step sends a "-----> " line.
func (o *buildOutput) step(format string, args ...any) {
	o.text("-----> " + fmt.Sprintf(format, args...))
}

// problem sends " !     " lines, one per line of the message.
func (o *buildOutput) problem(format string, args ...any) {
	for line := range strings.SplitSeq(fmt.Sprintf(format, args...), "\n") {
		o.text(" !     " + line)
	}
}

func (o *buildOutput) done(b types.Build) {
	o.event(types.BuildEvent{Event: types.BuildDone, Build: &b})
}

func (o *buildOutput) sawError() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.errorShown
}

// buildRun is one build: from the stored source to the deployed release.
type buildRun struct {
	s      *Server
	blobs  *blobstore.Store
	out    *buildOutput
	log    *slog.Logger
	app    string
	id     string
	commit string
	source blobstore.Blob

	// formation is the etcd key of the build job's formation, once put.
	formation string
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
		unlock, err := b.s.lockBuild(ctx, b.app, func() {
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
	rel, dep, err := b.s.store.DeployRelease(ctx, b.app, store.NewRelease{
		Description: description,
		Image:       b.s.cfg.StackImage,
		Slug:        result.SlugDigest,
		SlugPath:    slugPath(b.app, b.id),
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
	sctx := context.WithoutCancel(ctx)
	if err := b.s.mirror.SyncApp(sctx, b.app); err != nil {
		b.log.Warn("mirror to etcd failed; the periodic re-sync retries", "err", err)
	}
	b.s.deployer.Poke()
	if _, err := b.s.pruneSlugs(sctx, b.app); err != nil {
		b.log.Warn("delete old slugs", "err", err)
	}
	return dep, nil
}

// runJob runs the build job and returns the slugbuilder's result, with
// the slug stored.
func (b *buildRun) runJob(ctx context.Context) (slugtypes.Result, error) {
	config, err := b.s.store.Config(ctx, b.app)
	if err != nil {
		return slugtypes.Result{}, err
	}
	spec := b.jobSpec(config)
	ctx, cancel := context.WithTimeout(ctx, b.s.cfg.buildTimeout())
	defer cancel()
	key := b.s.space.Formation(b.app, spec.Release, BuildType)
	b.formation = key
	if err := etcdkv.Put(ctx, b.s.cfg.Etcd, key, etcdkv.MustJSON(keyspace.Formation{
		App: b.app, Release: spec.Release, Type: BuildType, Count: 1, Template: spec, UpdatedAt: time.Now().UTC(),
	})); err != nil {
		return slugtypes.Result{}, err
	}
	st, err := b.follow(ctx)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
			b.out.problem("The build did not finish within %s", b.s.cfg.buildTimeout())
			return slugtypes.Result{}, failed(types.ErrBuildFailed, "the build timed out after %s", b.s.cfg.buildTimeout())
		}
		return slugtypes.Result{}, err
	}
	if st.State != keyspace.StateDown {
		return slugtypes.Result{}, b.jobFailed(st)
	}
	return b.readResult(ctx)
}

// jobSpec is the build job: `gantryd slugbuilder` on the builder image, as
// the image's unprivileged user, with the source mounted, the app's
// build-cache volume of the building host as its CACHE_DIR, and the slug
// and the result uploaded afterwards.
func (b *buildRun) jobSpec(config map[string]string) keyspace.JobSpec {
	cfg := b.s.cfg
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
	artifacts := []keyspace.Artifact{{URL: cfg.blobURL(b.source.Path), Digest: b.source.Digest, Path: slugtypes.SourcePath}}
	return keyspace.JobSpec{
		App:         b.app,
		Release:     buildReleasePrefix + b.id,
		Type:        BuildType,
		Image:       cfg.BuilderImage,
		Cmd:         []string{types.GantrydPath, "slugbuilder"},
		Env:         env,
		Resources:   keyspace.Resources{Memory: cfg.buildMemory(), PIDs: buildPIDs},
		StopTimeout: buildStopTimeout,
		User:        types.AppUser,
		Artifacts:   artifacts,
		Outputs: []keyspace.Output{
			{Path: slugtypes.SlugPath, URL: cfg.blobURL(slugPath(b.app, b.id))},
			{Path: slugtypes.ResultPath, URL: cfg.blobURL(resultPath(b.app, b.id))},
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
		b.out.problem("The build ran out of memory (its limit is %d MiB)", b.s.cfg.buildMemory()>>20)
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
	slug, err := b.blobs.Stat(ctx, slugPath(b.app, b.id))
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
		if err := etcdkv.Delete(ctx, b.s.cfg.Etcd, b.formation); err != nil {
			b.log.Warn("remove the build job's formation", "key", b.formation, "err", err)
		}
	}
	if _, err := b.blobs.DeletePrefix(ctx, buildDir(b.app, b.id)); err != nil {
		b.log.Warn("delete the build's blobs", "err", err)
	}
	if !b.released {
		b.s.deleteBlob(ctx, slugPath(b.app, b.id))
	}
	// The build's source and result, and the slugs pruned after its
	// release, leave dead pages; reusing them keeps the database at the
	// size of the kept slugs whatever the number of builds.
	if err := b.blobs.Vacuum(ctx); err != nil {
		b.log.Warn("vacuum the blobs' large objects", "err", err)
	}
}

// deleteBlob deletes a blob that may not exist, logging a failure.
func (s *Server) deleteBlob(ctx context.Context, path string) {
	st, err := s.blobStore(ctx)
	if err == nil {
		err = st.Delete(ctx, path)
	}
	if err != nil && !errors.Is(err, blobstore.ErrNotFound) {
		s.log.Warn("delete blob", "path", path, "err", err)
	}
}

// lockBuild takes the app's build lock, a PostgreSQL advisory lock held by
// a connection of its own, so that one build of an app runs at a time
// across all controllers; a controller that dies releases it with its
// connection. When another build holds it, waiting is called once and the
// lock is tried every lockPoll until ctx ends.
func (s *Server) lockBuild(ctx context.Context, app string, waiting func()) (unlock func(), err error) {
	if _, err := s.blobStore(ctx); err != nil {
		return nil, err
	}
	s.blobs.mu.Lock()
	pool := s.blobs.pool
	s.blobs.mu.Unlock()
	if pool == nil {
		return nil, fmt.Errorf("build lock: %w", store.ErrUnavailable)
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("build lock: %w: %w", store.ErrUnavailable, err)
	}
	h := fnv.New32a()
	h.Write([]byte(app))
	key := int32(h.Sum32())
	try := func() (bool, error) {
		qctx, cancel := context.WithTimeout(ctx, etcdkv.Timeout)
		defer cancel()
		var ok bool
		err := conn.QueryRow(qctx, `SELECT pg_try_advisory_lock($1::int4, $2::int4)`, buildLockSpace, key).Scan(&ok)
		if err != nil {
			return false, fmt.Errorf("build lock: %w: %w", store.ErrUnavailable, err)
		}
		return ok, nil
	}
	ok, err := try()
	if err == nil && !ok {
		waiting()
		tick := time.NewTicker(lockPoll)
		defer tick.Stop()
		for err == nil && !ok {
			select {
			case <-ctx.Done():
				err = ctx.Err()
			case <-tick.C:
				ok, err = try()
			}
		}
	}
	if err != nil {
		// A query cut off by ctx may leave the connection unusable; the
		// pool drops it, and with it any lock.
		conn.Release()
		return nil, err
	}
	return func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), etcdkv.Timeout)
		defer cancel()
		var released bool
		if err := conn.QueryRow(uctx, `SELECT pg_advisory_unlock($1::int4, $2::int4)`, buildLockSpace, key).Scan(&released); err != nil || !released {
			// Closing the session releases the lock for sure.
			s.log.Warn("release the build lock; closing its connection", "app", app, "err", err)
			_ = conn.Conn().Close(uctx)
		}
		conn.Release()
	}, nil
}
