package gitreceiver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// pushLockFile is the file in a repository whose flock(2) is the
// repository's push lock. It is not a build lock: the controller's
// PostgreSQL lock (layer1/controller/build) is the one that serialises
// builds, for every controller and every caller. The push lock guards the
// bare repository on disk, so that a push's check of the branch, its build
// and the move of the branch are one step (git has no compare-and-swap
// across them), and so that the repository sweep leaves a pushed-to
// repository alone.
const pushLockFile = "gantry-push.lock"

// lockPoll is how often a waiting push tries the push lock again.
const lockPoll = 200 * time.Millisecond

// lockRepo takes the push lock of the bare repository repo: an exclusive
// flock(2) on a file in it, so that it also holds between processes that
// serve the same repositories, and goes with a process that dies. It calls
// waiting once when another push holds the lock, and gives up when ctx
// ends. The returned function releases the lock.
func lockRepo(ctx context.Context, repo string, waiting func()) (func(), error) {
	var tick *time.Ticker
	for {
		unlock, err := tryLockRepo(repo)
		if err == nil {
			if tick != nil {
				tick.Stop()
			}
			return unlock, nil
		}
		if !errors.Is(err, errLocked) {
			return nil, err
		}
		if tick == nil {
			waiting()
			tick = time.NewTicker(lockPoll)
			defer tick.Stop()
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
		}
	}
}

// errLocked is returned by tryLockRepo when another push holds the lock.
var errLocked = errors.New("the push lock is held")

// tryLockRepo takes the push lock of the repository repo if it is free, and
// returns errLocked if it is not.
func tryLockRepo(repo string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(repo, pushLockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open push lock: %w", err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	switch {
	case err == nil:
		return func() { f.Close() }, nil // closing the file releases the lock
	case errors.Is(err, syscall.EWOULDBLOCK):
		f.Close()
		return nil, errLocked
	default:
		f.Close()
		return nil, fmt.Errorf("take push lock: %w", err)
	}
}
