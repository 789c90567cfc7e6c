package blobstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"math"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Errors returned by the store, wrapped with what failed.
var (
	// ErrNotFound means that no blob exists at the path.
	ErrNotFound = errors.New("blob not found")
	// ErrDigestMismatch means that a blob's bytes do not match their
	// SHA-256: the digest recorded for them (on read) or the one the
	// uploader announced (on write).
	ErrDigestMismatch = errors.New("blob digest mismatch")
	// ErrTooLarge means that an upload exceeds the size limit.
	ErrTooLarge = errors.New("blob too large")
	// ErrInvalidPath means that a path or prefix breaks the rules of
	// ValidatePath.
	ErrInvalidPath = errors.New("invalid blob path")
	// ErrUnavailable means that PostgreSQL could not be reached or did not
	// answer in time.
	ErrUnavailable = errors.New("PostgreSQL is unreachable")
)

const (
	// DefaultMaxSize is Config.MaxSize when it is zero: 2 GiB.
	DefaultMaxSize int64 = 2 << 30
	// DefaultTransferTimeout is Config.TransferTimeout when it is zero.
	DefaultTransferTimeout = 30 * time.Minute
	// DefaultQueryTimeout is Config.QueryTimeout when it is zero.
	DefaultQueryTimeout = 5 * time.Second
	// ChunkSize is the size, in bytes, of each large object read and write
	// (one round trip to PostgreSQL each) and of the buffer each transfer
	// holds.
	ChunkSize = 1 << 20
)

// Advisory lock keys. The schema lock uses PostgreSQL's one-key (bigint)
// form; path locks use the two-key form (pathLockSpace, hashtext(path)),
// which never conflicts with one-key locks.
const (
	schemaLockKey int64 = 0x67616e7472795f62 // "gantry_b"
	pathLockSpace int32 = 0x626c6f62         // "blob"
)

// schema creates the blobs table when it is missing. Paths use the "C"
// collation so that they sort bytewise and prefix searches use the
// primary key's index.
const schema = `CREATE TABLE IF NOT EXISTS blobstore_blobs (
	path       text COLLATE "C" PRIMARY KEY,
	lo_oid     oid NOT NULL,
	digest     text NOT NULL,
	size       bigint NOT NULL CHECK (size >= 0),
	created_at timestamptz NOT NULL
)`

// Config tunes a Store. The zero value is the defaults.
type Config struct {
	// MaxSize is the size limit, in bytes, of a blob uploaded through
	// Handler, and of Put when its maxSize argument is 0 or less. Zero
	// means DefaultMaxSize (2 GiB).
	MaxSize int64
	// TransferTimeout bounds one Put, and one Get from the call until its
	// reader is closed, on top of the caller's context. Zero means
	// DefaultTransferTimeout (30 minutes).
	TransferTimeout time.Duration
	// QueryTimeout bounds each metadata query (Stat, List, Delete, the
	// lookup of Get, the commit of Put) and the creation of the table.
	// Zero means DefaultQueryTimeout (5 s).
	QueryTimeout time.Duration
}

// Validate reports a negative field.
func (c Config) Validate() error {
	switch {
	case c.MaxSize < 0:
		return fmt.Errorf("blobstore config: MaxSize %d is negative", c.MaxSize)
	case c.TransferTimeout < 0:
		return fmt.Errorf("blobstore config: TransferTimeout %s is negative", c.TransferTimeout)
	case c.QueryTimeout < 0:
		return fmt.Errorf("blobstore config: QueryTimeout %s is negative", c.QueryTimeout)
	}
	return nil
}

// withDefaults returns c with its zero fields set to the defaults.
func (c Config) withDefaults() Config {
	if c.MaxSize == 0 {
		c.MaxSize = DefaultMaxSize
	}
	if c.TransferTimeout == 0 {
		c.TransferTimeout = DefaultTransferTimeout
	}
	if c.QueryTimeout == 0 {
		c.QueryTimeout = DefaultQueryTimeout
	}
	return c
}

// Blob describes a stored blob.
type Blob struct {
	// Path is where the blob is stored, e.g. "slugs/demo/3f2a.tgz".
	Path string `json:"path"`
	// Digest is the SHA-256 of the content: "sha256:<64 hex digits>".
	Digest string `json:"digest"`
	// Size is the content's length in bytes.
	Size int64 `json:"size"`
	// CreatedAt is when this content was stored at Path (UTC).
	CreatedAt time.Time `json:"created_at"`
}

