package up

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	docker "github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/gantryhq/gantry/deploy/node"
	"github.com/gantryhq/gantry/layer0/keyspace"
)

// followInterval is how often followLogs looks for platform containers
// it does not follow yet (started, or started again).
const followInterval = 2 * time.Second

// followLogs copies the output of this host's platform containers to out
// (os.Stderr when nil), each line prefixed with the component, until ctx
// ends. It follows the containers running now and every one that starts
// later, from since on.
func followLogs(ctx context.Context, dk *docker.Client, n *node.Node, out io.Writer, since time.Time, log *slog.Logger) {
	if out == nil {
		out = os.Stderr
	}
	w := &lockedWriter{w: out}
	var mu sync.Mutex
	followed := map[string]bool{}
	var wg sync.WaitGroup
	defer wg.Wait()
	tick := time.NewTicker(followInterval)
	defer tick.Stop()
	for {
		lctx, cancel := context.WithTimeout(ctx, dockerTimeout)
		list, err := dk.ContainerList(lctx, container.ListOptions{Filters: platformFilter(n)})
		cancel()
		if err != nil && ctx.Err() == nil {
			log.Warn("cannot list the platform's containers", "err", err)
		}
		for _, c := range list {
			mu.Lock()
			seen := followed[c.ID]
			followed[c.ID] = true
			mu.Unlock()
			if seen {
				continue
			}
			prefix := c.Labels[keyspace.LabelSystem] + " | "
			wg.Add(1)
			go func() {
				defer wg.Done()
				followContainer(ctx, dk, c.ID, prefix, since, w)
				mu.Lock()
				delete(followed, c.ID) // followed again if it starts again
				mu.Unlock()
			}()
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// followContainer copies the output of container id since the given time
// to w, line by line with prefix, until it stops or ctx ends.
func followContainer(ctx context.Context, dk *docker.Client, id, prefix string, since time.Time, w io.Writer) {
	rc, err := dk.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true, Follow: true,
		Since: since.Format(time.RFC3339Nano)})
	if err != nil {
		return
	}
	defer rc.Close()
	pr, pw := io.Pipe()
	go func() {
		_, err := stdcopy.StdCopy(pw, pw, rc)
		pw.CloseWithError(err)
	}()
	sc := bufio.NewScanner(pr)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fmt.Fprintln(w, prefix+strings.TrimRight(sc.Text(), "\r"))
	}
	pr.Close()
}

// lockedWriter serialises the writes of several goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
