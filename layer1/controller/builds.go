package controller

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"

	"github.com/jackc/pgx/v5/pgxpool"

	hostclient "github.com/gantryhq/gantry/layer0/host/client"
	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer1/blobstore"
	"github.com/gantryhq/gantry/layer1/controller/build"
	"github.com/gantryhq/gantry/layer1/controller/store"
	"github.com/gantryhq/gantry/layer1/controller/types"
)

// MaxSourceSize is the largest source archive a build accepts, in bytes.
const MaxSourceSize = 1 << 30

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
	id := build.NewID()
	body := &bodyReader{r: r.Body}
	src, err := blobs.Put(r.Context(), build.SourcePath(app, id), body, MaxSourceSize)
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
		s.deleteBlob(r.Context(), build.SourcePath(app, id))
		writeError(w, types.ErrInvalid.WithMessage("the source archive is empty; send a tar archive of the app's source (git archive)"))
		return
	}

	out := build.NewOutput(w)
	res := s.builder.Run(r.Context(), build.Request{App: app, ID: id, Commit: commit, Source: src, Blobs: blobs}, out)
	out.Done(res)
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

// newBuilder returns the build orchestrator of s (see package build).
func (s *Server) newBuilder() *build.Builder {
	return build.New(build.Config{
		Etcd:         s.cfg.Etcd,
		Space:        s.space,
		Store:        s.store,
		Deployments:  buildDeployments{s},
		Hosts:        buildHosts{s},
		Conns:        lockConns{s},
		BuilderImage: s.cfg.BuilderImage,
		StackImage:   s.cfg.StackImage,
		BuildEnv:     s.cfg.BuildEnv,
		Memory:       s.cfg.buildMemory(),
		Timeout:      s.cfg.buildTimeout(),
		BlobURL:      s.cfg.blobURL,
		WebURL:       s.cfg.webURL,
		Logger:       s.log,
	})
}

// buildDeployments is the controller's side of the deployment of a
// build's release.
type buildDeployments struct{ s *Server }

var _ build.Deployments = buildDeployments{}

// Released mirrors app into etcd, wakes the deployer and deletes the
// slugs no kept release needs.
func (d buildDeployments) Released(ctx context.Context, app string) {
	if err := d.s.mirror.SyncApp(ctx, app); err != nil {
		d.s.log.Warn("mirror to etcd failed; the periodic re-sync retries", "app", app, "err", err)
	}
	d.s.deployer.Poke()
	if _, err := d.s.collector.PruneSlugs(ctx, app); err != nil {
		d.s.log.Warn("delete old slugs", "app", app, "err", err)
	}
}

// Deployment returns the API's view of the deployment id of app.
func (d buildDeployments) Deployment(ctx context.Context, app, id string) (types.Deployment, error) {
	dep, err := d.s.store.GetDeployment(ctx, app, id)
	if err != nil {
		return types.Deployment{}, err
	}
	return d.s.wireDeployment(dep), nil
}

// Changed returns a channel closed at the next change of a deployment.
func (d buildDeployments) Changed() <-chan struct{} { return d.s.deployer.Changed() }

// buildHosts finds the host agents of build jobs in etcd.
type buildHosts struct{ s *Server }

var _ build.Hosts = buildHosts{}

// Host returns the record of host id, or nil when it has none.
func (h buildHosts) Host(ctx context.Context, id string) (*keyspace.Host, error) {
	return h.s.readHost(ctx, id)
}

// Logs opens the output of job on the agent at apiURL.
func (h buildHosts) Logs(ctx context.Context, apiURL, job string, opts hostclient.LogOptions) (*hostclient.LogStream, error) {
	return h.s.hosts.get(apiURL).Logs(ctx, job, opts)
}

// lockConns gives the connections that hold the controllers' locks
// (package pglock): the builds' and the certificates'.
type lockConns struct{ s *Server }

var _ build.Conns = lockConns{}

// Acquire returns a connection of the blobstore's pool, opening it when
// needed.
func (c lockConns) Acquire(ctx context.Context) (*pgxpool.Conn, error) {
	if _, err := c.s.blobStore(ctx); err != nil {
		return nil, err
	}
	c.s.blobs.mu.Lock()
	pool := c.s.blobs.pool
	c.s.blobs.mu.Unlock()
	if pool == nil {
		return nil, store.ErrUnavailable
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	}
	return conn, nil
}