// Store keeps blobs in PostgreSQL large objects. It is safe for concurrent
// use. Each Put, and each Get until its reader is closed, holds one
// connection of the pool.
type Store struct {
	pool *pgxpool.Pool
	cfg  Config
	log  *slog.Logger
}

// Open returns a Store with the default Config on pool; see OpenWithConfig.
func Open(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) (*Store, error) {
	return OpenWithConfig(ctx, pool, Config{}, log)
}

// OpenWithConfig returns a Store on pool and creates its table when it is
// missing (several processes may do so at once). The pool stays the
// caller's: the Store does not close it.
func OpenWithConfig(ctx context.Context, pool *pgxpool.Pool, cfg Config, log *slog.Logger) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{pool: pool, cfg: cfg.withDefaults(), log: log}
	if err := s.createTable(ctx); err != nil {
		return nil, err
	}
	s.log.Info("blobstore ready", "max_size", s.cfg.MaxSize,
		"transfer_timeout", s.cfg.TransferTimeout, "query_timeout", s.cfg.QueryTimeout)
	return s, nil
}

// createTable runs the schema under an advisory lock, since concurrent
// CREATE TABLE IF NOT EXISTS statements can fail on each other.
func (s *Store) createTable(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.QueryTimeout)
	defer cancel()
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, schemaLockKey); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, schema)
		return err
	})
	return wrap("create the blobs table", err)
}

// Put stores the content of r at path, replacing the blob there if any,
// and returns it. It reads r to its end, at most maxSize bytes (0 or less
// means Config.MaxSize); a longer r fails with ErrTooLarge. Nothing is
// stored when Put fails.
func (s *Store) Put(ctx context.Context, path string, r io.Reader, maxSize int64) (Blob, error) {
	return s.put(ctx, path, r, maxSize, "")
}

// put is Put that also fails with ErrDigestMismatch, storing nothing, when
// want is not "" and differs from the content's digest.
func (s *Store) put(ctx context.Context, path string, r io.Reader, maxSize int64, want string) (blob Blob, err error) {
	if err := ValidatePath(path); err != nil {
		return Blob{}, fmt.Errorf("put blob: %w", err)
	}
	if maxSize <= 0 {
		maxSize = s.cfg.MaxSize
	}
	op := "put blob " + path
	ctx, cancel := context.WithTimeout(ctx, s.cfg.TransferTimeout)
	defer cancel()
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return Blob{}, wrap(op+": begin", err)
	}
	defer s.rollback(tx)

	los := tx.LargeObjects()
	oid, err := los.Create(ctx, 0)
	if err != nil {
		return Blob{}, wrap(op+": create large object", err)
	}
	obj, err := los.Open(ctx, oid, pgx.LargeObjectModeWrite)
	if err != nil {
		return Blob{}, wrap(op+": open large object", err)
	}
	limit := maxSize
	if limit < math.MaxInt64 {
		limit++ // one byte more than allowed tells a too large r
	}
	size, digest, err := copyHashed(obj, io.LimitReader(r, limit))
	if err != nil {
		return Blob{}, fmt.Errorf("%s: %w", op, err)
	}
	if size > maxSize {
		return Blob{}, fmt.Errorf("%s: %w: more than %d bytes", op, ErrTooLarge, maxSize)
	}
	if want != "" && digest != want {
		return Blob{}, fmt.Errorf("%s: %w: the content's digest is %s, not %s", op, ErrDigestMismatch, digest, want)
	}
	if err := obj.Close(); err != nil {
		return Blob{}, wrap(op+": close large object", err)
	}

	qctx, qcancel := context.WithTimeout(ctx, s.cfg.QueryTimeout)
	defer qcancel()
	if err := lockPath(qctx, tx, path); err != nil {
		return Blob{}, wrap(op, err)
	}
	var old uint32
	err = tx.QueryRow(qctx, `SELECT lo_oid FROM blobstore_blobs WHERE path = $1`, path).Scan(&old)
	replaced := err == nil
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return Blob{}, wrap(op+": look up the current blob", err)
	}
	blob = Blob{Path: path, Digest: digest, Size: size}
	err = tx.QueryRow(qctx, `INSERT INTO blobstore_blobs (path, lo_oid, digest, size, created_at)
		VALUES ($1, $2, $3, $4, statement_timestamp())
		ON CONFLICT (path) DO UPDATE SET lo_oid = excluded.lo_oid, digest = excluded.digest,
			size = excluded.size, created_at = excluded.created_at
		RETURNING created_at`, path, oid, digest, size).Scan(&blob.CreatedAt)
	if err != nil {
		return Blob{}, wrap(op+": record the blob", err)
	}
	if replaced {
		if err := los.Unlink(qctx, old); err != nil {
			return Blob{}, wrap(op+": unlink the replaced large object", err)
		}
	}
	if err := tx.Commit(qctx); err != nil {
		return Blob{}, wrap(op+": commit", err)
	}
	blob.CreatedAt = blob.CreatedAt.UTC()
	s.log.Info("blob stored", "path", path, "digest", digest, "size", size, "replaced", replaced)
	return blob, nil
}

