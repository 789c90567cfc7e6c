package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/docker/docker/client"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sync/singleflight"

	hostclient "github.com/gantryhq/gantry/layer0/host/client"
	"github.com/gantryhq/gantry/layer0/keyspace"
)

// Agents hand images to each other: no registry exists, and an image made
// on one host (an image release's, the platform's) is needed on every host
// a job of it is placed on. GET /v1/images/save streams `docker save` of a
// local image; a job whose image the engine lacks has it fetched from the
// other hosts (imageFetcher) before its container is created.
const (
	// imageTransferTimeout bounds one fetch of an image, every host asked
	// included, and one archive the API sends.
	imageTransferTimeout = 10 * time.Minute
	// imageStallTimeout gives up on a host that sends nothing for this
	// long, and asks the next one.
	imageStallTimeout = time.Minute
	// maxImageRef bounds the length of an image reference the API takes.
	maxImageRef = 512
	// maxHostReason bounds each host's part of a failed fetch's message.
	maxHostReason = 240
)

// Reasons a fetch, or its try of one host, ends.
var (
	errNoPeers      = errors.New("no other host is registered")
	errFetchTimeout = errors.New("out of time")
	errStalled      = errors.New("no data for " + imageStallTimeout.String())
)

// validImageRef checks that ref is one image reference, as Docker names
// images: NAME[:TAG][@DIGEST], or an image ID.
func validImageRef(ref string) error {
	if ref == "" || len(ref) > maxImageRef {
		return fmt.Errorf("ref must be an image reference of 1 to %d bytes", maxImageRef)
	}
	if _, err := reference.ParseAnyReference(ref); err != nil {
		return fmt.Errorf("ref %q is not an image reference: %v", ref, err)
	}
	return nil
}

// saveImage answers GET /v1/images/save?ref=REF with `docker save` of the
// local image REF (see client.SaveImage): 404 when the engine lacks it. The
// status is sent before the save begins; how the archive ended is in the
// trailer client.SaveResultTrailer.
func (a *agent) saveImage(w http.ResponseWriter, r *http.Request) {
	ref := r.URL.Query().Get("ref")
	if err := validImageRef(ref); err != nil {
		writeError(w, hostclient.NewError(hostclient.ErrBadRequest, "%v", err))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), imageTransferTimeout)
	defer cancel()
	tctx, tcancel := context.WithTimeout(ctx, dockerTimeout)
	_, err := a.docker.ImageInspect(tctx, ref)
	tcancel()
	switch {
	case cerrdefs.IsNotFound(err):
		writeError(w, hostclient.NewError(hostclient.ErrImageNotFound, "no image %s on host %s", ref, a.cfg.ID))
		return
	case err != nil:
		a.log.Warn("inspect image to save", "image", ref, "err", err)
		writeError(w, hostclient.NewError(hostclient.ErrUnavailable, "docker: cannot inspect image %s", ref))
		return
	}
	rc := http.NewResponseController(w)
	if err := rc.SetWriteDeadline(time.Now().Add(imageTransferTimeout)); err != nil {
		a.log.Debug("image save: no write deadline", "err", err)
	}
	w.Header().Set("Content-Type", "application/x-tar")
	w.Header().Set("Trailer", hostclient.SaveResultTrailer)
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return
	}
	start := time.Now()
	n, err := a.copyImage(ctx, w, ref)
	result := hostclient.SaveResultOK
	if err != nil {
		a.log.Warn("image save failed", "image", ref, "bytes", n, "err", err)
		result = headerSafe(err.Error())
	} else {
		a.log.Info("image sent", "image", ref, "bytes", n, "took", time.Since(start).Round(time.Millisecond))
	}
	w.Header().Set(hostclient.SaveResultTrailer, result)
}

// copyImage copies `docker save` of ref to w.
func (a *agent) copyImage(ctx context.Context, w io.Writer, ref string) (int64, error) {
	archive, err := a.docker.ImageSave(ctx, []string{ref})
	if err != nil {
		return 0, fmt.Errorf("docker save: %w", err)
	}
	defer archive.Close()
	n, err := io.Copy(w, archive)
	if err != nil {
		return n, fmt.Errorf("docker save, after %d bytes: %w", n, err)
	}
	return n, nil
}

// headerSafe makes s fit in a header value: one line of printable ASCII.
func headerSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r > '~' {
			return ' '
		}
		return r
	}, s)
}

// imageFetcher loads into the engine the images that its jobs need and
// that only other hosts have. Concurrent fetches of one reference share
// one transfer.
type imageFetcher struct {
	self   string // this host's ID: never asked
	space  keyspace.Space
	etcd   *clientv3.Client
	docker *client.Client
	token  string
	log    *slog.Logger
	spawn  func(func()) // runs a goroutine the agent waits for on return

	group singleflight.Group

	mu      sync.Mutex
	clients map[string]*hostclient.Client // by API URL
}

// fetchError is a fetch that no host could serve: why each one failed.
// Its message starts as the one of a job whose image no host has.
type fetchError struct {
	ref      string
	tries    []hostTry
	timedOut bool
}

