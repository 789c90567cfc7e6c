package blobstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gantryhq/gantry/deploy/testenv"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"zero", Config{}, true},
		{"set", Config{MaxSize: 1, TransferTimeout: time.Second, QueryTimeout: time.Second}, true},
		{"negative size", Config{MaxSize: -1}, false},
		{"negative transfer timeout", Config{TransferTimeout: -1}, false},
		{"negative query timeout", Config{QueryTimeout: -1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cfg.Validate(); (err == nil) != tt.ok {
				t.Errorf("Validate() = %v, want ok=%v", err, tt.ok)
			}
		})
	}
	d := Config{}.withDefaults()
	if d.MaxSize != DefaultMaxSize || d.TransferTimeout != DefaultTransferTimeout || d.QueryTimeout != DefaultQueryTimeout {
		t.Errorf("defaults = %+v", d)
	}
}

func TestPutGetStatList(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	s := e.store
	ctx := t.Context()
	data := map[string][]byte{
		"slugs/demo/a.tgz":  content(1, 3*ChunkSize+17), // several chunks, not a multiple
		"slugs/demo/b.tgz":  content(2, ChunkSize),      // exactly one chunk
		"slugs/demo_x/c":    content(3, 10),             // "_" is not a LIKE wildcard
		"slugs/demoo/d":     nil,                        // empty
		"caches/demo/cache": content(4, 100),
	}
	for p, b := range data {
		blob, err := s.Put(ctx, p, bytes.NewReader(b), 0)
		if err != nil {
			t.Fatalf("Put %s: %v", p, err)
		}
		if blob.Path != p || blob.Size != int64(len(b)) || blob.Digest != digest(b) || blob.CreatedAt.IsZero() {
			t.Errorf("Put %s = %+v", p, blob)
		}
	}
	for p, b := range data {
		blob, got, err := readAll(t, s, p)
		if err != nil {
			t.Fatalf("Get %s: %v", p, err)
		}
		if !bytes.Equal(got, b) || blob.Digest != digest(b) || blob.Size != int64(len(b)) {
			t.Errorf("Get %s: %d bytes, blob %+v; want %d bytes", p, len(got), blob, len(b))
		}
		st, err := s.Stat(ctx, p)
		if err != nil || st != blob {
			t.Errorf("Stat %s = %+v, %v; want %+v", p, st, err, blob)
		}
	}

	tests := []struct {
		prefix string
		want   []string
	}{
		{"", []string{"caches/demo/cache", "slugs/demo/a.tgz", "slugs/demo/b.tgz", "slugs/demo_x/c", "slugs/demoo/d"}},
		{"slugs/demo/", []string{"slugs/demo/a.tgz", "slugs/demo/b.tgz"}},
		{"slugs/demo_", []string{"slugs/demo_x/c"}},
		{"slugs/demo", []string{"slugs/demo/a.tgz", "slugs/demo/b.tgz", "slugs/demo_x/c", "slugs/demoo/d"}},
		{"nothing/", nil},
	}
	for _, tt := range tests {
		list, err := s.List(ctx, tt.prefix)
		if err != nil {
			t.Fatalf("List %q: %v", tt.prefix, err)
		}
		var got []string
		for _, b := range list {
			got = append(got, b.Path)
		}
		if fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("List %q = %v, want %v", tt.prefix, got, tt.want)
		}
	}
	if n := e.largeObjects(t); n != len(data) {
		t.Errorf("%d large objects, want %d", n, len(data))
	}
}

