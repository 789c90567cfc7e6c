package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os/exec"
	"strings"
	"time"

	"github.com/gantryhq/gantry/layer1/controller/types"
)

// gitTimeout bounds every git command the CLI runs.
const gitTimeout = 10 * time.Second

// defaultRemote is the git remote name `gantry create` adds and app
// resolution reads.
const defaultRemote = "gantry"

// ErrNoApp means no app was named by -a, GANTRY_APP or a gantry git remote.
var ErrNoApp = errors.New("no app specified: use -a APP, set GANTRY_APP, or run inside a repo with a gantry remote")

// errGitExit reports that git ran and exited with a non-zero status.
var errGitExit = errors.New("git failed")

// runGit runs the git binary in dir ("" for the current directory) with a
// timeout and returns its trimmed standard output. A non-zero exit wraps
// errGitExit and carries git's standard error.
func runGit(ctx context.Context, dir string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, gitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.WaitDelay = time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		return "", fmt.Errorf("git %s: %w", strings.Join(args, " "), ctx.Err())
	}
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		return "", fmt.Errorf("git %s: %w (status %d): %s", strings.Join(args, " "), errGitExit, exitErr.ExitCode(), strings.TrimSpace(stderr.String()))
	}
	if err != nil {
		return "", fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(stdout.String()), nil
}

// inWorkTree reports whether dir is inside a git work tree. Without a git
// binary nothing is a work tree.
func inWorkTree(ctx context.Context, dir string) (bool, error) {
	out, err := runGit(ctx, dir, "rev-parse", "--is-inside-work-tree")
	if errors.Is(err, errGitExit) || errors.Is(err, exec.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return out == "true", nil
}

// remoteURL returns the URL of the git remote name in dir; ok is false when
// dir is not in a repository, the remote does not exist or git is missing.
func remoteURL(ctx context.Context, dir, name string) (u string, ok bool, err error) {
	out, err := runGit(ctx, dir, "remote", "get-url", name)
	if errors.Is(err, errGitExit) || errors.Is(err, exec.ErrNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return out, true, nil
}

// appFromGitURL returns the app a Gantry git URL points at: the last path
// element without ".git" of ssh://git@HOST:PORT/APP.git, and also of the
// scp-like git@HOST:APP.git and http(s) forms. The path must hold exactly one
// element and it must be a valid app name.
func appFromGitURL(raw string) (string, error) {
	var path string
	if strings.Contains(raw, "://") {
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" {
			return "", fmt.Errorf("git URL %q is not a Gantry app URL", raw)
		}
		path = u.EscapedPath()
	} else {
		// scp-like [user@]host:path; a colon after a slash is part of a local path.
		i := strings.IndexByte(raw, ':')
		if i <= 0 || strings.Contains(raw[:i], "/") {
			return "", fmt.Errorf("git URL %q is not a Gantry app URL", raw)
		}
		path = raw[i+1:]
	}
	name := strings.TrimSuffix(strings.TrimPrefix(path, "/"), ".git")
	if types.ValidateAppName(name) != nil {
		return "", fmt.Errorf("git URL %q does not name a Gantry app", raw)
	}
	return name, nil
}

// resolveApp picks the app a command acts on: flagApp (-a), then
// GANTRY_APP, then the app of the gantry git remote of the work tree at dir.
// It returns ErrNoApp when none applies.
func resolveApp(ctx context.Context, flagApp string, getenv func(string) string, dir string) (string, error) {
	if flagApp != "" {
		return flagApp, nil
	}
	if a := getenv("GANTRY_APP"); a != "" {
		return a, nil
	}
	u, ok, err := remoteURL(ctx, dir, defaultRemote)
	if err != nil {
		return "", fmt.Errorf("read git remote %s: %w", defaultRemote, err)
	}
	if !ok {
		return "", ErrNoApp
	}
	app, err := appFromGitURL(u)
	if err != nil {
		return "", fmt.Errorf("git remote %s: %w", defaultRemote, err)
	}
	return app, nil
}