// hostTry is one host asked for an image, and why it failed.
type hostTry struct {
	host string
	err  error
}

func (e *fetchError) Error() string {
	var b strings.Builder
	b.WriteString("image not found: " + e.ref + "; asked ")
	for i, t := range e.tries {
		if i > 0 {
			b.WriteString(", ")
		}
		reason := hostReason(t.err)
		if len(reason) > maxHostReason {
			reason = strings.ToValidUTF8(reason[:maxHostReason], "") + "..."
		}
		b.WriteString("host " + t.host + ": " + reason)
	}
	if e.timedOut {
		b.WriteString("; gave up after " + imageTransferTimeout.String())
	}
	return b.String()
}

// hostReason says why a host could not send an image.
func hostReason(err error) string {
	var apiErr *hostclient.Error
	var urlErr *url.Error
	switch {
	case errors.Is(err, hostclient.ErrImageNotFound):
		return "does not have it"
	case errors.As(err, &apiErr):
		return fmt.Sprintf("%s (%d %s)", apiErr.Message, apiErr.Status, apiErr.Code)
	case errors.As(err, &urlErr):
		return "cannot reach its API: " + urlErr.Err.Error()
	}
	return err.Error()
}

// fetch makes image ref present in the engine, loading it from the first
// other host that can send it. It returns the host it came from ("" when
// the image was found meanwhile), errNoPeers when no other host is
// registered, a *fetchError when every host failed, and other errors (etcd
// unreachable, the agent stopping, stop closed) for the caller to retry.
// ctx is the agent's: it and imageTransferTimeout bound the transfer, which
// other callers share; stop ends only this caller's wait.
func (f *imageFetcher) fetch(ctx context.Context, ref string, stop <-chan struct{}) (string, error) {
	type result struct {
		from string
		err  error
	}
	done := make(chan result, 1)
	f.spawn(func() {
		from, err, _ := f.group.Do(ref, func() (any, error) {
			tctx, cancel := context.WithTimeoutCause(ctx, imageTransferTimeout, errFetchTimeout)
			defer cancel()
			return f.fetchOnce(tctx, ref)
		})
		done <- result{from.(string), err}
	})
	select {
	case r := <-done:
		return r.from, r.err
	case <-stop:
		return "", fmt.Errorf("fetch image %s: the job is stopping", ref)
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// fetchOnce asks the other hosts for ref, one at a time, healthy ones
// first, and loads the first archive that comes whole.
func (f *imageFetcher) fetchOnce(ctx context.Context, ref string) (string, error) {
	// A transfer that ended just before this one began may have brought it.
	if ok, err := f.present(ctx, ref); err != nil || ok {
		return "", err
	}
	hosts, err := f.peers(ctx)
	if err != nil {
		return "", err
	}
	if len(hosts) == 0 {
		return "", errNoPeers
	}
	f.log.Info("image not in the engine; fetching it from another host", "image", ref, "hosts", len(hosts))
	ferr := &fetchError{ref: ref}
	for _, h := range hosts {
		start := time.Now()
		n, err := f.fetchFrom(ctx, h, ref)
		if err == nil {
			f.log.Info("image fetched", "image", ref, "from", h.ID, "bytes", n, "took", time.Since(start).Round(time.Millisecond))
			return h.ID, nil
		}
		if ctx.Err() != nil {
			if !errors.Is(context.Cause(ctx), errFetchTimeout) {
				return "", fmt.Errorf("fetch image %s: %w", ref, ctx.Err())
			}
			ferr.tries = append(ferr.tries, hostTry{h.ID, errFetchTimeout})
			ferr.timedOut = true
			break
		}
		f.log.Warn("cannot fetch image from host; asking the next", "image", ref, "from", h.ID, "err", err)
		ferr.tries = append(ferr.tries, hostTry{h.ID, err})
	}
	return "", ferr
}

// present reports whether the engine has image ref.
func (f *imageFetcher) present(ctx context.Context, ref string) (bool, error) {
	tctx, cancel := context.WithTimeout(ctx, dockerTimeout)
	defer cancel()
	_, err := f.docker.ImageInspect(tctx, ref)
	switch {
	case err == nil:
		return true, nil
	case cerrdefs.IsNotFound(err):
		return false, nil
	}
	return false, fmt.Errorf("inspect image %s: %w", ref, err)
}

// peers returns the registered hosts to ask, in order (see peerOrder).
func (f *imageFetcher) peers(ctx context.Context) ([]keyspace.Host, error) {
	tctx, cancel := context.WithTimeout(ctx, etcdTimeout)
	resp, err := f.etcd.Get(tctx, f.space.Hosts(), clientv3.WithPrefix())
	cancel()
	if err != nil {
		return nil, fmt.Errorf("list hosts: %w", err)
	}
	hosts := make([]keyspace.Host, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var h keyspace.Host
		if json.Unmarshal(kv.Value, &h) != nil || h.ID != keyspace.Last(string(kv.Key)) {
			continue
		}
		hosts = append(hosts, h)
	}
	return peerOrder(hosts, f.self, rand.Shuffle), nil
}

// peerOrder returns the hosts to ask for an image: every host but self
// with an API, the healthy ones first. shuffle (rand.Shuffle) orders each
// group, so that the hosts lacking one image do not all ask the same host
// first.
func peerOrder(hosts []keyspace.Host, self string, shuffle func(n int, swap func(i, j int))) []keyspace.Host {
	var healthy, other []keyspace.Host
	for _, h := range hosts {
		switch {
		case h.ID == self || h.APIURL == "":
		case h.Healthy:
			healthy = append(healthy, h)
		default:
			other = append(other, h)
		}
	}
	for _, g := range [][]keyspace.Host{healthy, other} {
		shuffle(len(g), func(i, j int) { g[i], g[j] = g[j], g[i] })
	}
	return append(healthy, other...)
}

// fetchFrom loads ref from host h's agent and returns the archive's size.
// It gives up when h sends nothing for imageStallTimeout.
func (f *imageFetcher) fetchFrom(ctx context.Context, h keyspace.Host, ref string) (int64, error) {
	hctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	archive, err := f.client(h.APIURL).SaveImage(hctx, ref)
	if err != nil {
		return 0, err
	}
	defer archive.Close()
	in := &stallReader{r: archive, timer: time.AfterFunc(imageStallTimeout, func() { cancel(errStalled) })}
	defer in.timer.Stop()
	err = f.load(hctx, ref, in)
	n, broke := in.result()
	switch {
	case err == nil:
		return n, nil
	case errors.Is(context.Cause(hctx), errStalled):
		return n, fmt.Errorf("after %d bytes: %w", n, errStalled)
	case broke != nil:
		return n, broke // why the archive broke off, rather than the engine's view of it
	}
	return n, err
}

// load runs `docker load` of archive and checks that it brought ref.
func (f *imageFetcher) load(ctx context.Context, ref string, archive io.Reader) error {
	resp, err := f.docker.ImageLoad(ctx, archive, client.ImageLoadWithQuiet(true))
	if err != nil {
		return fmt.Errorf("docker load: %w", err)
	}
	defer resp.Body.Close()
	if err := loadOutputError(resp.Body); err != nil {
		return fmt.Errorf("docker load: %w", err)
	}
	ok, err := f.present(ctx, ref)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("the archive it sent does not hold %s", ref)
	}
	return nil
}

// loadOutputError reads the JSON messages of `docker load` to their end
// and returns the error they report, if any.
func loadOutputError(r io.Reader) error {
	dec := json.NewDecoder(r)
	for {
		var msg struct {
			Error       string `json:"error"`
			ErrorDetail struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&msg); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("read its output: %w", err)
		}
		if msg.ErrorDetail.Message != "" {
			return errors.New(msg.ErrorDetail.Message)
		}
		if msg.Error != "" {
			return errors.New(msg.Error)
		}
	}
}

