package controller

import (
	"cmp"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/jackc/pgx/v5/pgconn"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer0/sealed"
	"github.com/gantryhq/gantry/layer1/appmetrics"
	"github.com/gantryhq/gantry/layer1/blobstore"
	"github.com/gantryhq/gantry/layer1/controller/types"
	logclient "github.com/gantryhq/gantry/layer1/logaggregator/client"
)

// Defaults of the Config fields whose zero value means a default.
const (
	// DefaultDomain is the app domain when Config.Domain is empty.
	DefaultDomain = "localhost"
	// DefaultMaxProcessCount is the highest count of one process type
	// when Config.MaxProcessCount is 0.
	DefaultMaxProcessCount = 100
	// DefaultResyncInterval is the period of the full etcd re-sync when
	// Config.ResyncInterval is 0.
	DefaultResyncInterval = 30 * time.Second
	// DefaultDeployTimeout is how long a deployment waits for the new
	// release's jobs when Config.DeployTimeout is 0.
	DefaultDeployTimeout = 120 * time.Second
	// DefaultBuildTimeout bounds a build job when Config.BuildTimeout is 0.
	DefaultBuildTimeout = 30 * time.Minute
	// DefaultBuildMemory is the memory limit of a build job when
	// Config.BuildMemory is 0.
	DefaultBuildMemory = 2 << 30
	// DefaultSlugsKept is how many of an app's newest releases keep their
	// slugs when Config.SlugsKept is 0.
	DefaultSlugsKept = 10
	// DefaultGCInterval is the period of the garbage collection when
	// Config.GCInterval is 0.
	DefaultGCInterval = time.Hour
	// DefaultDiskWarningPercent is the disk warning threshold when
	// Config.DiskWarningPercent is 0.
	DefaultDiskWarningPercent = appmetrics.DefaultDiskWarningPercent
	// DefaultHostRemoveWait is the wait of DELETE /v1/hosts/{host} for
	// the scheduler when Config.HostRemoveWait is 0.
	DefaultHostRemoveWait = 20 * time.Second
)

