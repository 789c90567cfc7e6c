// Package logread reads an app's log from the log aggregators of all the
// hosts of the cluster. Every host runs its own aggregator and publishes
// its URL in its host record (keyspace.Host.LogURL); the roles of a host
// ship the lines they see to their own host's aggregator, so an app's log
// is spread over the aggregators of the hosts its jobs ran on.
//
// A history query asks every aggregator for its last lines and merges
// them by time; a followed query merges the live streams of all of them,
// opens the stream of a host that registers later, and opens a stream
// again after it broke, from the last line it gave. An aggregator that
// cannot be reached is left out with a warning in the log; the answer
// fails only when none can be.
//
// No line is shipped to two aggregators (each role has one Shipper with
// one URL), so lines are not compared across aggregators; the URLs are,
// so two hosts that ship to one aggregator are read once.
package logread

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantryhq/gantry/layer0/etcdwatch"
	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer1/logaggregator/types"
)

const (
	// QueryTimeout bounds a query that does not follow, over all the
	// aggregators.
	QueryTimeout = 30 * time.Second
	// etcdTimeout bounds each read of the host records.
	etcdTimeout = 5 * time.Second
	// retryMin and retryMax bound the pause before a followed stream
	// that broke, or could not be opened, is opened again.
	retryMin = 500 * time.Millisecond
	retryMax = 10 * time.Second
	// maxResumeLines is the lines a stream opened again asks for: all
	// those since the last one it gave (the aggregator cuts it to its
	// history).
	maxResumeLines = 1000000
)

var (
	// ErrNoAggregator is returned when no host publishes a log
	// aggregator and there is no fallback.
	ErrNoAggregator = errors.New("no log aggregator is known")
	// ErrUnavailable is wrapped by the errors returned when no
	// aggregator answered.
	ErrUnavailable = errors.New("no log aggregator answered")
)

// Config configures a Reader.
type Config struct {
	// Etcd is the client of the cluster's etcd, where the hosts publish
	// their records; required.
	Etcd *clientv3.Client
	// Space is the cluster's key space; required (its zero value is not
	// a space).
	Space keyspace.Space
	// Fallback is the aggregator of a host whose record names none (an
	// agent of an older version), and the only one read while no host is
	// registered, e.g. "http://127.0.0.1:7072"; empty means none.
	Fallback string
	// Token is the bearer token the aggregators require (the platform's
	// host token); required.
	Token string
	// Client sends the queries; it must not bound a whole answer (a
	// followed one lasts as long as its reader). Nil means a client whose
	// dial takes at most 5 s and whose answers' heads come within 30 s.
	Client *http.Client
	// Logger receives the warnings about aggregators that cannot be
	// reached; nil discards them.
	Logger *slog.Logger
}

// Validate reports missing fields.
func (c Config) Validate() error {
	var errs []error
	if c.Etcd == nil {
		errs = append(errs, errors.New("an etcd client (Etcd) is required"))
	}
	if c.Space == (keyspace.Space{}) {
		errs = append(errs, errors.New("a key space (Space) is required"))
	}
	if c.Token == "" {
		errs = append(errs, errors.New("a token (Token) is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("log reader config: %w", err)
	}
	return nil
}

// defaultClient sends the queries when Config.Client is nil.
var defaultClient = &http.Client{
	Transport: &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		ResponseHeaderTimeout: 30 * time.Second,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
	},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// Reader reads apps' logs from the cluster's aggregators. It is safe for
// concurrent use.
type Reader struct {
	cfg    Config
	log    *slog.Logger
	client *http.Client
}

// New returns a Reader of cfg.
func New(cfg Config) (*Reader, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &Reader{cfg: cfg, log: cfg.Logger, client: cfg.Client}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.client == nil {
		r.client = defaultClient
	}
	return r, nil
}

// hostURLs maps host IDs to the aggregator URLs their records name ("" for
// none).
type hostURLs map[string]string

// readHosts reads the aggregator URL of every registered host.
func (r *Reader) readHosts(ctx context.Context) (hostURLs, error) {
	ctx, cancel := context.WithTimeout(ctx, etcdTimeout)
	defer cancel()
	resp, err := r.cfg.Etcd.Get(ctx, r.cfg.Space.Hosts(), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("read the hosts: %w", err)
	}
	kvs := make(map[string][]byte, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		kvs[string(kv.Key)] = kv.Value
	}
	return r.hostsOf(etcdwatch.Snapshot{KVs: kvs}), nil
}

// hostsOf returns the aggregators of the host records of snap.
func (r *Reader) hostsOf(snap etcdwatch.Snapshot) hostURLs {
	hosts := hostURLs{}
	for key, val := range snap.KVs {
		var h keyspace.Host
		if err := json.Unmarshal(val, &h); err != nil {
			r.log.Warn("undecodable host record", "key", key, "err", err)
			continue
		}
		hosts[keyspace.Last(key)] = h.LogURL
	}
	return hosts
}

// urls returns the distinct aggregator URLs of hosts, sorted: each host's,
// or the fallback for a host that names none; the fallback alone when no
// host is registered.
func (r *Reader) urls(hosts hostURLs) []string {
	set := map[string]bool{}
	for _, u := range hosts {
		if u = cmp.Or(u, r.cfg.Fallback); u != "" {
			set[strings.TrimRight(u, "/")] = true
		}
	}
	if len(hosts) == 0 && r.cfg.Fallback != "" {
		set[strings.TrimRight(r.cfg.Fallback, "/")] = true
	}
	return slices.Sorted(maps.Keys(set))
}

// sources returns the aggregators to read now. When etcd cannot be read
// it falls back to Config.Fallback alone, with a warning.
func (r *Reader) sources(ctx context.Context) ([]string, error) {
	hosts, err := r.readHosts(ctx)
	if err != nil {
		if r.cfg.Fallback == "" {
			return nil, err
		}
		r.log.Warn("cannot read the hosts' log aggregators; reading the controller's own alone", "url", r.cfg.Fallback, "err", err)
	}
	urls := r.urls(hosts)
	if len(urls) == 0 {
		return nil, ErrNoAggregator
	}
	return urls, nil
}

// line is one line of an answer, as the aggregator encoded it.
type line struct {
	time time.Time
	raw  []byte // one JSON object, without its line break
}

// History returns the last q.Lines lines of app's log that match q, over
// all the aggregators, in time order (lines of one time in the order of
// their aggregators' URLs), each a JSON object as the aggregators encode
// it (types.Line). q.Follow is ignored. An aggregator that does not
// answer is left out with a warning; the error wraps ErrUnavailable when
// none answered, or is ErrNoAggregator.
func (r *Reader) History(ctx context.Context, app string, q types.Query) ([][]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, QueryTimeout)
	defer cancel()
	urls, err := r.sources(ctx)
	if err != nil {
		return nil, err
	}
	q.Follow = false
	lines, ok, errs := r.histories(ctx, urls, app, q)
	if ok == 0 {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, errors.Join(errs...))
	}
	out := make([][]byte, len(lines))
	for i, l := range lines {
		out[i] = l.raw
	}
	return out, nil
}

