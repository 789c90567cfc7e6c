package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/gantryhq/gantry/layer1/controller/client"
)

// pinHostKey records the platform's git SSH host key in ~/.ssh/known_hosts
// for the git server's host and port, as Flynn's `cluster add` did, so
// that the first `git push` is not refused with "Host key verification
// failed". A key already there for that address is kept; a different one
// is reported and never overwritten. Nothing here fails the command that
// called it: problems are reported on stderr.
func (r *runner) pinHostKey(ctx context.Context, cl *client.Client) {
	info, err := cl.Info(ctx)
	if err != nil {
		fmt.Fprintf(r.stderr, " !    could not read the platform's SSH host key (%v); git push may ask you to accept it\n", err)
		return
	}
	if info.GitHostKey == "" || info.GitURL == "" {
		return
	}
	if err := r.pin(info.GitURL, info.GitHostKey); err != nil {
		fmt.Fprintf(r.stderr, " !    %v\n", err)
	}
}

// errKeyChanged means that known_hosts holds another key for the git
// server's address.
var errKeyChanged = errors.New("a different SSH host key")

func (r *runner) pin(gitURL, authorizedKey string) error {
	u, err := url.Parse(gitURL)
	if err != nil || u.Hostname() == "" {
		return fmt.Errorf("git URL %q: cannot pin its SSH host key", gitURL)
	}
	port := u.Port()
	if port == "" {
		port = "22"
	}
	key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(authorizedKey))
	if err != nil {
		return fmt.Errorf("the platform's SSH host key does not parse: %w", err)
	}
	home := r.getenv("HOME")
	if home == "" {
		return errors.New("HOME is not set: cannot pin the platform's SSH host key")
	}
	file := filepath.Join(home, ".ssh", "known_hosts")
	addr := net.JoinHostPort(u.Hostname(), port)
	shown := knownhosts.Normalize(addr)
	switch err := checkKnownHost(file, addr, key); {
	case err == nil:
		return nil // already pinned
	case errors.Is(err, errKeyChanged):
		return fmt.Errorf("%s holds %v for %s, not the platform's %s %s; left unchanged (remove that line if the platform's key really changed)",
			file, errKeyChanged, shown, key.Type(), ssh.FingerprintSHA256(key))
	case !errors.Is(err, os.ErrNotExist):
		return err
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return fmt.Errorf("pin the SSH host key: %w", err)
	}
	f, err := os.OpenFile(file, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("pin the SSH host key: %w", err)
	}
	line := knownhosts.Line([]string{shown}, key) + "\n"
	if _, err := f.WriteString(line); err != nil {
		f.Close()
		return fmt.Errorf("pin the SSH host key: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("pin the SSH host key: %w", err)
	}
	fmt.Fprintf(r.stdout, "Added the platform's SSH host key for %s to %s (%s)\n", shown, tildeHome(file, home), ssh.FingerprintSHA256(key))
	return nil
}

// checkKnownHost reports nil when file holds key for addr, an error
// wrapping errKeyChanged when it holds another key for addr, and one
// wrapping os.ErrNotExist when it holds none (or there is no file).
func checkKnownHost(file, addr string, key ssh.PublicKey) error {
	if _, err := os.Stat(file); err != nil {
		return fmt.Errorf("%s: %w", file, os.ErrNotExist)
	}
	check, err := knownhosts.New(file)
	if err != nil {
		return fmt.Errorf("read %s: %w", file, err)
	}
	host, port, _ := net.SplitHostPort(addr)
	remote := &net.TCPAddr{IP: net.ParseIP(host)}
	if remote.IP == nil {
		remote.IP = net.IPv6unspecified
	}
	fmt.Sscan(port, &remote.Port)
	err = check(addr, remote, key)
	var ke *knownhosts.KeyError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ke) && len(ke.Want) > 0:
		return errKeyChanged
	case errors.As(err, &ke):
		return fmt.Errorf("%s has no key for %s: %w", file, addr, os.ErrNotExist)
	}
	return fmt.Errorf("check %s: %w", file, err)
}

func tildeHome(path, home string) string {
	if rest, ok := strings.CutPrefix(path, home+string(filepath.Separator)); ok {
		return "~/" + rest
	}
	return path
}
