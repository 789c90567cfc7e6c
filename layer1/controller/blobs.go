package controller

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gantryhq/gantry/layer1/blobstore"
	"github.com/gantryhq/gantry/layer1/controller/types"
)

const (
	// blobConns is the size of the connection pool of the blobstore and
	// the build locks: each blob transfer and each running build holds one
	// connection.
	blobConns = 16
	// blobOpenTimeout bounds the creation of the blobstore's table.
	blobOpenTimeout = 10 * time.Second
)

// blobs opens the blobstore on its own connection pool the first time it
// is needed (New does not connect to PostgreSQL), and keeps it.
type blobs struct {
	databaseURL string

	mu    sync.Mutex
	pool  *pgxpool.Pool
	store *blobstore.Store
}

// blobStore returns the blobstore, opening it when it is not open yet. It fails
// with blobstore.ErrUnavailable while PostgreSQL is unreachable.
func (s *Server) blobStore(ctx context.Context) (*blobstore.Store, error) {
	b := s.blobs
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.store != nil {
		return b.store, nil
	}
	if b.pool == nil {
		cfg, err := pgxpool.ParseConfig(b.databaseURL)
		if err != nil {
			return nil, fmt.Errorf("blobstore: parse the database URL: %w", err)
		}
		if cfg.ConnConfig.ConnectTimeout == 0 {
			cfg.ConnConfig.ConnectTimeout = 5 * time.Second
		}
		cfg.MaxConns = blobConns
		if b.pool, err = pgxpool.NewWithConfig(context.WithoutCancel(ctx), cfg); err != nil {
			return nil, fmt.Errorf("blobstore: connection pool: %w", err)
		}
	}
	octx, cancel := context.WithTimeout(ctx, blobOpenTimeout)
	defer cancel()
	st, err := blobstore.Open(octx, b.pool, s.log.With("component", "blobstore"))
	if err != nil {
		return nil, err
	}
	b.store = st
	return st, nil
}

// closeBlobs closes the blobstore's connections.
func (b *blobs) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.pool != nil {
		b.pool.Close()
		b.pool = nil
		b.store = nil
	}
}

// serveBlob serves PUT, GET, HEAD and DELETE under /v1/blobs/ (see
// blobstore.Store.Handler), for API tokens and the platform's host token.
func (s *Server) serveBlob(w http.ResponseWriter, r *http.Request) {
	st, err := s.blobStore(r.Context())
	if err != nil {
		s.failBlob(w, r, err)
		return
	}
	st.Handler().ServeHTTP(w, r)
}

// failBlob answers a failure to open the blobstore.
func (s *Server) failBlob(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, blobstore.ErrUnavailable) {
		s.log.Warn("blobstore unavailable", "method", r.Method, "path", r.URL.Path, "err", err)
		writeError(w, types.ErrUnavailable.WithMessage("PostgreSQL is unreachable; the controller answers again when it is back"))
		return
	}
	s.fail(w, r, err)
}
