package host

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gantryhq/gantry/layer0/keyspace"
)

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// artifactServer serves blobs by path with a token, and counts GETs.
type artifactServer struct {
	*httptest.Server
	blobs map[string]string
	gets  atomic.Int64
}

func newArtifactServer(t *testing.T, blobs map[string]string) *artifactServer {
	s := &artifactServer{blobs: blobs}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.gets.Add(1)
		if r.Header.Get("Authorization") != "Bearer secret" {
			http.Error(w, `{"error":{"code":"unauthorized","message":"missing or wrong API token"}}`, http.StatusUnauthorized)
			return
		}
		switch r.URL.Path {
		case "/redirect":
			http.Redirect(w, r, "/a", http.StatusFound)
			return
		case "/unavailable":
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		case "/cut":
			w.Header().Set("Content-Length", "100")
			w.Write([]byte("only part"))
			return
		case "/chunked":
			w.Write([]byte(strings.Repeat("x", 100)))
			w.(http.Flusher).Flush()
			w.Write([]byte("more"))
			return
		}
		b, ok := s.blobs[strings.TrimPrefix(r.URL.Path, "/")]
		if !ok {
			http.Error(w, `{"error":{"code":"blob_not_found","message":"no such blob"}}`, http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.Write([]byte(b))
	}))
	t.Cleanup(s.Close)
	return s
}

func newTestCache(t *testing.T, max int64, token string) *artifactCache {
	t.Helper()
	c, err := newArtifactCache(t.TempDir(), max, token, &http.Client{
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func none() map[string]bool { return nil }

func TestArtifactFetch(t *testing.T) {
	srv := newArtifactServer(t, map[string]string{"a": "alpha", "b": "bravo"})
	c := newTestCache(t, 1<<20, "secret")
	ctx := t.Context()
	art := keyspace.Artifact{URL: srv.URL + "/a", Digest: sha([]byte("alpha")), Path: "/x"}

	p, err := c.fetch(ctx, art, none)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(p)
	if err != nil || string(data) != "alpha" {
		t.Fatalf("cached file = %q, %v", data, err)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o444 || filepath.Dir(p) != c.dir {
		t.Errorf("cached file %s mode %s, want read-only in %s", p, fi.Mode(), c.dir)
	}
	if p2, err := c.fetch(ctx, art, none); err != nil || p2 != p || srv.gets.Load() != 1 {
		t.Errorf("second fetch = %s, %v after %d GETs; want the cached file and 1 GET", p2, err, srv.gets.Load())
	}

	// Concurrent fetches of one digest download it once.
	b := keyspace.Artifact{URL: srv.URL + "/b", Digest: sha([]byte("bravo")), Path: "/y"}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := c.fetch(ctx, b, none); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := srv.gets.Load(); n != 2 {
		t.Errorf("%d GETs after 8 concurrent fetches of a new artifact, want 2 in all", n)
	}
	if len(c.locks) != 0 {
		t.Errorf("%d digest locks left", len(c.locks))
	}
}

func TestArtifactFetchFailures(t *testing.T) {
	srv := newArtifactServer(t, map[string]string{"a": "alpha", "big": strings.Repeat("x", 11)})
	tests := []struct {
		name    string
		url     string
		digest  string
		token   string
		refused bool
		say     string
	}{
		{"digest mismatch", "/a", sha([]byte("other")), "secret", true, "digest mismatch"},
		{"not found", "/nope", sha([]byte("x")), "secret", true, "404 Not Found (blob_not_found: no such blob)"},
		{"wrong token", "/a", sha([]byte("alpha")), "wrong", true, "401 Unauthorized (unauthorized: missing or wrong API token)"},
		{"redirect", "/redirect", sha([]byte("alpha")), "secret", true, "302 Found"},
		{"larger than the cache", "/big", sha([]byte(strings.Repeat("x", 11))), "secret", true, "more than the artifact cache holds"},
		{"larger than the cache, chunked", "/chunked", sha([]byte("x")), "secret", true, "more than the 10 bytes the artifact cache holds"},
		{"unavailable", "/unavailable", sha([]byte("x")), "secret", false, "503 Service Unavailable (down for maintenance)"},
		{"cut short", "/cut", sha([]byte("x")), "secret", false, "unexpected EOF"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			max := int64(1 << 20)
			if strings.HasPrefix(tc.name, "larger") {
				max = 10
			}
			c := newTestCache(t, max, tc.token)
			_, err := c.fetch(t.Context(), keyspace.Artifact{URL: srv.URL + tc.url, Digest: tc.digest, Path: "/x"}, none)
			if err == nil || errors.Is(err, errRefused) != tc.refused || !strings.Contains(err.Error(), tc.say) {
				t.Fatalf("fetch = %v, want an error saying %q, refused %v", err, tc.say, tc.refused)
			}
			entries, _ := os.ReadDir(c.dir)
			if len(entries) != 0 {
				t.Errorf("%d files left in the cache after a failed fetch", len(entries))
			}
		})
	}
}

func TestArtifactEvict(t *testing.T) {
	blobs := map[string]string{"a": "aaaaaaaaaa", "b": "bbbbbbbbbb", "c": "cccccccccc", "d": "dddddddddd"}
	srv := newArtifactServer(t, blobs)
	c := newTestCache(t, 25, "secret")
	ctx := t.Context()
	art := func(name string) keyspace.Artifact {
		return keyspace.Artifact{URL: srv.URL + "/" + name, Digest: sha([]byte(blobs[name])), Path: "/x"}
	}
	// a, b: 20 bytes, under the limit; a used longest ago.
	base := time.Now().Add(-time.Hour)
	for i, name := range []string{"a", "b"} {
		p, err := c.fetch(ctx, art(name), none)
		if err != nil {
			t.Fatal(err)
		}
		at := base.Add(time.Duration(i) * time.Minute)
		if err := os.Chtimes(p, at, at); err != nil {
			t.Fatal(err)
		}
	}
	cached := func() string {
		var names []string
		for _, name := range []string{"a", "b", "c", "d"} {
			if _, err := os.Stat(c.path(art(name).Digest)); err == nil {
				names = append(names, name)
			}
		}
		return strings.Join(names, "")
	}
	// c makes 30 bytes: a, the least recently used, goes.
	p, err := c.fetch(ctx, art("c"), none)
	if err != nil {
		t.Fatal(err)
	}
	at := base.Add(2 * time.Minute)
	if err := os.Chtimes(p, at, at); err != nil {
		t.Fatal(err)
	}
	if got := cached(); got != "bc" {
		t.Errorf("cached after c: %s, want bc", got)
	}
	// d makes 30 again: b is the oldest, but in use, so c goes, never d,
	// which was just fetched for use.
	keep := func() map[string]bool { return map[string]bool{art("b").Digest: true} }
	if _, err := c.fetch(ctx, art("d"), keep); err != nil {
		t.Fatal(err)
	}
	if got := cached(); got != "bd" {
		t.Errorf("cached after d with b in use: %s, want bd", got)
	}
}

func TestArtifactCacheRemovesUnfinishedDownloads(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{tempPrefix + "123", cachePrefix + strings.Repeat("ab", 32)} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o444); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := newArtifactCache(dir, 100, "t", http.DefaultClient, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != cachePrefix+strings.Repeat("ab", 32) {
		t.Errorf("cache dir holds %v, want only the complete artifact", entries)
	}
}
