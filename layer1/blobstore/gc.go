package blobstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// gcBatch is how many candidate blobs DeleteOlder looks up per query.
const gcBatch = 100

// ListOlder returns the blobs whose path starts with prefix and whose
// content was stored before before (Blob.CreatedAt), oldest first. Prefix
// follows the rules of List. It is what a garbage collector reads to decide
// what to delete.
func (s *Store) ListOlder(ctx context.Context, prefix string, before time.Time) ([]Blob, error) {
	if err := validatePrefix(prefix); err != nil {
		return nil, fmt.Errorf("list old blobs: %w", err)
	}
	op := "list blobs " + prefix + " older than " + before.UTC().Format(time.RFC3339)
	ctx, cancel := context.WithTimeout(ctx, s.cfg.QueryTimeout)
	defer cancel()
	rows, err := s.pool.Query(ctx, `SELECT path, digest, size, created_at FROM blobstore_blobs
		WHERE path LIKE $1 ESCAPE '\' AND created_at < $2 ORDER BY created_at, path`,
		likePrefix(prefix), before)
	if err != nil {
		return nil, wrap(op, err)
	}
	blobs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Blob, error) {
		var b Blob
		err := row.Scan(&b.Path, &b.Digest, &b.Size, &b.CreatedAt)
		b.CreatedAt = b.CreatedAt.UTC()
		return b, err
	})
	if err != nil {
		return nil, wrap(op, err)
	}
	return blobs, nil
}

// DeletePrefix deletes every blob whose path starts with prefix, e.g. all
// of an app's blobs ("slugs/demo/") when the app is deleted, and returns how
// many it deleted. The prefix must not be empty. See DeleteOlder for what
// happens on failure.
func (s *Store) DeletePrefix(ctx context.Context, prefix string) (int, error) {
	if prefix == "" {
		return 0, fmt.Errorf("delete blobs: %w: the prefix is empty", ErrInvalidPath)
	}
	return s.deleteMatching(ctx, prefix, time.Time{})
}

// DeleteOlder deletes the blobs whose path starts with prefix ("" for every
// blob) and whose content was stored before before, and returns how many it
// deleted: the garbage collection of old slugs, build caches and sources.
// A blob stored again at its path while DeleteOlder runs is kept.
//
// Each blob is deleted in a transaction of its own, bounded by
// Config.QueryTimeout, so a collection of many blobs never blocks uploads
// for long. When it fails (or ctx ends) part-way, the blobs counted so far
// are gone and the rest are untouched; running it again finishes the job.
func (s *Store) DeleteOlder(ctx context.Context, prefix string, before time.Time) (int, error) {
	if before.IsZero() {
		return 0, fmt.Errorf("delete old blobs: the time is zero")
	}
	return s.deleteMatching(ctx, prefix, before)
}

// deleteMatching deletes the blobs under prefix stored before before, or
// all of them when before is zero.
func (s *Store) deleteMatching(ctx context.Context, prefix string, before time.Time) (int, error) {
	if err := validatePrefix(prefix); err != nil {
		return 0, fmt.Errorf("delete blobs: %w", err)
	}
	op := "delete blobs " + prefix
	if !before.IsZero() {
		op += " older than " + before.UTC().Format(time.RFC3339Nano)
	}
	deleted := 0
	after := "" // paths sort bytewise, and every path is > ""
	for {
		paths, err := s.candidates(ctx, prefix, before, after)
		if err != nil {
			return deleted, wrap(op, err)
		}
		for _, p := range paths {
			ok, err := s.deleteIf(ctx, p, before)
			if err != nil {
				return deleted, wrap(op, err)
			}
			if ok {
				deleted++
			}
		}
		if len(paths) < gcBatch {
			break
		}
		after = paths[len(paths)-1]
	}
	if deleted > 0 {
		s.log.Info("blobs deleted", "prefix", prefix, "before", before, "count", deleted)
	}
	return deleted, nil
}

// candidates returns up to gcBatch paths after after (bytewise) that match
// prefix and before.
func (s *Store) candidates(ctx context.Context, prefix string, before time.Time, after string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.QueryTimeout)
	defer cancel()
	rows, err := s.pool.Query(ctx, `SELECT path FROM blobstore_blobs
		WHERE path LIKE $1 ESCAPE '\' AND path > $2 AND ($3::timestamptz IS NULL OR created_at < $3)
		ORDER BY path LIMIT $4`, likePrefix(prefix), after, nullTime(before), gcBatch)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// deleteIf deletes the blob at path when it was stored before before (or
// whatever its age when before is zero) and reports whether it did.
func (s *Store) deleteIf(ctx context.Context, path string, before time.Time) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.QueryTimeout)
	defer cancel()
	deleted := false
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := lockPath(ctx, tx, path); err != nil {
			return err
		}
		var oid uint32
		err := tx.QueryRow(ctx, `DELETE FROM blobstore_blobs
			WHERE path = $1 AND ($2::timestamptz IS NULL OR created_at < $2) RETURNING lo_oid`,
			path, nullTime(before)).Scan(&oid)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil // deleted or stored again meanwhile
		}
		if err != nil {
			return err
		}
		los := tx.LargeObjects()
		if err := los.Unlink(ctx, oid); err != nil {
			return fmt.Errorf("unlink large object of %s: %w", path, err)
		}
		deleted = true
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("delete %s: %w", path, err)
	}
	return deleted, nil
}

// nullTime is t for PostgreSQL, with the zero time as NULL.
func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