// client returns the API client of the agent at apiURL.
func (f *imageFetcher) client(apiURL string) *hostclient.Client {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.clients[apiURL]
	if !ok {
		c = hostclient.New(apiURL, f.token)
		f.clients[apiURL] = c
	}
	return c
}

// stallReader counts what it reads and pushes timer back by
// imageStallTimeout with each read that brings data; it stops the timer at
// the end of the stream and keeps the error that ended it, if not io.EOF.
// The engine's client reads it on a goroutine of its own, which may
// outlive ImageLoad's return.
type stallReader struct {
	r     io.Reader
	timer *time.Timer

	mu  sync.Mutex
	n   int64
	err error
}

func (s *stallReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	switch {
	case err != nil:
		s.timer.Stop()
	case n > 0:
		s.timer.Reset(imageStallTimeout)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n += int64(n)
	if err != nil && !errors.Is(err, io.EOF) && s.err == nil {
		s.err = err
	}
	return n, err
}

// result returns the bytes read so far and the error that broke the
// stream off, if any.
func (s *stallReader) result() (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n, s.err
}

// fetchImage has the job's image, which the engine lacks, fetched from
// another host. It reports whether the job crashed instead, as it does
// without other hosts: with "image not found: <ref>", followed by the
// hosts asked and why each failed when there were any.
func (j *job) fetchImage(ctx context.Context) (bool, error) {
	ref := j.spec().Image
	from, err := j.a.images.fetch(ctx, ref, j.stopCh)
	var ferr *fetchError
	switch {
	case err == nil:
		if from != "" {
			j.log.Info("image fetched from another host", "image", ref, "from", from)
			j.a.event(j.asg, fmt.Sprintf("%s: image %s fetched from host %s", process(j.asg), ref, from))
		}
		return false, nil
	case errors.Is(err, errNoPeers):
		j.crash(ctx, nil, "image not found: "+ref)
		return true, nil
	case errors.As(err, &ferr):
		j.crash(ctx, nil, ferr.Error())
		return true, nil
	}
	return false, err
}
