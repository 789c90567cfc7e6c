package router

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gantryhq/gantry/layer0/etcdwatch"
	"github.com/gantryhq/gantry/router/types"
)

// acmeChallengePath is the path prefix of ACME HTTP-01 challenges (RFC 8555
// section 8.3). Requests under it are answered from the challenge keys in
// etcd, for any host, and are never redirected to HTTPS.
const acmeChallengePath = "/.well-known/acme-challenge/"

// followChallenges keeps r.challenges in step with the challenge answers in
// etcd until ctx is done.
func (r *Router) followChallenges(ctx context.Context) error {
	ch, err := etcdwatch.Watch(ctx, etcdwatch.Config{Client: r.cfg.Etcd, Prefix: r.space.ACMEChallenges(), Logger: r.log})
	if err != nil {
		return fmt.Errorf("watch acme challenges: %w", err)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case s, ok := <-ch:
			if !ok {
				return nil
			}
			m := make(map[string]string, len(s.KVs))
			for k, v := range s.KVs {
				m[strings.TrimPrefix(k, r.space.ACMEChallenges())] = string(v)
			}
			r.challenges.Store(&m)
		}
	}
}

// challenge answers an HTTP-01 challenge request with its key
// authorization and returns true, or returns false when the router knows
// no such token (the request is then routed as usual, without redirect).
func (f *frontend) challenge(x *exchange) bool {
	token, ok := strings.CutPrefix(requestPath(x.req), acmeChallengePath)
	if !ok || token == "" || (x.req.Method != http.MethodGet && x.req.Method != http.MethodHead) {
		return false
	}
	var keyAuth string
	known := false
	if m := f.r.challenges.Load(); m != nil {
		keyAuth, known = (*m)[token]
	}
	if !known {
		// The controller asks the ACME server to validate as soon as
		// the answer is in etcd, and the watch may not have brought it
		// here yet (a loaded host): read it from etcd.
		if keyAuth, known = f.r.lookupChallenge(x.req.Context(), token); !known {
			return false
		}
	}
	h := x.w.Header()
	h["Content-Type"] = []string{"text/plain"}
	h["Content-Length"] = []string{strconv.Itoa(len(keyAuth))}
	h["Cache-Control"] = []string{"no-store"}
	h["X-Request-Id"] = x.idHeader()
	x.w.WriteHeader(http.StatusOK)
	x.status = http.StatusOK
	if x.req.Method == http.MethodGet {
		n, _ := io.WriteString(x.w, keyAuth)
		x.bytes = int64(n)
	}
	return true
}

// redirectsToHTTPS reports whether a request that reached the HTTP
// listener for route is redirected to HTTPS: the route's own https_only
// redirects whatever the certificate; the app's (AppHTTPSOnly) only once
// the router has a certificate for the host (hasCert), so that a domain
// still waiting for its ACME certificate keeps being served over HTTP.
// The ACME challenge path is never redirected: the ACME server follows
// no redirect to a listener that has no certificate yet.
func redirectsToHTTPS(route *types.Route, hasCert bool, req *http.Request) bool {
	if isChallenge(req) {
		return false
	}
	return route.HTTPSOnly || route.AppHTTPSOnly && hasCert
}

// isChallenge reports whether req asks for an ACME HTTP-01 challenge.
func isChallenge(req *http.Request) bool {
	return strings.HasPrefix(requestPath(req), acmeChallengePath)
}

// requestPath returns the path of req as sent, without the query: the
// router's own server sets RequestURI but not URL.
func requestPath(req *http.Request) string {
	uri := req.RequestURI
	if uri == "" || uri[0] != '/' {
		return req.URL.Path
	}
	if i := strings.IndexByte(uri, '?'); i >= 0 {
		uri = uri[:i]
	}
	return uri
}

// challengeLookupTimeout bounds the etcd read of a challenge token that
// the router's watch has not brought yet.
const challengeLookupTimeout = 2 * time.Second

// maxChallengeLookups bounds those reads at a time: anyone may ask for
// any token, and only the ACME server's few requests need them.
const maxChallengeLookups = 4

// lookupChallenge reads the answer for token from etcd. It reports false
// for a token that is not one (an ACME token is base64url), when too many
// lookups are running, and when etcd has no answer or does not reply in
// time.
func (r *Router) lookupChallenge(ctx context.Context, token string) (string, bool) {
	if len(token) > 256 || strings.TrimLeft(token, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
		return "", false
	}
	select {
	case r.challengeLookups <- struct{}{}:
		defer func() { <-r.challengeLookups }()
	default:
		return "", false
	}
	ctx, cancel := context.WithTimeout(ctx, challengeLookupTimeout)
	defer cancel()
	resp, err := r.cfg.Etcd.Get(ctx, r.space.ACMEChallenge(token))
	if err != nil {
		r.log.Warn("cannot read an ACME challenge answer from etcd", "token", token, "err", err)
		return "", false
	}
	if len(resp.Kvs) == 0 {
		return "", false
	}
	return string(resp.Kvs[0].Value), true
}
