package host

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gantryhq/gantry/layer0/keyspace"
)

const (
	// transferTimeout bounds one artifact download or one output upload.
	transferTimeout = 30 * time.Minute
	// maxErrorBody bounds what is read of an error answer for its message.
	maxErrorBody = 1 << 10
	// artifactsDir is the cache's directory under Config.StateDir.
	artifactsDir = "artifacts"
	// cachePrefix starts the name of a cached artifact, followed by its
	// hex SHA-256; tempPrefix starts the name of a download in progress.
	cachePrefix = "sha256-"
	tempPrefix  = ".fetch-"
)

// errRefused matches, under errors.Is, the transfer failures that trying
// again cannot fix: a digest mismatch, a 4xx answer, a missing output. A
// job whose artifact is refused crashes at once; other failures are
// retried.
var errRefused = errors.New("refused")

// refusedError is a failure not worth retrying; its message is only the
// description.
type refusedError struct{ msg string }

func (e *refusedError) Error() string        { return e.msg }
func (e *refusedError) Is(target error) bool { return target == errRefused }

// refused returns a failure not worth retrying.
func refused(format string, args ...any) error {
	return &refusedError{msg: fmt.Sprintf(format, args...)}
}

// artifactCache downloads artifacts with the platform token, checks their
// digests and keeps them in a directory by digest, so that the 10th job of
// a release does not download its slug again. Each file is complete and
// verified (downloads go to a temporary file renamed into place) and
// read-only. It is safe for concurrent use; two fetches of one digest
// download it once.
type artifactCache struct {
	dir    string
	max    int64
	token  string
	client *http.Client
	log    *slog.Logger

	mu    sync.Mutex
	locks map[string]*digestLock
}

// digestLock serialises the fetches of one digest.
type digestLock struct {
	ch   chan struct{} // holds a token while locked
	refs int           // holders and waiters, guarded by artifactCache.mu
}

// newArtifactCache creates the cache directory and removes the temporary
// files of downloads a previous run left unfinished.
func newArtifactCache(dir string, max int64, token string, client *http.Client, log *slog.Logger) (*artifactCache, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("artifact cache: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("artifact cache: %w", err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tempPrefix) {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				log.Warn("cannot remove an unfinished download", "file", e.Name(), "err", err)
			}
		}
	}
	return &artifactCache{
		dir:    dir,
		max:    max,
		token:  token,
		client: client,
		log:    log,
		locks:  make(map[string]*digestLock),
	}, nil
}

// path is where the artifact with the given "sha256:<hex>" digest is cached.
func (c *artifactCache) path(digest string) string {
	return filepath.Join(c.dir, cachePrefix+strings.TrimPrefix(digest, "sha256:"))
}

// fetch returns the path of the verified local copy of art, downloading it
// when it is not cached. keep returns the digests the current jobs need,
// which the clean-up after a download must not delete. Failures that
// trying again cannot fix wrap errRefused.
func (c *artifactCache) fetch(ctx context.Context, art keyspace.Artifact, keep func() map[string]bool) (string, error) {
	final := c.path(art.Digest)
	unlock, err := c.lock(ctx, art.Digest)
	if err != nil {
		return "", err
	}
	defer unlock()
	if fi, err := os.Stat(final); err == nil && fi.Mode().IsRegular() {
		now := time.Now()
		if err := os.Chtimes(final, now, now); err != nil { // marks it recently used
			c.log.Debug("cannot touch cached artifact", "file", final, "err", err)
		}
		return final, nil
	}
	if err := c.download(ctx, art, final); err != nil {
		return "", err
	}
	inUse := map[string]bool{art.Digest: true}
	maps.Copy(inUse, keep())
	c.evict(inUse, c.max)
	return final, nil
}