// copyHashed copies r into obj in chunks of ChunkSize bytes and returns the
// number of bytes and their digest.
func copyHashed(obj io.Writer, r io.Reader) (int64, string, error) {
	h := sha256.New()
	buf := make([]byte, ChunkSize)
	var size int64
	for {
		n, rerr := fill(r, buf)
		if n > 0 {
			h.Write(buf[:n])
			if _, err := obj.Write(buf[:n]); err != nil {
				return size, "", wrap("write large object", err)
			}
			size += int64(n)
		}
		if rerr == io.EOF {
			return size, digestOf(h), nil
		}
		if rerr != nil {
			return size, "", fmt.Errorf("read the content: %w", rerr)
		}
	}
}

// fill reads from r until buf is full or r fails; io.EOF comes back as it
// is (unlike io.ReadFull, so that an io.ErrUnexpectedEOF of r stays an
// error).
func fill(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// digestOf formats the sum of h as "sha256:<hex>".
func digestOf(h hash.Hash) string {
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// lockPath takes the transaction-scoped lock of path, which serialises the
// writers of one path (Put's commit and Delete) so that each unlinks
// exactly the large object it replaces.
func lockPath(ctx context.Context, tx pgx.Tx, path string) error {
	_, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`, pathLockSpace, path)
	if err != nil {
		return fmt.Errorf("lock the path: %w", err)
	}
	return nil
}

// rollback ends tx unless it was committed. It gets a context of its own
// because the transfer's may have ended; a failure leaves a broken
// connection, which the pool discards.
func (s *Store) rollback(tx pgx.Tx) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.QueryTimeout)
	defer cancel()
	if err := tx.Rollback(ctx); err != nil && !errors.Is(err, pgx.ErrTxClosed) {
		s.log.Debug("roll back a blob transaction", "err", err)
	}
}

// Get returns the blob at path and a reader of its content, which fails
// with ErrDigestMismatch instead of io.EOF when the content does not match
// the blob's digest or size. The reader holds a connection and a
// transaction until it is closed or ctx ends (or Config.TransferTimeout
// passes); the caller must close it.
func (s *Store) Get(ctx context.Context, path string) (Blob, io.ReadCloser, error) {
	if err := ValidatePath(path); err != nil {
		return Blob{}, nil, fmt.Errorf("get blob: %w", err)
	}
	op := "get blob " + path
	ctx, cancel := context.WithTimeout(ctx, s.cfg.TransferTimeout)
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		cancel()
		return Blob{}, nil, wrap(op+": begin", err)
	}
	fail := func(err error) (Blob, io.ReadCloser, error) {
		s.rollback(tx)
		cancel()
		return Blob{}, nil, err
	}
	qctx, qcancel := context.WithTimeout(ctx, s.cfg.QueryTimeout)
	blob, oid, err := queryBlob(qctx, tx, path)
	qcancel()
	if err != nil {
		return fail(wrap(op, err))
	}
	// The object is read with ctx, which Open keeps for every read.
	los := tx.LargeObjects()
	obj, err := los.Open(ctx, oid, pgx.LargeObjectModeRead)
	if err != nil {
		return fail(wrap(op+": open large object", err))
	}
	rd := &reader{
		store:     s,
		blob:      blob,
		ctx:       ctx,
		tx:        tx,
		obj:       obj,
		hash:      sha256.New(),
		buf:       make([]byte, min(int64(ChunkSize), blob.Size+1)),
		remaining: blob.Size,
		cancel:    cancel,
	}
	rd.stop = context.AfterFunc(ctx, func() { rd.Close() })
	return blob, rd, nil
}

// Stat returns the blob at path without its content.
func (s *Store) Stat(ctx context.Context, path string) (Blob, error) {
	if err := ValidatePath(path); err != nil {
		return Blob{}, fmt.Errorf("stat blob: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.QueryTimeout)
	defer cancel()
	blob, _, err := queryBlob(ctx, s.pool, path)
	if err != nil {
		return Blob{}, wrap("stat blob "+path, err)
	}
	return blob, nil
}

// querier is what queryBlob needs of a pool or a transaction.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// queryBlob reads the row of path.
func queryBlob(ctx context.Context, q querier, path string) (Blob, uint32, error) {
	b := Blob{Path: path}
	var oid uint32
	err := q.QueryRow(ctx, `SELECT lo_oid, digest, size, created_at FROM blobstore_blobs WHERE path = $1`,
		path).Scan(&oid, &b.Digest, &b.Size, &b.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Blob{}, 0, ErrNotFound
	}
	if err != nil {
		return Blob{}, 0, err
	}
	b.CreatedAt = b.CreatedAt.UTC()
	return b, oid, nil
}

// Delete removes the blob at path and unlinks its large object.
func (s *Store) Delete(ctx context.Context, path string) error {
	if err := ValidatePath(path); err != nil {
		return fmt.Errorf("delete blob: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.QueryTimeout)
	defer cancel()
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := lockPath(ctx, tx, path); err != nil {
			return err
		}
		var oid uint32
		err := tx.QueryRow(ctx, `DELETE FROM blobstore_blobs WHERE path = $1 RETURNING lo_oid`, path).Scan(&oid)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		los := tx.LargeObjects()
		return los.Unlink(ctx, oid)
	})
	if err != nil {
		return wrap("delete blob "+path, err)
	}
	s.log.Info("blob deleted", "path", path)
	return nil
}

// List returns the blobs whose path starts with prefix, sorted by path
// (bytewise). Prefix "" lists every blob; a prefix may end in the middle of
// a segment or with "/", and uses the characters of a path.
func (s *Store) List(ctx context.Context, prefix string) ([]Blob, error) {
	if err := validatePrefix(prefix); err != nil {
		return nil, fmt.Errorf("list blobs: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.QueryTimeout)
	defer cancel()
	rows, err := s.pool.Query(ctx, `SELECT path, digest, size, created_at FROM blobstore_blobs
		WHERE path LIKE $1 ESCAPE '\' ORDER BY path`, likePrefix(prefix))
	if err != nil {
		return nil, wrap("list blobs "+prefix, err)
	}
	blobs := []Blob{}
	for rows.Next() {
		var b Blob
		if err := rows.Scan(&b.Path, &b.Digest, &b.Size, &b.CreatedAt); err != nil {
			rows.Close()
			return nil, wrap("list blobs "+prefix, err)
		}
		b.CreatedAt = b.CreatedAt.UTC()
		blobs = append(blobs, b)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("list blobs "+prefix, err)
	}
	return blobs, nil
}

// likePrefix returns the LIKE pattern of the strings that start with
// prefix: "_" is a path character and a LIKE wildcard, so it is escaped.
func likePrefix(prefix string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return r.Replace(prefix) + "%"
}

// SQLSTATE codes that mean PostgreSQL is unreachable or going away.
const (
	classConnection        = "08" // connection_exception and its subclasses
	codeAdminShutdown      = "57P01"
	codeCrashShutdown      = "57P02"
	codeCannotConnectNow   = "57P03"
	codeTooManyConnections = "53300"
)

// wrap adds op to err and maps connection failures to ErrUnavailable.
func wrap(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrUnavailable):
		return fmt.Errorf("%s: %w", op, err)
	case isUnavailable(err):
		return fmt.Errorf("%s: %w: %w", op, ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// isUnavailable reports whether err means that PostgreSQL cannot be reached
// or stopped answering, as opposed to an error in a query. A context that
// ended is not PostgreSQL's fault unless it hit a deadline.
func isUnavailable(err error) bool {
	var connectErr *pgconn.ConnectError
	if errors.As(err, &connectErr) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case strings.HasPrefix(pgErr.Code, classConnection),
			pgErr.Code == codeAdminShutdown,
			pgErr.Code == codeCrashShutdown,
			pgErr.Code == codeCannotConnectNow,
			pgErr.Code == codeTooManyConnections:
			return true
		}
		return false
	}
	if errors.Is(err, context.Canceled) {
		return false
	}
	var netErr net.Error
	return errors.As(err, &netErr) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}
