package build

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"time"

	"github.com/gantryhq/gantry/layer0/etcdwatch"
	hostclient "github.com/gantryhq/gantry/layer0/host/client"
	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer1/controller/etcdkv"
	"github.com/gantryhq/gantry/layer1/controller/types"
)

const (
	// hostCheckInterval is how often a build checks that the host of its
	// job is still there.
	hostCheckInterval = 5 * time.Second
	// logRetry is the pause between tries to open the build job's log
	// before its host agent knows the job.
	logRetry = 250 * time.Millisecond
	// maxStderrLines is how many lines of the build job's stderr are kept.
	maxStderrLines = 20
)

// follow waits for the scheduler to place the build job, streams its
// output from its host agent, and returns its final state (down or
// crashed).
func (b *buildRun) follow(ctx context.Context) (keyspace.JobState, error) {
	asg, err := b.waitPlaced(ctx)
	if err != nil {
		return keyspace.JobState{}, err
	}
	b.host = asg.HostID
	b.log.Info("build job placed", "job", asg.JobID, "host", asg.HostID, "preferred", asg.Spec.PreferHost)
	lctx, stopLogs := context.WithCancel(ctx)
	logsDone := make(chan struct{})
	go func() {
		defer close(logsDone)
		b.streamLogs(lctx, asg)
	}()
	st, err := b.waitEnded(ctx, asg)
	if err == nil {
		// The output ends when the container stops; give the rest of it
		// a moment to arrive.
		select {
		case <-logsDone:
		case <-time.After(logDrain):
		}
	}
	stopLogs()
	<-logsDone
	return st, err
}

// waitPlaced waits until the scheduler assigns the build job to a host.
func (b *buildRun) waitPlaced(ctx context.Context) (keyspace.Assignment, error) {
	wctx, cancel := context.WithTimeout(ctx, placeTimeout)
	defer cancel()
	snaps, err := etcdwatch.Watch(wctx, etcdwatch.Config{
		Client: b.bd.cfg.Etcd, Prefix: b.bd.cfg.Space.Assignments(), RequestTimeout: etcdkv.Timeout, Logger: b.log,
	})
	if err != nil {
		return keyspace.Assignment{}, err
	}
	release := ReleasePrefix + b.id
	for snap := range snaps {
		for _, v := range snap.KVs {
			var a keyspace.Assignment
			if json.Unmarshal(v, &a) == nil && a.Spec.App == b.app && a.Spec.Release == release {
				return a, nil
			}
		}
	}
	if ctx.Err() != nil {
		return keyspace.Assignment{}, ctx.Err()
	}
	b.out.problem("No host took the build job within %s: it needs %d MiB of memory and a healthy host",
		placeTimeout, b.bd.cfg.Memory>>20)
	return keyspace.Assignment{}, failed(types.ErrBuildFailed, "no host could run the build")
}

// waitEnded waits until the build job's state is final, and fails when its
// host is lost.
func (b *buildRun) waitEnded(ctx context.Context, asg keyspace.Assignment) (keyspace.JobState, error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	key := b.bd.cfg.Space.Job(asg.JobID)
	snaps, err := etcdwatch.Watch(wctx, etcdwatch.Config{
		Client: b.bd.cfg.Etcd, Prefix: key, RequestTimeout: etcdkv.Timeout, Logger: b.log,
	})
	if err != nil {
		return keyspace.JobState{}, err
	}
	tick := time.NewTicker(hostCheckInterval)
	defer tick.Stop()
	for {
		select {
		case snap, ok := <-snaps:
			if !ok {
				return keyspace.JobState{}, ctx.Err()
			}
			var st keyspace.JobState
			if v, ok := snap.KVs[key]; ok && json.Unmarshal(v, &st) == nil &&
				(st.State == keyspace.StateDown || st.State == keyspace.StateCrashed) {
				return st, nil
			}
		case <-tick.C:
			host, err := b.bd.cfg.Hosts.Host(ctx, asg.HostID)
			if err != nil {
				b.log.Warn("check the build job's host", "host", asg.HostID, "err", err)
				continue
			}
			if host == nil {
				b.out.problem("Host %s, which ran the build, stopped reporting", asg.HostID)
				return keyspace.JobState{}, failed(types.ErrBuildFailed, "the build's host was lost")
			}
		}
	}
}

// streamLogs copies the build job's output to the client: stdout, the
// build output, as it comes; stderr, the builder's own warnings, is kept
// for a failure that the output does not explain.
func (b *buildRun) streamLogs(ctx context.Context, asg keyspace.Assignment) {
	var stream *hostclient.LogStream
	for stream == nil {
		host, err := b.bd.cfg.Hosts.Host(ctx, asg.HostID)
		if err == nil && host != nil && host.APIURL != "" {
			stream, err = b.bd.cfg.Hosts.Logs(ctx, host.APIURL, asg.JobID, hostclient.LogOptions{Follow: true})
		}
		if ctx.Err() != nil {
			return
		}
		if err != nil && !errors.Is(err, hostclient.ErrJobNotFound) {
			b.log.Warn("open the build job's output", "job", asg.JobID, "err", err)
		}
		if stream == nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(logRetry):
			}
		}
	}
	defer stream.Close()
	for {
		l, err := stream.Next()
		if errors.Is(err, io.EOF) || ctx.Err() != nil {
			return
		}
		if err != nil {
			b.log.Warn("read the build job's output", "job", asg.JobID, "err", err)
			b.out.problem("The rest of the build output was lost: %v", err)
			return
		}
		if l.Stream == hostclient.StreamStderr {
			b.log.Debug("builder log", "line", l.Text)
			b.stderrMu.Lock()
			b.stderr = append(b.stderr, l.Text)
			if len(b.stderr) > maxStderrLines {
				b.stderr = b.stderr[len(b.stderr)-maxStderrLines:]
			}
			b.stderrMu.Unlock()
			continue
		}
		b.out.text(l.Text)
	}
}