// lock takes the lock of digest, waiting at most until ctx ends.
func (c *artifactCache) lock(ctx context.Context, digest string) (unlock func(), err error) {
	c.mu.Lock()
	l := c.locks[digest]
	if l == nil {
		l = &digestLock{ch: make(chan struct{}, 1)}
		c.locks[digest] = l
	}
	l.refs++
	c.mu.Unlock()
	release := func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if l.refs--; l.refs == 0 {
			delete(c.locks, digest)
		}
	}
	select {
	case l.ch <- struct{}{}:
		return func() { <-l.ch; release() }, nil
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	}
}

// download GETs art into a temporary file, checks its digest and renames it
// to final.
func (c *artifactCache) download(ctx context.Context, art keyspace.Artifact, final string) (err error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, transferTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, art.URL, nil)
	if err != nil {
		return refused("GET %s: %v", art.URL, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.client.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", art.URL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return statusError("GET", art.URL, resp)
	}
	if resp.ContentLength > c.max {
		return refused("GET %s: %d bytes is more than the artifact cache holds (%d)", art.URL, resp.ContentLength, c.max)
	}

	tmp, err := os.CreateTemp(c.dir, tempPrefix+"*")
	if err != nil {
		return fmt.Errorf("artifact cache: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(resp.Body, c.max+1))
	if err != nil {
		return fmt.Errorf("GET %s: read the body: %w", art.URL, err)
	}
	if n > c.max {
		return refused("GET %s: more than the %d bytes the artifact cache holds", art.URL, c.max)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != art.Digest {
		return refused("digest mismatch: %s served %d bytes with digest %s, want %s", art.URL, n, got, art.Digest)
	}
	if err := tmp.Chmod(0o444); err != nil {
		return fmt.Errorf("artifact cache: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("artifact cache: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("artifact cache: %w", err)
	}
	if err := os.Rename(tmp.Name(), final); err != nil {
		return fmt.Errorf("artifact cache: %w", err)
	}
	c.log.Info("artifact downloaded", "url", art.URL, "digest", art.Digest, "bytes", n, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// evict deletes the least recently used artifacts that are not in keep
// until the cache is no larger than max bytes (0: every artifact not in
// keep, as the garbage collection does), and returns how many it deleted.
func (c *artifactCache) evict(keep map[string]bool, max int64) int {
	entries, err := os.ReadDir(c.dir)
	if err != nil {
		c.log.Warn("artifact cache: cannot list", "err", err)
		return 0
	}
	evicted := 0
	type file struct {
		name string
		size int64
		used time.Time
	}
	var files []file
	var total int64
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), cachePrefix) {
			continue
		}
		fi, err := e.Info()
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		files = append(files, file{e.Name(), fi.Size(), fi.ModTime()})
		total += fi.Size()
	}
	slices.SortFunc(files, func(a, b file) int { return a.used.Compare(b.used) })
	for _, f := range files {
		if total <= max {
			break
		}
		if keep["sha256:"+strings.TrimPrefix(f.name, cachePrefix)] {
			continue
		}
		if err := os.Remove(filepath.Join(c.dir, f.name)); err != nil {
			c.log.Warn("artifact cache: cannot delete", "file", f.name, "err", err)
			continue
		}
		total -= f.size
		evicted++
		c.log.Info("artifact evicted from the cache", "file", f.name, "bytes", f.size)
	}
	return evicted
}

// statusError describes a non-success answer, with the message of a JSON
// error body when there is one. A redirect (never followed: the token goes
// only where the spec says) and a 4xx answer other than 408 and 429 are
// refused; the rest may pass on a later try.
func statusError(method, url string, resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	msg := strings.TrimSpace(string(body))
	var eb struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &eb) == nil && eb.Error.Code != "" {
		msg = eb.Error.Code + ": " + eb.Error.Message
	}
	text := fmt.Sprintf("%s %s: %s", method, url, resp.Status)
	if msg != "" {
		text += " (" + msg + ")"
	}
	if resp.StatusCode >= 300 && resp.StatusCode < 500 &&
		resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests {
		return refused("%s", text)
	}
	return errors.New(text)
}
