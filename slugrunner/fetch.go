package slugrunner

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"
)

// responseHeaderTimeout bounds the wait for the blobstore's response headers.
const responseHeaderTimeout = 30 * time.Second

var digestPattern = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// isURL reports whether slug names an http(s) URL rather than a path.
func isURL(slug string) bool {
	return strings.HasPrefix(slug, "http://") || strings.HasPrefix(slug, "https://")
}

// describeSlug returns the slug's location without any query string or
// credentials, for logs and errors.
func describeSlug(slug string) string {
	if !isURL(slug) {
		return slug
	}
	u, err := url.Parse(slug)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Scheme + "://" + u.Host + u.Path
}

// slugReader streams a slug while computing its sha256.
type slugReader struct {
	body io.ReadCloser
	hash hash.Hash
	want string // hex digest, "" when not checked
}

func (s *slugReader) Read(p []byte) (int, error) {
	n, err := s.body.Read(p)
	s.hash.Write(p[:n])
	return n, err
}

// Verify reads what is left of the slug and compares its digest with the
// expected one, if any.
func (s *slugReader) Verify() error {
	if s.want == "" {
		return nil
	}
	if _, err := io.Copy(io.Discard, s); err != nil {
		return fmt.Errorf("read slug: %w", err)
	}
	if got := hex.EncodeToString(s.hash.Sum(nil)); got != s.want {
		return fmt.Errorf("%w: got sha256:%s, want sha256:%s", ErrDigestMismatch, got, s.want)
	}
	return nil
}

func (s *slugReader) Close() error { return s.body.Close() }

// openSlug opens the slug named by cfg.Slug, a path or an http(s) URL.
// The request lives as long as ctx.
func openSlug(ctx context.Context, cfg Config) (*slugReader, error) {
	body, err := openSlugBody(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return &slugReader{body: body, hash: sha256.New(), want: strings.TrimPrefix(cfg.Digest, "sha256:")}, nil
}

func openSlugBody(ctx context.Context, cfg Config) (io.ReadCloser, error) {
	if !isURL(cfg.Slug) {
		f, err := os.Open(cfg.Slug)
		if err != nil {
			return nil, fmt.Errorf("open slug: %w", err)
		}
		return f, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cfg.Slug, nil)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrFetch, describeSlug(cfg.Slug), err)
	}
	if cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+cfg.Token)
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.ResponseHeaderTimeout = responseHeaderTimeout
	client := &http.Client{Transport: transport}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrFetch, describeSlug(cfg.Slug), err)
	}
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		return nil, fmt.Errorf("%w %s: %s: %s", ErrFetch, describeSlug(cfg.Slug), resp.Status, strings.TrimSpace(string(msg)))
	}
	return &httpBody{ReadCloser: resp.Body, transport: transport}, nil
}

// httpBody is a response body whose Close also drops the connections of
// the transport made for it.
type httpBody struct {
	io.ReadCloser
	transport *http.Transport
}

func (b *httpBody) Close() error {
	err := b.ReadCloser.Close()
	b.transport.CloseIdleConnections()
	return err
}