func TestNotFoundAndInvalid(t *testing.T) {
	t.Parallel()
	s := newEnv(t, Config{}).store
	ctx := t.Context()
	if _, _, err := s.Get(ctx, "no/such"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get = %v, want ErrNotFound", err)
	}
	if _, err := s.Stat(ctx, "no/such"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Stat = %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, "no/such"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Delete = %v, want ErrNotFound", err)
	}
	for _, p := range []string{"", "../x", "/abs", "a//b", "a/./b", "a b"} {
		if _, err := s.Put(ctx, p, strings.NewReader("x"), 0); !errors.Is(err, ErrInvalidPath) {
			t.Errorf("Put %q = %v, want ErrInvalidPath", p, err)
		}
		if _, _, err := s.Get(ctx, p); !errors.Is(err, ErrInvalidPath) {
			t.Errorf("Get %q = %v, want ErrInvalidPath", p, err)
		}
		if _, err := s.Stat(ctx, p); !errors.Is(err, ErrInvalidPath) {
			t.Errorf("Stat %q = %v, want ErrInvalidPath", p, err)
		}
		if err := s.Delete(ctx, p); !errors.Is(err, ErrInvalidPath) {
			t.Errorf("Delete %q = %v, want ErrInvalidPath", p, err)
		}
	}
	if _, err := s.List(ctx, "a%"); !errors.Is(err, ErrInvalidPath) {
		t.Errorf("List = %v, want ErrInvalidPath", err)
	}
}

func TestPutReplaceDelete(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	s := e.store
	ctx := t.Context()
	first, err := s.Put(ctx, "a/b", strings.NewReader("first"), 0)
	if err != nil {
		t.Fatal(err)
	}
	second, err := s.Put(ctx, "a/b", strings.NewReader("second"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if second.Digest == first.Digest || second.CreatedAt.Before(first.CreatedAt) {
		t.Errorf("replaced blob %+v after %+v", second, first)
	}
	if _, got, err := readAll(t, s, "a/b"); err != nil || string(got) != "second" {
		t.Errorf("Get = %q, %v", got, err)
	}
	if n := e.largeObjects(t); n != 1 {
		t.Errorf("%d large objects after a replace, want 1", n)
	}
	if err := s.Delete(ctx, "a/b"); err != nil {
		t.Fatal(err)
	}
	if n := e.largeObjects(t); n != 0 {
		t.Errorf("%d large objects after Delete, want 0", n)
	}
	if _, err := s.Stat(ctx, "a/b"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Stat after Delete = %v", err)
	}
}

// failingReader returns n bytes and then err.
type failingReader struct {
	n   int
	err error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, r.err
	}
	m := min(len(p), r.n)
	clear(p[:m])
	r.n -= m
	return m, nil
}

func TestPutStoresNothingOnFailure(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{MaxSize: 2 * ChunkSize})
	s := e.store
	ctx := t.Context()
	if _, err := s.Put(ctx, "keep", strings.NewReader("old"), 0); err != nil {
		t.Fatal(err)
	}
	broken := errors.New("connection reset")
	tests := []struct {
		name string
		put  func() error
		want error
	}{
		{"too large for the config", func() error {
			_, err := s.Put(ctx, "keep", bytes.NewReader(content(5, 2*ChunkSize+1)), 0)
			return err
		}, ErrTooLarge},
		{"too large for the argument", func() error {
			_, err := s.Put(ctx, "keep", strings.NewReader("12345"), 4)
			return err
		}, ErrTooLarge},
		{"reader fails", func() error {
			_, err := s.Put(ctx, "keep", &failingReader{n: ChunkSize + 10, err: broken}, 0)
			return err
		}, broken},
		{"announced digest differs", func() error {
			_, err := s.put(ctx, "keep", strings.NewReader("new"), 0, digest([]byte("other")))
			return err
		}, ErrDigestMismatch},
		{"context ends", func() error {
			cctx, cancel := context.WithCancel(ctx)
			cancel()
			_, err := s.Put(cctx, "keep", strings.NewReader("new"), 0)
			return err
		}, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.put(); !errors.Is(err, tt.want) {
				t.Fatalf("Put = %v, want %v", err, tt.want)
			}
			if _, got, err := readAll(t, s, "keep"); err != nil || string(got) != "old" {
				t.Errorf("after a failed Put the blob is %q, %v; want the old one", got, err)
			}
			if n := e.largeObjects(t); n != 1 {
				t.Errorf("%d large objects after a failed Put, want 1", n)
			}
		})
	}
	// A limit of exactly the size passes.
	if _, err := s.Put(ctx, "exact", bytes.NewReader(content(6, 2*ChunkSize)), 0); err != nil {
		t.Errorf("Put of exactly MaxSize: %v", err)
	}
}

