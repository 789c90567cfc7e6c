// Package backend is the git receiver's backend on the controller API: it
// checks pushers' keys against the keys registered with `gantry key add`,
// looks up apps (their identity), and has the controller build, release and deploy
// each pushed commit (POST /v1/apps/{app}/builds), streaming its output to
// the git client.
//
//	gitreceiver.Server --Keys, Apps, Builder--> Backend --client--> controller
//
// It authenticates with the platform's host token, which the controller
// accepts for exactly these calls.
package backend

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/gantryhq/gantry/gitreceiver"
	"github.com/gantryhq/gantry/layer1/controller/client"
	"github.com/gantryhq/gantry/layer1/controller/types"
)

// lookupTimeout bounds a key or app lookup.
const lookupTimeout = 10 * time.Second

// Backend satisfies the git receiver's KeyChecker, AppChecker and Builder
// with one controller.
type Backend struct {
	c *client.Client
}

var (
	_ gitreceiver.KeyChecker = (*Backend)(nil)
	_ gitreceiver.AppChecker = (*Backend)(nil)
	_ gitreceiver.Builder    = (*Backend)(nil)
)

// New returns the backend on the controller that c calls.
func New(c *client.Client) *Backend {
	return &Backend{c: c}
}

// Authorized reports whether key is registered: the controller has a key
// with its fingerprint, and that key is the same.
func (b *Backend) Authorized(ctx context.Context, key gossh.PublicKey) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	k, err := b.c.GetKey(ctx, gossh.FingerprintSHA256(key))
	if errors.Is(err, types.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("look up the key: %w", err)
	}
	registered, _, _, _, err := gossh.ParseAuthorizedKey([]byte(k.Key))
	if err != nil {
		return false, fmt.Errorf("registered key %s: %w", k.Fingerprint, err)
	}
	return bytes.Equal(registered.Marshal(), key.Marshal()), nil
}

// App returns the controller's app named name: its ID and creation time.
// It returns gitreceiver.ErrNoApp when there is no such app.
func (b *Backend) App(ctx context.Context, name string) (gitreceiver.App, error) {
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	app, err := b.c.GetApp(ctx, name)
	if errors.Is(err, types.ErrAppNotFound) {
		return gitreceiver.App{}, fmt.Errorf("%w: %s", gitreceiver.ErrNoApp, name)
	}
	if err != nil {
		return gitreceiver.App{}, fmt.Errorf("look up app %s: %w", name, err)
	}
	return gitreceiver.App{ID: app.ID, CreatedAt: app.CreatedAt}, nil
}

// Build sends the commit's source to the controller and writes the build's
// output to out as it comes. It fails, rejecting the push, when the build
// or the deployment fails; the error's message is the outcome in one line.
func (b *Backend) Build(ctx context.Context, req gitreceiver.BuildRequest, out io.Writer) error {
	src, err := req.Source(ctx)
	if err != nil {
		return fmt.Errorf("archive the commit: %w", err)
	}
	defer src.Close()
	shown := map[string]bool{} // the problem lines of the output
	_, err = b.c.Build(ctx, req.App, req.Commit, src, func(line string) {
		fmt.Fprintln(out, line)
		if msg, ok := strings.CutPrefix(line, " !     "); ok {
			shown[msg] = true
		}
	})
	var apiErr *types.Error
	if errors.As(err, &apiErr) {
		// The message alone: the code is for programs.
		err = errors.New(apiErr.Message)
		if apiErr.Code == types.ErrDeployFailed.Code {
			return &gitreceiver.Rejection{Reason: "deploy failed", Err: err, Shown: shown[apiErr.Message]}
		}
		return err
	}
	return err
}