// Config configures the controller.
type Config struct {
	// DatabaseURL is the pgx connection string of the controller's
	// database. Required.
	DatabaseURL string
	// Addr is the TCP listen address of the API, e.g. "127.0.0.1:7070".
	// Required by Run; New ignores it.
	Addr string
	// Cluster is the cluster ID: /v1/info reports it, and every etcd key
	// the controller writes lives under keyspace.New(Cluster). Required.
	Cluster string
	// Etcd is the client of the cluster's etcd, where the controller
	// mirrors formations and routes and reads jobs and hosts. Required;
	// the caller closes it.
	Etcd *clientv3.Client
	// HostToken is the bearer token of the host agents' API, used to kill
	// jobs. Required.
	HostToken string
	// MaxProcessCount is the highest count a process type can be scaled
	// to. Zero means DefaultMaxProcessCount (100).
	MaxProcessCount int
	// ResyncInterval is the period of the full re-sync of the etcd mirror
	// from PostgreSQL (which also resumes deployments). Zero means
	// DefaultResyncInterval (30 s).
	ResyncInterval time.Duration
	// DeployTimeout is how long a deployment waits for the new release's
	// jobs to be up before it gives up and keeps the old release. Zero
	// means DefaultDeployTimeout (120 s).
	DeployTimeout time.Duration
	// Domain is the apps' domain: app "demo" is served at
	// demo.<Domain>. Empty means DefaultDomain ("localhost").
	Domain string
	// GitURL is the base SSH URL of the git server, e.g.
	// "ssh://git@127.0.0.1:2222"; app "demo" is pushed to
	// GitURL+"/demo.git". Empty leaves the apps' git_url empty.
	GitURL string
	// GitHostKey is the git server's SSH host key in the authorized_keys
	// format, reported by /v1/info so that clients can pin it before their
	// first push. Empty reports none.
	GitHostKey string
	// RouterHTTP is the router's public HTTP URL, e.g.
	// "http://localhost:8080". An app's web_url takes its scheme and port
	// with the host <app>.<Domain>. Empty leaves web_url to RouterHTTPS.
	RouterHTTP string
	// RouterHTTPS is the router's public HTTPS URL, e.g.
	// "https://localhost:8443", used for web_url when RouterHTTP is empty.
	// Both empty leave the apps' web_url empty.
	RouterHTTPS string
	// InternalURL is the base URL at which the host agents reach this
	// controller, e.g. "http://127.0.0.1:7070": the job specs of builds and
	// of slug releases name blobs under InternalURL+"/v1/blobs/", which the
	// agents fetch and upload with their HostToken. Empty in Run means
	// "http://" and the listen address (a loopback address for an
	// unspecified host); empty with New leaves builds and slug releases
	// unable to run (builds answer 503).
	InternalURL string
	// BuilderImage is the image build jobs run `gantryd slugbuilder` in,
	// e.g. "gantry/builder:bookworm-1" (deploy/stack). Empty makes builds
	// answer 503.
	BuilderImage string
	// StackImage is the image that runs the releases built from source
	// (`gantryd slugrunner start`), e.g. "gantry/stack:bookworm-1".
	// Each such release records it, so a later change applies to later
	// builds only. Empty makes builds answer 503.
	StackImage string
	// BuildEnv is added to the environment of build jobs, e.g. the
	// platform's GOPROXY and GOFLAGS; an app's config vars of the same
	// names take precedence inside the build. Nil means none.
	BuildEnv map[string]string
	// BuildTimeout bounds one build job, from its placement to its end.
	// Zero means DefaultBuildTimeout (30 minutes).
	BuildTimeout time.Duration
	// BuildMemory is the memory limit of a build job, in bytes. Zero means
	// DefaultBuildMemory (2 GiB).
	BuildMemory int64
	// SlugsKept is how many of an app's newest releases keep their slugs
	// in the blobstore (the current release and one being deployed always
	// do); older slugs are deleted after each build and by the garbage
	// collection, and their releases can no longer be rolled back to.
	// Zero means DefaultSlugsKept (10).
	SlugsKept int
	// GCInterval is the period of the garbage collection (see POST
	// /v1/gc), whose first pass runs at start. Zero means
	// DefaultGCInterval (1 hour).
	GCInterval time.Duration
	// Events receives the platform events of the apps (deploys, scales,
	// restarts) for their logs, and the controller's warnings about the
	// platform (a host's disk past DiskWarningPercent) for the log of the
	// system app gantry-controller. Nil discards them.
	Events EventSink
	// DiskWarningPercent is the part of a host's data disk in use (the
	// file systems of its agent's state dir and of Docker's root), in
	// percent from 1 to 100, at or above which the controller warns in its
	// log and in the log of gantry-controller: once when a disk passes it,
	// and once when it falls back under by appmetrics.DiskHysteresisPercent
	// points. Zero means DefaultDiskWarningPercent (85).
	DiskWarningPercent int
	// HostRemoveWait bounds the wait of DELETE /v1/hosts/{host} (gantry
	// host remove) for the scheduler to take the removed host's jobs off
	// it; past it the answer is 202 and the scheduler finishes on its
	// own. Zero means DefaultHostRemoveWait (20 s); it must stay under
	// the CLI's request timeout (30 s).
	HostRemoveWait time.Duration
	// LogURL is the base URL of a log aggregator, e.g.
	// "http://127.0.0.1:7072". GET /v1/apps/{app}/log queries, with
	// HostToken, the aggregators the hosts publish in their records
	// (keyspace.Host.LogURL), and this one for a host that publishes
	// none or while no host is registered. Empty, with no host
	// publishing one, makes that endpoint answer 503.
	LogURL string
	// MetricsFile is where the apps' metric history (the last 24 h of
	// their key series, see package metricstore) is saved every minute and
	// at shutdown, and read at start. Empty keeps it in memory only.
	MetricsFile string
	// SecretsKey is the sealed.KeySize-byte key that seals the private keys
	// of route certificates and the ACME account key in PostgreSQL
	// (gantryd up keeps it in <data>/secrets.key, mode 0600). Nil stores
	// uploaded keys as they are and cannot use ACME.
	SecretsKey []byte
	// ACME, when set, obtains a certificate for every custom route added
	// without one (wildcards excepted). Nil leaves such routes on the
	// router's default certificate. It needs SecretsKey.
	ACME *ACMEConfig
	// Version is the version /v1/info reports.
	Version string
	// Logger receives the request log and errors. Nil discards them.
	Logger *slog.Logger

	// TLS, when set, makes the API's listener serve TLS with it as well
	// as plain HTTP, told apart by a connection's first byte (Run): a
	// joining host asks JoinPath over TLS. Nil serves plain HTTP only.
	TLS *tls.Config
	// Join answers the hosts that join the cluster (JoinPath, over TLS);
	// nil answers them 404.
	Join JoinFunc
	// ReusePort binds Addr with SO_REUSEPORT (Run), so that a new
	// controller job can listen on the port of the old one while a
	// deployment replaces it.
	ReusePort bool
	// Ready, when not nil, is called once Run listens and the server is
	// made, before it serves: the job's readiness signal.
	Ready func()
}

