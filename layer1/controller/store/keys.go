package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gantryhq/gantry/layer1/controller/types"
)

// AddKey stores k (CreatedAt is set by the database) and returns it. It
// returns ErrConflict when a key with the same fingerprint exists.
func (s *Store) AddKey(ctx context.Context, k types.Key) (types.Key, error) {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	var created time.Time
	err := s.pool.QueryRow(ctx, `INSERT INTO ssh_keys (fingerprint, type, comment, authorized_key)
		VALUES ($1, $2, $3, $4) RETURNING created_at`,
		k.Fingerprint, k.Type, k.Comment, k.Key).Scan(&created)
	if err != nil {
		return types.Key{}, wrap("add SSH key "+k.Fingerprint, err)
	}
	k.CreatedAt = created.UTC()
	return k, nil
}

// ListKeys returns all SSH keys, oldest first.
func (s *Store) ListKeys(ctx context.Context) ([]types.Key, error) {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, `SELECT fingerprint, type, comment, authorized_key, created_at
		FROM ssh_keys ORDER BY created_at, fingerprint`)
	if err != nil {
		return nil, wrap("list SSH keys", err)
	}
	keys, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (types.Key, error) {
		var k types.Key
		err := r.Scan(&k.Fingerprint, &k.Type, &k.Comment, &k.Key, &k.CreatedAt)
		k.CreatedAt = k.CreatedAt.UTC()
		return k, err
	})
	if err != nil {
		return nil, wrap("list SSH keys", err)
	}
	return keys, nil
}

// RemoveKey deletes the key with fingerprint, or returns ErrKeyNotFound.
func (s *Store) RemoveKey(ctx context.Context, fingerprint string) error {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	tag, err := s.pool.Exec(ctx, `DELETE FROM ssh_keys WHERE fingerprint = $1`, fingerprint)
	if err != nil {
		return wrap("remove SSH key "+fingerprint, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("remove SSH key %s: %w", fingerprint, ErrKeyNotFound)
	}
	return nil
}

// GetKey returns the key with fingerprint, or ErrKeyNotFound.
func (s *Store) GetKey(ctx context.Context, fingerprint string) (types.Key, error) {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	var k types.Key
	err := s.pool.QueryRow(ctx, `SELECT fingerprint, type, comment, authorized_key, created_at
		FROM ssh_keys WHERE fingerprint = $1`, fingerprint).Scan(&k.Fingerprint, &k.Type, &k.Comment, &k.Key, &k.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return types.Key{}, fmt.Errorf("get SSH key %s: %w", fingerprint, ErrKeyNotFound)
	}
	if err != nil {
		return types.Key{}, wrap("get SSH key "+fingerprint, err)
	}
	k.CreatedAt = k.CreatedAt.UTC()
	return k, nil
}
