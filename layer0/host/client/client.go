// Package client is the typed Go client of the host agent's HTTP API, and
// the API's wire types.
//
// The API (every /v1 path needs "Authorization: Bearer <token>"):
//
//	GET  /healthz                             200 {"status":"ok"}, open
//	GET  /v1/jobs                             200 [Job], sorted by job ID
//	GET  /v1/jobs/{id}/log?lines=N&follow=1   200 LogLine per line (NDJSON): the
//	                                          last N kept lines (0: all), then with
//	                                          follow=1 new ones until the container stops
//	POST /v1/jobs/{id}/kill                   204; 404 job_not_found; 409 conflict
//	POST /v1/jobs/{id}/attach                 101 (Upgrade: gantry-attach/1), then the
//	                                          frames of package attach; see Attach
//	POST /v1/gc                               200 GCResult; body GCRequest: removes the
//	                                          cluster's exited containers, the volumes of
//	                                          deleted apps, stale platform images
//	GET  /v1/images/save?ref=REF              200 application/x-tar: `docker save` of the
//	                                          local image REF, then the trailer
//	                                          Gantry-Save-Result; 400 bad_request for a
//	                                          malformed reference; 404 image_not_found
//
// Errors have the shape {"error": {"code": "...", "message": "..."}}.
package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// RequestTimeout bounds every call except the body of a log stream.
const RequestTimeout = 30 * time.Second

// Client calls one host agent's API. It is safe for concurrent use.
type Client struct {
	base  string
	token string
	http  *http.Client
}

// New returns a client of the agent at baseURL (e.g. keyspace.Host.APIURL)
// that authenticates with token.
func New(baseURL, token string) *Client {
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ResponseHeaderTimeout: RequestTimeout,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   4,
	}
	return &Client{base: strings.TrimRight(baseURL, "/"), token: token, http: &http.Client{Transport: tr}}
}

// Health checks that the agent answers.
func (c *Client) Health(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, RequestTimeout)
	defer cancel()
	resp, err := c.do(ctx, http.MethodGet, "/healthz")
	if err != nil {
		return fmt.Errorf("host health: %w", err)
	}
	resp.Body.Close()
	return nil
}

// ListJobs returns the jobs on the host, sorted by job ID.
func (c *Client) ListJobs(ctx context.Context) ([]Job, error) {
	ctx, cancel := context.WithTimeout(ctx, RequestTimeout)
	defer cancel()
	resp, err := c.do(ctx, http.MethodGet, "/v1/jobs")
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	defer resp.Body.Close()
	var jobs []Job
	if err := json.NewDecoder(resp.Body).Decode(&jobs); err != nil {
		return nil, fmt.Errorf("list jobs: decode: %w", err)
	}
	return jobs, nil
}

// Usage returns the host's own CPU, memory and disk use at the agent's
// last reading.
func (c *Client) Usage(ctx context.Context) (Usage, error) {
	ctx, cancel := context.WithTimeout(ctx, RequestTimeout)
	defer cancel()
	resp, err := c.do(ctx, http.MethodGet, "/v1/usage")
	if err != nil {
		return Usage{}, fmt.Errorf("host usage: %w", err)
	}
	defer resp.Body.Close()
	var u Usage
	if err := json.NewDecoder(resp.Body).Decode(&u); err != nil {
		return Usage{}, fmt.Errorf("host usage: decode: %w", err)
	}
	return u, nil
}

// Metrics returns the agent's /metrics, parsed from the Prometheus text
// format, by metric name.
func (c *Client) Metrics(ctx context.Context) (map[string]*dto.MetricFamily, error) {
	ctx, cancel := context.WithTimeout(ctx, RequestTimeout)
	defer cancel()
	resp, err := c.do(ctx, http.MethodGet, "/metrics")
	if err != nil {
		return nil, fmt.Errorf("host metrics: %w", err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(io.LimitReader(resp.Body, maxMetricsSize))
	if err != nil {
		return nil, fmt.Errorf("host metrics: %w", err)
	}
	return families, nil
}

// maxMetricsSize bounds an agent's /metrics, in bytes.
const maxMetricsSize = 64 << 20

// KillJob sends SIGKILL to the job's container. The job crashes, and the
// scheduler replaces it.
func (c *Client) KillJob(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, RequestTimeout)
	defer cancel()
	resp, err := c.do(ctx, http.MethodPost, "/v1/jobs/"+url.PathEscape(id)+"/kill")
	if err != nil {
		return fmt.Errorf("kill job %s: %w", id, err)
	}
	resp.Body.Close()
	return nil
}

// LogOptions selects what Logs streams.
type LogOptions struct {
	// Lines is how many of the last kept lines to send first; zero sends
	// every kept line.
	Lines int
	// Follow keeps the stream open and sends new lines as they come, until
	// the job's container stops or the context ends.
	Follow bool
}

// LogStream is an open log stream; call Next until it returns io.EOF, then
// Close.
type LogStream struct {
	body   io.ReadCloser
	sc     *bufio.Scanner
	cancel context.CancelFunc
}

// Logs opens the output of job id. The stream ends when ctx ends.
func (c *Client) Logs(ctx context.Context, id string, opts LogOptions) (*LogStream, error) {
	q := url.Values{}
	if opts.Lines > 0 {
		q.Set("lines", strconv.Itoa(opts.Lines))
	}
	if opts.Follow {
		q.Set("follow", "1")
	}
	path := "/v1/jobs/" + url.PathEscape(id) + "/log"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	ctx, cancel := context.WithCancel(ctx)
	resp, err := c.do(ctx, http.MethodGet, path)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("logs of job %s: %w", id, err)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	return &LogStream{body: resp.Body, sc: sc, cancel: cancel}, nil
}

// Next returns the next line, or io.EOF when the stream ended normally.
func (s *LogStream) Next() (LogLine, error) {
	if !s.sc.Scan() {
		if err := s.sc.Err(); err != nil {
			return LogLine{}, fmt.Errorf("read log stream: %w", err)
		}
		return LogLine{}, io.EOF
	}
	var l LogLine
	if err := json.Unmarshal(s.sc.Bytes(), &l); err != nil {
		return LogLine{}, fmt.Errorf("decode log line: %w", err)
	}
	return l, nil
}

// Close ends the stream. It is safe to call more than once.
func (s *LogStream) Close() error {
	s.cancel()
	return s.body.Close()
}

// do sends a request and turns a non-2xx answer into an *Error.
func (c *Client) do(ctx context.Context, method, path string) (*http.Response, error) {
	return c.send(ctx, method, path, nil)
}

// send is do with a JSON body, none when body is nil.
func (c *Client) send(ctx context.Context, method, path string, body []byte) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var eb ErrorBody
	if json.Unmarshal(msg, &eb) == nil && eb.Error != nil && eb.Error.Code != "" {
		eb.Error.Status = resp.StatusCode
		return nil, eb.Error
	}
	return nil, &Error{Status: resp.StatusCode, Code: codeOfStatus(resp.StatusCode), Message: strings.TrimSpace(string(msg))}
}

// codeOfStatus picks the generic code of a status for an answer without an
// error body.
func codeOfStatus(status int) string {
	for _, c := range codes {
		if c.status == status && !errors.Is(c.err, ErrJobNotFound) && !errors.Is(c.err, ErrImageNotFound) {
			return c.code
		}
	}
	return "internal"
}