// histories asks each of urls for the lines of q at once and returns the
// last q.Lines of them all in time order, how many answered, and the
// errors of the others (each logged).
func (r *Reader) histories(ctx context.Context, urls []string, app string, q types.Query) ([]line, int, []error) {
	answers := make([][]line, len(urls))
	errs := make([]error, len(urls))
	var wg sync.WaitGroup
	for i, u := range urls {
		wg.Go(func() { answers[i], errs[i] = r.fetch(ctx, u, app, q) })
	}
	wg.Wait()
	var all []line
	ok := 0
	for i, err := range errs {
		if err != nil {
			if ctx.Err() == nil || !errors.Is(err, context.Canceled) {
				r.log.Warn("log aggregator left out of a log query", "url", urls[i], "app", app, "err", err)
			}
			continue
		}
		ok++
		all = append(all, answers[i]...)
	}
	// Each answer is in time order; a stable sort keeps the order of the
	// lines of one time.
	slices.SortStableFunc(all, func(a, b line) int { return a.time.Compare(b.time) })
	if len(all) > q.Lines {
		all = all[len(all)-q.Lines:]
	}
	return all, ok, slices.DeleteFunc(errs, func(e error) bool { return e == nil })
}

// fetch reads the whole answer of one aggregator to q.
func (r *Reader) fetch(ctx context.Context, u, app string, q types.Query) ([]line, error) {
	resp, err := r.open(ctx, u, app, q)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var lines []line
	err = readLines(resp.Body, func(l line) error {
		lines = append(lines, l)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("log aggregator %s: read the answer: %w", u, err)
	}
	return lines, nil
}

// open sends q about app to the aggregator at u and returns its answer,
// which is 200.
func (r *Reader) open(ctx context.Context, u, app string, q types.Query) (*http.Response, error) {
	target := u + "/v1/apps/" + url.PathEscape(app) + "/log?" + q.Values().Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, fmt.Errorf("log aggregator %s: %w", u, err)
	}
	req.Header.Set("Authorization", "Bearer "+r.cfg.Token)
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("log aggregator %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		resp.Body.Close()
		return nil, fmt.Errorf("log aggregator %s answered %s: %s", u, resp.Status, strings.TrimSpace(string(body)))
	}
	return resp, nil
}

// readLines calls fn with each line of an NDJSON answer until it ends.
func readLines(body io.Reader, fn func(line) error) error {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 0, 64<<10), types.MaxWireLine+1)
	for sc.Scan() {
		b := sc.Bytes()
		if len(b) == 0 {
			continue
		}
		var t struct {
			Time time.Time `json:"time"`
		}
		if err := json.Unmarshal(b, &t); err != nil {
			return fmt.Errorf("a line that is not a log line: %w", err)
		}
		if err := fn(line{time: t.Time, raw: slices.Clone(b)}); err != nil {
			return err
		}
	}
	return sc.Err()
}

// Delete asks every aggregator to forget app's log. It tries them all and
// returns their errors joined; nil when there is no aggregator.
func (r *Reader) Delete(ctx context.Context, app string) error {
	ctx, cancel := context.WithTimeout(ctx, QueryTimeout)
	defer cancel()
	urls, err := r.sources(ctx)
	if errors.Is(err, ErrNoAggregator) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete the log of %s: %w", app, err)
	}
	errs := make([]error, len(urls))
	var wg sync.WaitGroup
	for i, u := range urls {
		wg.Go(func() { errs[i] = r.delete(ctx, u, app) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (r *Reader) delete(ctx context.Context, u, app string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, u+"/v1/apps/"+url.PathEscape(app)+"/log", nil)
	if err != nil {
		return fmt.Errorf("delete the log of %s at %s: %w", app, u, err)
	}
	req.Header.Set("Authorization", "Bearer "+r.cfg.Token)
	resp, err := r.client.Do(req)
	if err != nil {
		return fmt.Errorf("delete the log of %s at %s: %w", app, u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return fmt.Errorf("delete the log of %s: the log aggregator %s answered %s: %s", app, u, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}
