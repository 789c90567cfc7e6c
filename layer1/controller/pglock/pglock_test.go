package pglock

import (
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gantryhq/gantry/deploy/testenv"
)

func TestMain(m *testing.M) {
	os.Exit(testenv.RunWithPostgres(m))
}

// TestLock checks the locks on a real PostgreSQL: a second holder of a
// key waits until the first unlocks; the same name in another space, or
// another name, does not wait.
func TestLock(t *testing.T) {
	ctx := t.Context()
	pool, err := pgxpool.New(ctx, testenv.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	log := slog.New(slog.DiscardHandler)
	key := Key{Space: 1, Name: "acme"}
	mustNotWait := func() { t.Error("waited for a free lock") }

	unlock, err := Lock(ctx, pool, key, mustNotWait, log)
	if err != nil {
		t.Fatal(err)
	}
	for _, other := range []Key{{Space: 2, Name: "acme"}, {Space: 1, Name: "other"}} {
		u, err := Lock(ctx, pool, other, mustNotWait, log)
		if err != nil {
			t.Fatalf("lock %+v: %v", other, err)
		}
		u()
	}
	waiting := make(chan struct{})
	got := make(chan func())
	go func() {
		u, err := Lock(ctx, pool, key, func() { close(waiting) }, log)
		if err != nil {
			t.Error(err)
		}
		got <- u
	}()
	<-waiting
	select {
	case <-got:
		t.Fatal("a second holder got a held lock")
	case <-time.After(2 * Poll):
	}
	unlock()
	if u := <-got; u != nil {
		u()
	}
}