// ACMEConfig configures the certificates the controller obtains with ACME
// (RFC 8555) for the custom routes.
type ACMEConfig struct {
	// Email is the contact of the ACME account. Required.
	Email string
	// Directory is the ACME directory URL. Empty means Let's Encrypt's
	// production directory (acme.LetsEncrypt).
	Directory string
	// CAFile is a PEM bundle trusted, besides the system roots, to reach
	// the ACME server (a private one, such as Pebble). Empty means the
	// system roots only.
	CAFile string
	// RenewBefore is how long before expiry a certificate is renewed.
	// Zero means DefaultRenewBefore (30 days).
	RenewBefore time.Duration
	// CheckInterval is how often the routes are checked for a certificate
	// to obtain or renew (adding a route checks at once). Zero means
	// DefaultCertCheckInterval (1 minute).
	CheckInterval time.Duration
	// Now is the clock that decides renewals and retries. Nil means
	// time.Now.
	Now func() time.Time
}

// Defaults of the ACMEConfig fields whose zero value means a default.
const (
	// DefaultRenewBefore is ACMEConfig.RenewBefore when zero.
	DefaultRenewBefore = 30 * 24 * time.Hour
	// DefaultCertCheckInterval is ACMEConfig.CheckInterval when zero.
	DefaultCertCheckInterval = time.Minute
)

// Validate reports whether the configuration is usable by Run.
func (c Config) Validate() error {
	if err := c.validateForNew(); err != nil {
		return err
	}
	if c.Addr == "" {
		return errors.New("controller: Addr is required")
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("controller: Addr %q: %w", c.Addr, err)
	}
	return nil
}

