package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// config is the content of the CLI's configuration file: the clusters the
// user added and which of them is used when no other is named.
type config struct {
	// Default is the name of the cluster used when neither -c nor GANTRY_URL
	// names one; empty when there is no default.
	Default string `json:"default,omitempty"`
	// Clusters are the known clusters, sorted by name.
	Clusters []cluster `json:"clusters"`
}

// cluster is one controller the CLI can talk to.
type cluster struct {
	// Name is how the user refers to the cluster (-c NAME).
	Name string `json:"name"`
	// URL is the controller's base URL, http or https, without a trailing slash.
	URL string `json:"url"`
	// Token is the bearer token sent to the controller.
	Token string `json:"token"`
}

// clusterNameRE is the shape of a cluster name.
var clusterNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// Validate reports whether c has a usable name, URL and token.
func (c cluster) Validate() error {
	if !clusterNameRE.MatchString(c.Name) {
		return fmt.Errorf("invalid cluster name %q: use letters, digits, '.', '_' and '-'", c.Name)
	}
	if err := validateURL(c.URL); err != nil {
		return err
	}
	if c.Token == "" {
		return fmt.Errorf("cluster %s has no token", c.Name)
	}
	if err := validateToken(c.Token); err != nil {
		return fmt.Errorf("the token of cluster %s is malformed: %w", c.Name, err)
	}
	return nil
}

// Validate reports whether every cluster is valid, names are unique and the
// default names a known cluster.
func (c *config) Validate() error {
	seen := make(map[string]bool, len(c.Clusters))
	for _, cl := range c.Clusters {
		if err := cl.Validate(); err != nil {
			return err
		}
		if seen[cl.Name] {
			return fmt.Errorf("cluster %s is listed twice", cl.Name)
		}
		seen[cl.Name] = true
	}
	if c.Default != "" && !seen[c.Default] {
		return fmt.Errorf("default cluster %s is not listed", c.Default)
	}
	return nil
}

// find returns the cluster named name.
func (c *config) find(name string) (cluster, bool) {
	i := slices.IndexFunc(c.Clusters, func(cl cluster) bool { return cl.Name == name })
	if i < 0 {
		return cluster{}, false
	}
	return c.Clusters[i], true
}

// put adds cl, replacing a cluster of the same name, and keeps the list sorted.
func (c *config) put(cl cluster) {
	c.Clusters = slices.DeleteFunc(c.Clusters, func(o cluster) bool { return o.Name == cl.Name })
	c.Clusters = append(c.Clusters, cl)
	slices.SortFunc(c.Clusters, func(a, b cluster) int { return strings.Compare(a.Name, b.Name) })
}

// remove deletes the cluster named name and clears the default if it was
// that cluster. It reports whether the cluster existed.
func (c *config) remove(name string) bool {
	n := len(c.Clusters)
	c.Clusters = slices.DeleteFunc(c.Clusters, func(o cluster) bool { return o.Name == name })
	if c.Default == name {
		c.Default = ""
	}
	return len(c.Clusters) != n
}

// validateURL checks that raw is an absolute http or https URL.
func validateURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("invalid controller URL %q: want http://HOST:PORT or https://HOST", raw)
	}
	return nil
}

// configPath returns where the configuration file lives: $GANTRY_CONFIG when
// set, else $XDG_CONFIG_HOME/gantry/config.json (when absolute), else
// $HOME/.config/gantry/config.json.
func configPath(getenv func(string) string) (string, error) {
	if p := getenv("GANTRY_CONFIG"); p != "" {
		return p, nil
	}
	if x := getenv("XDG_CONFIG_HOME"); filepath.IsAbs(x) {
		return filepath.Join(x, "gantry", "config.json"), nil
	}
	if h := getenv("HOME"); h != "" {
		return filepath.Join(h, ".config", "gantry", "config.json"), nil
	}
	return "", errors.New("cannot locate the config file: set HOME or GANTRY_CONFIG")
}

// maxConfigSize bounds the configuration file read, in bytes.
const maxConfigSize = 1 << 20

// loadConfig reads the configuration file at path. A missing file is an
// empty configuration.
func loadConfig(path string) (*config, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &config{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	if len(b) > maxConfigSize {
		return nil, fmt.Errorf("read config %s: larger than %d bytes", path, maxConfigSize)
	}
	var c config
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("read config %s: %w", path, err)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("read config %s: %w", path, err)
	}
	return &c, nil
}

// saveConfig writes c to path atomically: a temporary file in the same
// directory, mode 0600, synced and renamed over path. Missing directories
// are created with mode 0700.
func saveConfig(path string, c *config) (err error) {
	if err := c.Validate(); err != nil {
		return fmt.Errorf("save config: %w", err)
	}
	if c.Clusters == nil {
		c.Clusters = []cluster{}
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("save config: %w", err)
	}
	b = append(b, '\n')
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("save config: %w", err)
	}
	f, err := os.CreateTemp(dir, ".config-*.json")
	if err != nil {
		return fmt.Errorf("save config: %w", err)
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return fmt.Errorf("save config: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		return fmt.Errorf("save config: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("save config: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("save config: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("save config: %w", err)
	}
	return nil
}
