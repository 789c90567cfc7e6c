package build

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gantryhq/gantry/deploy/testenv"
)

func TestMain(m *testing.M) {
	os.Exit(testenv.RunWithPostgres(m))
}

// TestLock checks the build lock on a real PostgreSQL: a second build of
// an app waits (and says so once) until the first one unlocks, a build of
// another app does not wait, and a waiting build gives up with its
// context.
func TestLock(t *testing.T) {
	ctx := t.Context()
	pool, err := pgxpool.New(ctx, testenv.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	bd := New(Config{Conns: pool})
	mustNotWait := func() { t.Error("a build waited for a free lock") }

	unlock, err := bd.lock(ctx, "demo", mustNotWait)
	if err != nil {
		t.Fatal(err)
	}
	waiting := make(chan struct{})
	second := make(chan func(), 1)
	go func() {
		u, err := bd.lock(ctx, "demo", func() { close(waiting) })
		if err != nil {
			t.Error(err)
			u = func() {}
		}
		second <- u
	}()
	select {
	case <-waiting:
	case <-time.After(10 * time.Second):
		t.Fatal("the second build of demo did not say that it waits")
	}

	other, err := bd.lock(ctx, "other", mustNotWait)
	if err != nil {
		t.Fatal(err)
	}
	other()

	select {
	case u := <-second:
		u()
		t.Fatal("the second build of demo took the lock while the first held it")
	case <-time.After(2 * lockPoll):
	}
	unlock()
	var unlockSecond func()
	select {
	case unlockSecond = <-second:
	case <-time.After(10 * time.Second):
		t.Fatal("the second build of demo did not get the lock once it was free")
	}

	wctx, cancel := context.WithTimeout(ctx, 2*lockPoll)
	defer cancel()
	if _, err := bd.lock(wctx, "demo", func() {}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a waiting build whose context ended: err = %v, want %v", err, context.DeadlineExceeded)
	}
	unlockSecond()
}