// validateForNew checks everything but Addr.
func (c Config) validateForNew() error {
	if c.DatabaseURL == "" {
		return errors.New("controller: DatabaseURL is required")
	}
	if _, err := keyspace.New(c.Cluster); err != nil {
		return fmt.Errorf("controller: Cluster: %w", err)
	}
	if c.Etcd == nil {
		return errors.New("controller: Etcd is required")
	}
	if c.HostToken == "" {
		return errors.New("controller: HostToken is required")
	}
	switch {
	case c.MaxProcessCount < 0:
		return fmt.Errorf("controller: MaxProcessCount %d is negative", c.MaxProcessCount)
	case c.ResyncInterval < 0:
		return fmt.Errorf("controller: ResyncInterval %s is negative", c.ResyncInterval)
	case c.DeployTimeout < 0:
		return fmt.Errorf("controller: DeployTimeout %s is negative", c.DeployTimeout)
	case c.BuildTimeout < 0:
		return fmt.Errorf("controller: BuildTimeout %s is negative", c.BuildTimeout)
	case c.BuildMemory < 0:
		return fmt.Errorf("controller: BuildMemory %d is negative", c.BuildMemory)
	case c.SlugsKept < 0:
		return fmt.Errorf("controller: SlugsKept %d is negative", c.SlugsKept)
	case c.GCInterval < 0:
		return fmt.Errorf("controller: GCInterval %s is negative", c.GCInterval)
	case c.HostRemoveWait < 0:
		return fmt.Errorf("controller: HostRemoveWait %s is negative", c.HostRemoveWait)
	case c.DiskWarningPercent < 0 || c.DiskWarningPercent > 100:
		return fmt.Errorf("controller: DiskWarningPercent %d is not from 1 to 100 (or 0 for %d)", c.DiskWarningPercent, DefaultDiskWarningPercent)
	}
	if c.SecretsKey != nil && len(c.SecretsKey) != sealed.KeySize {
		return fmt.Errorf("controller: SecretsKey is %d bytes, want %d", len(c.SecretsKey), sealed.KeySize)
	}
	if a := c.ACME; a != nil {
		switch {
		case a.Email == "":
			return errors.New("controller: ACME.Email is required")
		case c.SecretsKey == nil:
			return errors.New("controller: ACME needs SecretsKey, to seal the keys it obtains")
		case a.RenewBefore < 0:
			return fmt.Errorf("controller: ACME.RenewBefore %s is negative", a.RenewBefore)
		case a.CheckInterval < 0:
			return fmt.Errorf("controller: ACME.CheckInterval %s is negative", a.CheckInterval)
		}
		if a.Directory != "" {
			if u, err := url.Parse(a.Directory); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				return fmt.Errorf("controller: ACME.Directory %q must be an https URL", a.Directory)
			}
		}
	}
	if c.LogURL != "" {
		if err := logclient.ValidateURL(c.LogURL); err != nil {
			return fmt.Errorf("controller: LogURL: %w", err)
		}
	}
	if c.InternalURL != "" {
		u, err := url.Parse(c.InternalURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.Trim(u.Path, "/") != "" {
			return fmt.Errorf("controller: InternalURL %q must be a URL like http://127.0.0.1:7070", c.InternalURL)
		}
	}
	for _, img := range []struct{ name, ref string }{{"BuilderImage", c.BuilderImage}, {"StackImage", c.StackImage}} {
		if img.ref == "" {
			continue
		}
		if _, err := reference.ParseAnyReference(img.ref); err != nil {
			return fmt.Errorf("controller: %s %q: %w", img.name, img.ref, err)
		}
	}
	for name := range c.BuildEnv {
		if !envName.MatchString(name) {
			return fmt.Errorf("controller: BuildEnv: %q is not an environment variable name", name)
		}
	}
	if _, err := pgconn.ParseConfig(c.DatabaseURL); err != nil {
		return fmt.Errorf("controller: DatabaseURL: %w", err)
	}
	if strings.ContainsAny(c.Domain, "/: ") {
		return fmt.Errorf("controller: Domain %q must be a bare domain name", c.Domain)
	}
	if c.Domain != "" && (strings.HasPrefix(c.Domain, "*") || types.ValidateDomain(c.Domain) != nil) {
		return fmt.Errorf("controller: Domain %q must be a lower-case domain name", c.Domain)
	}
	if c.GitURL != "" {
		u, err := url.Parse(c.GitURL)
		if err != nil || u.Scheme == "" || u.Host == "" {
			return fmt.Errorf("controller: GitURL %q must be a URL like ssh://git@host:port", c.GitURL)
		}
	}
	for _, r := range []struct{ name, value, scheme string }{
		{"RouterHTTP", c.RouterHTTP, "http"},
		{"RouterHTTPS", c.RouterHTTPS, "https"},
	} {
		if r.value == "" {
			continue
		}
		u, err := url.Parse(r.value)
		if err != nil || u.Scheme != r.scheme || u.Host == "" || strings.Trim(u.Path, "/") != "" {
			return fmt.Errorf("controller: %s %q must be a URL like %s://host:port", r.name, r.value, r.scheme)
		}
	}
	return nil
}

// envName matches the environment variable names of BuildEnv.
var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (c Config) buildTimeout() time.Duration { return cmp.Or(c.BuildTimeout, DefaultBuildTimeout) }

func (c Config) buildMemory() int64 { return cmp.Or(c.BuildMemory, DefaultBuildMemory) }

func (c Config) slugsKept() int { return cmp.Or(c.SlugsKept, DefaultSlugsKept) }

