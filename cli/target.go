package cli

import (
	"errors"
	"fmt"
	"strings"
)

// ErrNoCluster means no controller is configured: no -c flag, no
// GANTRY_URL and no default cluster.
var ErrNoCluster = errors.New("no cluster configured: run gantry cluster add NAME URL --token TOKEN, or set GANTRY_URL and GANTRY_TOKEN")

// target is the controller a command talks to and where that choice came from.
type target struct {
	// URL is the controller's base URL.
	URL string
	// Token is the bearer token; empty when none was given.
	Token string
	// Source says where URL came from: "cluster NAME" or "GANTRY_URL".
	Source string
	// TokenSource says where Token came from: "cluster NAME" or "GANTRY_TOKEN".
	TokenSource string
}

// resolveTarget picks the controller. In order of precedence: the cluster
// named by -c (flagCluster); GANTRY_URL with GANTRY_TOKEN; the default
// cluster, whose token GANTRY_TOKEN overrides when set. The configuration is
// loaded only when needed, so GANTRY_URL works without any config file.
func resolveTarget(flagCluster string, getenv func(string) string, load func() (*config, error)) (target, error) {
	t, err := pickTarget(flagCluster, getenv, load)
	if err != nil {
		return target{}, err
	}
	if err := validateToken(t.Token); err != nil {
		return target{}, fmt.Errorf("the token from %s is malformed: %w", t.TokenSource, err)
	}
	return t, nil
}

// validateToken reports what makes tok unusable as a bearer token: a line
// break (a token pasted with its newline) or another control character,
// which cannot be sent in an HTTP header.
func validateToken(tok string) error {
	for _, c := range tok {
		switch {
		case c == '\n' || c == '\r':
			return errors.New("it contains a line break (copy it again, on one line)")
		case c < 0x20 || c == 0x7f:
			return fmt.Errorf("it contains the control character %U", c)
		}
	}
	return nil
}

// pickTarget is resolveTarget without the check of the token.
func pickTarget(flagCluster string, getenv func(string) string, load func() (*config, error)) (target, error) {
	if flagCluster != "" {
		cfg, err := load()
		if err != nil {
			return target{}, err
		}
		cl, ok := cfg.find(flagCluster)
		if !ok {
			return target{}, fmt.Errorf("no cluster named %q (see gantry cluster list)", flagCluster)
		}
		return target{URL: cl.URL, Token: cl.Token, Source: "cluster " + cl.Name, TokenSource: "cluster " + cl.Name}, nil
	}
	if u := getenv("GANTRY_URL"); u != "" {
		u = strings.TrimRight(u, "/")
		if err := validateURL(u); err != nil {
			return target{}, fmt.Errorf("GANTRY_URL: %w", err)
		}
		return target{URL: u, Token: getenv("GANTRY_TOKEN"), Source: "GANTRY_URL", TokenSource: "GANTRY_TOKEN"}, nil
	}
	cfg, err := load()
	if err != nil {
		return target{}, err
	}
	if cfg.Default == "" {
		return target{}, ErrNoCluster
	}
	cl, ok := cfg.find(cfg.Default)
	if !ok {
		return target{}, fmt.Errorf("default cluster %q is not configured (see gantry cluster list)", cfg.Default)
	}
	t := target{URL: cl.URL, Token: cl.Token, Source: "cluster " + cl.Name, TokenSource: "cluster " + cl.Name}
	if tok := getenv("GANTRY_TOKEN"); tok != "" {
		t.Token, t.TokenSource = tok, "GANTRY_TOKEN"
	}
	return t, nil
}
