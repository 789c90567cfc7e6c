package store

import (
	"context"
	"crypto/sha256"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// PutToken stores the SHA-256 hash of the API token called name, replacing
// the token that had that name.
func (s *Store) PutToken(ctx context.Context, name string, hash [sha256.Size]byte) error {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	_, err := s.pool.Exec(ctx, `INSERT INTO api_tokens (name, hash) VALUES ($1, $2)
		ON CONFLICT (name) DO UPDATE SET hash = EXCLUDED.hash, created_at = now()`, name, hash[:])
	return wrap(fmt.Sprintf("store API token %q", name), err)
}

// TokenHashes returns the SHA-256 hashes of all API tokens.
func (s *Store) TokenHashes(ctx context.Context) ([][]byte, error) {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, `SELECT hash FROM api_tokens`)
	if err != nil {
		return nil, wrap("read API tokens", err)
	}
	hashes, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		return nil, wrap("read API tokens", err)
	}
	return hashes, nil
}