func (c Config) gcInterval() time.Duration { return cmp.Or(c.GCInterval, DefaultGCInterval) }

func (c Config) hostRemoveWait() time.Duration {
	return cmp.Or(c.HostRemoveWait, DefaultHostRemoveWait)
}

func (c Config) diskWarningPercent() int {
	return cmp.Or(c.DiskWarningPercent, DefaultDiskWarningPercent)
}

// blobURL is the URL of a blob as the host agents reach it.
func (c Config) blobURL(path string) string {
	return strings.TrimRight(c.InternalURL, "/") + blobstore.PathPrefix + path
}

func (c Config) maxProcessCount() int { return cmp.Or(c.MaxProcessCount, DefaultMaxProcessCount) }

func (c Config) resyncInterval() time.Duration {
	return cmp.Or(c.ResyncInterval, DefaultResyncInterval)
}

func (c Config) deployTimeout() time.Duration { return cmp.Or(c.DeployTimeout, DefaultDeployTimeout) }

// defaultDomain returns the domain of app's default route.
func (c Config) defaultDomain(app string) string {
	return app + "." + c.domain()
}

func (c Config) domain() string {
	if c.Domain == "" {
		return DefaultDomain
	}
	return c.Domain
}

// certDomain returns the platform's domain when, with ACME on, the apps'
// default domains get certificates (see certifiable), else "".
func (c Config) certDomain() string {
	if !certifiable(c.domain()) {
		return ""
	}
	return c.domain()
}

// certifiable reports whether the names under domain can get certificates
// from an ACME server: domain has at least two labels and is neither an
// IP address (nor ends in a numeric label, as an IPv4 address does) nor
// localhost or a name under it, which resolve to the machine itself
// (RFC 6761) and which no ACME server can reach. Other names, such as
// those under .internal with a private ACME server, are attempted; a
// refusal shows in the route list with the server's problem.
func certifiable(domain string) bool {
	if domain == "localhost" || strings.HasSuffix(domain, ".localhost") || net.ParseIP(domain) != nil {
		return false
	}
	i := strings.LastIndexByte(domain, '.')
	if i < 0 {
		return false
	}
	last := domain[i+1:]
	return strings.ContainsFunc(last, func(r rune) bool { return r < '0' || r > '9' })
}

// gitURL returns where app is pushed, or "".
func (c Config) gitURL(app string) string {
	if c.GitURL == "" {
		return ""
	}
	return strings.TrimSuffix(c.GitURL, "/") + "/" + app + ".git"
}

// webURL returns where the router serves app, or "": over HTTP when the
// controller knows the router's HTTP URL, else over HTTPS.
func (c Config) webURL(app string) string {
	if c.RouterHTTP != "" {
		return c.appURL(c.RouterHTTP, app)
	}
	return c.appURL(c.RouterHTTPS, app)
}

// appURLs returns every URL of app's default domain: HTTP, then HTTPS,
// for the router URLs that are set.
func (c Config) appURLs(app string) []string {
	var urls []string
	for _, base := range []string{c.RouterHTTP, c.RouterHTTPS} {
		if u := c.appURL(base, app); u != "" {
			urls = append(urls, u)
		}
	}
	return urls
}

// appURL returns the URL of app's default domain on the router listener
// base (a URL like "http://localhost:8080"), or "" when base is "".
func (c Config) appURL(base, app string) string {
	if base == "" {
		return ""
	}
	u, err := url.Parse(base)
	if err != nil {
		return "" // Validate rejects such a URL
	}
	host := c.defaultDomain(app)
	if port := u.Port(); port != "" && !(u.Scheme == "http" && port == "80") && !(u.Scheme == "https" && port == "443") {
		host = net.JoinHostPort(host, port)
	}
	return u.Scheme + "://" + host
}

// databaseName describes DatabaseURL for the log without its password.
func (c Config) databaseName() string {
	pc, err := pgconn.ParseConfig(c.DatabaseURL)
	if err != nil {
		return "(invalid)"
	}
	return fmt.Sprintf("%s@%s/%s", pc.User, pc.Host, pc.Database)
}
