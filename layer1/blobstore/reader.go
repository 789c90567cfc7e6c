package blobstore

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"sync"

	"github.com/jackc/pgx/v5"
)

// reader streams a blob's large object in chunks and checks its digest and
// size at the end. It is meant for one consumer at a time; Close may be
// called at any time from any goroutine, and is called when ctx ends.
type reader struct {
	store *Store
	blob  Blob
	ctx   context.Context // the transfer's context, used by every read of obj
	tx    pgx.Tx
	obj   *pgx.LargeObject
	hash  hash.Hash
	// buf[pos:end] is the part of the current chunk not yet consumed.
	buf      []byte
	pos, end int
	// probe receives the byte that must not exist after the recorded size.
	probe [1]byte
	// remaining is the number of bytes of the recorded size not yet read
	// from the large object.
	remaining int64
	cancel    context.CancelFunc
	stop      func() bool // unregisters the Close that ctx's end triggers

	// mu guards the fields above against Close, and next's use of tx.
	// It is never held while the consumer's writer blocks, so Close
	// always ends the transaction promptly.
	mu     sync.Mutex
	err    error // sticky: io.EOF once the last chunk is buffered, or the failure
	closed bool
}

var _ io.WriterTo = (*reader)(nil)

// Read implements io.Reader.
func (r *reader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(p) == 0 {
		return 0, nil
	}
	if r.pos == r.end {
		if err := r.next(); err != nil {
			return 0, err
		}
	}
	n := copy(p, r.buf[r.pos:r.end])
	r.pos += n
	return n, nil
}

// WriteTo implements io.WriterTo, which io.Copy prefers: each chunk goes to
// w without another copy.
func (r *reader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		r.mu.Lock()
		var err error
		if r.pos == r.end {
			err = r.next()
		}
		chunk := r.buf[r.pos:r.end]
		r.pos = r.end
		r.mu.Unlock()
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
		n, err := w.Write(chunk)
		total += int64(n)
		if err != nil {
			return total, err
		}
	}
}

// next reads the next chunk into buf. When the chunk completes the recorded
// size, it first checks the digest and that the object ends there, and
// withholds the chunk when either check fails. It returns io.EOF when
// every chunk was consumed. It is called with mu held.
func (r *reader) next() error {
	if r.closed {
		return fmt.Errorf("read blob %s: %w", r.blob.Path, fs.ErrClosed)
	}
	if r.err != nil {
		return r.err
	}
	want := min(int64(len(r.buf)), r.remaining)
	var n int
	if want > 0 {
		var err error
		n, err = r.obj.Read(r.buf[:want])
		r.hash.Write(r.buf[:n])
		r.remaining -= int64(n)
		if err != nil && err != io.EOF {
			r.err = wrap("read blob "+r.blob.Path, err)
			return r.err
		}
		if int64(n) < want {
			r.err = fmt.Errorf("read blob %s: %w: the content ends after %d of %d bytes",
				r.blob.Path, ErrDigestMismatch, r.blob.Size-r.remaining, r.blob.Size)
			return r.err
		}
	}
	if r.remaining == 0 {
		if err := r.verify(); err != nil {
			r.err = err
			return err
		}
		r.err = io.EOF // after this chunk
	}
	r.pos, r.end = 0, n
	if n == 0 {
		return r.err
	}
	return nil
}

// verify checks, once the recorded size has been read, the digest and that
// the large object ends there.
func (r *reader) verify() error {
	if got := digestOf(r.hash); got != r.blob.Digest {
		return fmt.Errorf("read blob %s: %w: the content's digest is %s, not %s",
			r.blob.Path, ErrDigestMismatch, got, r.blob.Digest)
	}
	n, err := r.obj.Read(r.probe[:])
	if n > 0 {
		return fmt.Errorf("read blob %s: %w: the content is longer than %d bytes",
			r.blob.Path, ErrDigestMismatch, r.blob.Size)
	}
	if err != nil && err != io.EOF {
		return wrap("read blob "+r.blob.Path, err)
	}
	return nil
}

// Close ends the transaction and gives the connection back to the pool. It
// is idempotent. A failed rollback is reported only while the transfer's
// context is alive: after it ended, the connection is broken and the pool
// discards it.
func (r *reader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	r.stop()
	ctx, cancel := context.WithTimeout(context.Background(), r.store.cfg.QueryTimeout)
	defer cancel()
	err := r.tx.Rollback(ctx)
	ended := r.ctx.Err() != nil
	r.cancel()
	if err != nil && !errors.Is(err, pgx.ErrTxClosed) && !ended {
		return wrap("close blob "+r.blob.Path, err)
	}
	return nil
}