func TestDigestMismatchOnRead(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	s := e.store
	data := content(7, 2*ChunkSize+100)
	tests := []struct {
		name    string
		corrupt func(oid uint32)
	}{
		{"byte changed", func(oid uint32) {
			e.exec(t, `SELECT lo_put($1, $2, '\x00ff')`, oid, int64(ChunkSize+5))
		}},
		{"truncated", func(oid uint32) {
			e.exec(t, `SELECT lo_truncate(lo_open($1, x'20000'::int), $2)`, oid, int64(len(data)-1))
		}},
		{"extended", func(oid uint32) {
			e.exec(t, `SELECT lo_put($1, $2, 'x')`, oid, int64(len(data)))
		}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := fmt.Sprintf("corrupt/%d", i)
			if _, err := s.Put(t.Context(), path, bytes.NewReader(data), 0); err != nil {
				t.Fatal(err)
			}
			tt.corrupt(e.oidOf(t, path))
			_, got, err := readAll(t, s, path)
			if !errors.Is(err, ErrDigestMismatch) {
				t.Fatalf("Get of a corrupted blob: %d bytes, %v; want ErrDigestMismatch", len(got), err)
			}
			if len(got) >= len(data) {
				t.Errorf("the reader handed out %d bytes of a corrupted %d-byte blob; the last chunk must be withheld", len(got), len(data))
			}
			// Through Read as well as WriteTo.
			_, rc, err := s.Get(t.Context(), path)
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			if _, err := io.ReadAll(struct{ io.Reader }{rc}); !errors.Is(err, ErrDigestMismatch) {
				t.Errorf("Read of a corrupted blob: %v, want ErrDigestMismatch", err)
			}
		})
	}
}

func TestReaderCloseAndSnapshot(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	s := e.store
	ctx := t.Context()
	old := content(8, 3*ChunkSize)
	if _, err := s.Put(ctx, "snap", bytes.NewReader(old), 0); err != nil {
		t.Fatal(err)
	}
	blob, rc, err := s.Get(ctx, "snap")
	if err != nil {
		t.Fatal(err)
	}
	first := make([]byte, 10)
	if _, err := io.ReadFull(rc, first); err != nil {
		t.Fatal(err)
	}
	// Replacing and deleting the blob while it is read changes nothing
	// for the reader.
	if _, err := s.Put(ctx, "snap", strings.NewReader("new"), 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "snap"); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read the rest: %v", err)
	}
	if got := append(first, rest...); !bytes.Equal(got, old) || blob.Digest != digest(old) {
		t.Errorf("read %d bytes of the replaced blob, want the %d old ones", len(got), len(old))
	}
	if err := rc.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := rc.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := rc.Read(first); err == nil {
		t.Error("Read after Close succeeded")
	}

	// A reader whose context ends gives its connection back.
	if _, err := s.Put(ctx, "snap", bytes.NewReader(old), 0); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	_, rc, err = s.Get(cctx, "snap")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	cancel()
	waitFor(t, 10*time.Second, "the reader's connection to return to the pool", func() bool {
		return e.pool.Stat().AcquiredConns() == 0
	})
	if _, err := io.ReadAll(rc); err == nil {
		t.Error("read after the context ended succeeded")
	}
}

func TestConcurrentPuts(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	s := e.store
	ctx := t.Context()
	const n = 8
	contents := make([][]byte, n)
	for i := range contents {
		contents[i] = content(uint64(100+i), ChunkSize+i*1000)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := range n {
		wg.Go(func() {
			if _, err := s.Put(ctx, "same", bytes.NewReader(contents[i]), 0); err != nil {
				errs <- fmt.Errorf("put same #%d: %w", i, err)
			}
		})
		wg.Go(func() {
			if _, err := s.Put(ctx, fmt.Sprintf("own/%d", i), bytes.NewReader(contents[i]), 0); err != nil {
				errs <- fmt.Errorf("put own/%d: %w", i, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	blob, got, err := readAll(t, s, "same")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, c := range contents {
		if bytes.Equal(got, c) {
			found = blob.Digest == digest(c)
		}
	}
	if !found {
		t.Errorf("the blob at \"same\" (%d bytes) is none of the uploads whole", len(got))
	}
	for i := range n {
		if _, got, err := readAll(t, s, fmt.Sprintf("own/%d", i)); err != nil || !bytes.Equal(got, contents[i]) {
			t.Errorf("own/%d: %d bytes, %v", i, len(got), err)
		}
	}
	if got := e.largeObjects(t); got != n+1 {
		t.Errorf("%d large objects, want %d (no leftovers of replaced uploads)", got, n+1)
	}
}

func TestGC(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	s := e.store
	ctx := t.Context()
	now := time.Now().UTC()
	// 2*gcBatch+3 old slugs cross several candidate batches.
	var oldSlugs []string
	for i := range 2*gcBatch + 3 {
		oldSlugs = append(oldSlugs, fmt.Sprintf("slugs/demo/%03d.tgz", i))
	}
	ages := map[string]time.Duration{
		"slugs/demo/new.tgz":  0,
		"slugs/other/old.tgz": 48 * time.Hour,
		"caches/demo/cache":   72 * time.Hour,
		"caches/other/cache":  time.Hour,
	}
	for _, p := range oldSlugs {
		ages[p] = 24*time.Hour + time.Duration(len(ages))*time.Second
	}
	for p, age := range ages {
		if _, err := s.Put(ctx, p, strings.NewReader(p), 0); err != nil {
			t.Fatal(err)
		}
		e.exec(t, `UPDATE blobstore_blobs SET created_at = $2 WHERE path = $1`, p, now.Add(-age))
	}

	old, err := s.ListOlder(ctx, "slugs/", now.Add(-2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(old) != len(oldSlugs)+1 || old[0].Path != "slugs/other/old.tgz" {
		t.Fatalf("ListOlder = %d blobs starting with %+v, want %d starting with the oldest", len(old), old[0], len(oldSlugs)+1)
	}
	for i := 1; i < len(old); i++ {
		if old[i].CreatedAt.Before(old[i-1].CreatedAt) {
			t.Fatalf("ListOlder is not oldest first: %v before %v", old[i-1], old[i])
		}
	}

	n, err := s.DeleteOlder(ctx, "slugs/demo/", now.Add(-2*time.Hour))
	if err != nil || n != len(oldSlugs) {
		t.Fatalf("DeleteOlder = %d, %v; want %d", n, err, len(oldSlugs))
	}
	n, err = s.DeleteOlder(ctx, "", now.Add(-50*time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("DeleteOlder of everything older than 50h = %d, %v; want 1 (caches/demo/cache)", n, err)
	}
	if _, err := s.DeleteOlder(ctx, "", time.Time{}); err == nil {
		t.Error("DeleteOlder with a zero time succeeded")
	}
	n, err = s.DeletePrefix(ctx, "caches/")
	if err != nil || n != 1 {
		t.Fatalf("DeletePrefix caches/ = %d, %v; want 1", n, err)
	}
	if _, err := s.DeletePrefix(ctx, ""); !errors.Is(err, ErrInvalidPath) {
		t.Errorf("DeletePrefix \"\" = %v, want ErrInvalidPath", err)
	}
	if _, err := s.DeletePrefix(ctx, "a b"); !errors.Is(err, ErrInvalidPath) {
		t.Errorf("DeletePrefix with a space = %v, want ErrInvalidPath", err)
	}
	left, err := s.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, b := range left {
		paths = append(paths, b.Path)
	}
	if want := "[slugs/demo/new.tgz slugs/other/old.tgz]"; fmt.Sprint(paths) != want {
		t.Errorf("left after GC: %v, want %s", paths, want)
	}
	if got := e.largeObjects(t); got != 2 {
		t.Errorf("%d large objects left, want 2", got)
	}
}

func TestGCKeepsBlobStoredAgain(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{})
	s := e.store
	ctx := t.Context()
	if _, err := s.Put(ctx, "slugs/x", strings.NewReader("old"), 0); err != nil {
		t.Fatal(err)
	}
	cutoff := time.Now()
	e.exec(t, `UPDATE blobstore_blobs SET created_at = $1`, cutoff.Add(-time.Hour))
	// The candidate was selected as old, then stored again before its
	// turn: deleteIf must keep it.
	if _, err := s.Put(ctx, "slugs/x", strings.NewReader("new"), 0); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.deleteIf(ctx, "slugs/x", cutoff); err != nil || ok {
		t.Errorf("deleteIf of a blob stored again = %v, %v; want false", ok, err)
	}
	if _, got, err := readAll(t, s, "slugs/x"); err != nil || string(got) != "new" {
		t.Errorf("blob = %q, %v", got, err)
	}
}

func TestUnavailable(t *testing.T) {
	t.Parallel()
	srv := testenv.StartPostgres(t, "")
	ctx := t.Context()
	if err := srv.CreateDatabase(ctx, "blobs"); err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, srv.URL("blobs"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s, err := OpenWithConfig(ctx, pool, Config{QueryTimeout: 2 * time.Second}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, "a", strings.NewReader("a"), 0); err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := srv.Stop(sctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(ctx, "a"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Stat with PostgreSQL stopped = %v, want ErrUnavailable", err)
	}
	if _, err := s.Put(ctx, "b", strings.NewReader("b"), 0); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Put with PostgreSQL stopped = %v, want ErrUnavailable", err)
	}
}

// chachaReader streams n deterministic pseudo-random bytes.
type chachaReader struct {
	src *rand.ChaCha8
	n   int64
}

func (r *chachaReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), r.n)]
	r.src.Read(p)
	r.n -= int64(len(p))
	return len(p), nil
}

// heapPeak samples the live heap until stop is called and returns the
// highest value seen.
func heapPeak() (stop func() uint64) {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	var peak atomic.Uint64
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			metrics.Read(sample)
			if v := sample[0].Value.Uint64(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	return func() uint64 {
		close(done)
		<-finished
		return peak.Load()
	}
}

// TestLargeBlobBoundedMemory streams a 200 MB blob in and out, through the
// HTTP handler both ways, and checks that the heap never holds a
// significant part of it. It is not parallel, so that the heap it measures
// is its own.
func TestLargeBlobBoundedMemory(t *testing.T) {
	const size = 200 << 20
	// The bound leaves room for a few chunks in flight, the garbage the
	// collector has not reclaimed yet and the test's own state.
	const bound = 48 << 20
	e := newEnv(t, Config{})

	src := &chachaReader{src: rand.NewChaCha8([32]byte{42}), n: size}
	hw := sha256.New()
	runtime.GC()
	stop := heapPeak()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "PUT", e.srv.URL+PathPrefix+"big/blob", io.TeeReader(src, hw))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	putPeak := stop()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT: %d %s", resp.StatusCode, body)
	}
	want := "sha256:" + hex.EncodeToString(hw.Sum(nil))

	runtime.GC()
	stop = heapPeak()
	req, err = http.NewRequestWithContext(ctx, "GET", e.srv.URL+PathPrefix+"big/blob", nil)
	if err != nil {
		t.Fatal(err)
	}
	gresp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	hr := sha256.New()
	n, err := io.Copy(hr, gresp.Body)
	gresp.Body.Close()
	getPeak := stop()
	if err != nil || n != size {
		t.Fatalf("GET: %d bytes, %v", n, err)
	}
	if got := "sha256:" + hex.EncodeToString(hr.Sum(nil)); got != want || gresp.Header.Get(DigestHeader) != want {
		t.Errorf("GET digest %s (header %s), want %s", got, gresp.Header.Get(DigestHeader), want)
	}
	t.Logf("%d MB blob: heap peak %.1f MB during PUT, %.1f MB during GET",
		size>>20, float64(putPeak)/(1<<20), float64(getPeak)/(1<<20))
	if putPeak > bound || getPeak > bound {
		t.Errorf("heap peaked at %d (PUT) and %d (GET) bytes; want under %d for a %d-byte blob", putPeak, getPeak, bound, size)
	}
}
