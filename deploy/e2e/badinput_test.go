package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// The apps of TestBadInput: healthy serves under load and every bad input
// aims at it; racer and restore take the cases that make releases when
// they work as they should (concurrent pushes, destroy, a config-only
// deploy that fails).
const (
	badHealthy = "healthy"
	badRacer   = "racer"
	badRestore = "restore"
	// badWildcard is a route of restore, valid by every rule.
	badWildcard = "*.wild.test"
)

// sshCloseDeadline bounds how long after it opened a connection that never
// completes an SSH handshake may stay open: the server's handshake timeout
// (about 30 s) with a margin for a loaded machine.
const sshCloseDeadline = 75 * time.Second

// TestBadInput sends bad input through the API, the CLI, git and SSH to a
// platform that runs a healthy app at web=2 under steady load through the
// router. Each case is refused with a 4xx (or a failing exit status) and a
// message naming the reason; afterwards the healthy app has lost no request
// and its releases, config, routes, formation and deploy settings are as
// they were, and the controller answered no 5xx.
func TestBadInput(t *testing.T) {
	p := newPlatform(t, "--deploy-timeout", "30s")
	requireStackImages(t)
	b := newBadInput(t, p)

	before := b.snapshot(t)
	l := startSteadyLoad(p.httpURL+"/", badHealthy+".localhost")
	b.openSSHProbes(t)

	cases := badInputCases()
	unexpected := map[string][]string{}
	byVia := map[string]int{}
	for _, c := range cases {
		byVia[c.via]++
		t.Run(c.via+"/"+c.name, func(t *testing.T) {
			o := c.send(b, t)
			problems := c.want.check(c.via, o)
			if len(problems) > 0 {
				unexpected[c.via+"/"+c.name] = problems
				t.Errorf("%s\n  got: %s", strings.Join(problems, "\n  "), o)
				return
			}
			t.Logf("refused as it should be: %s", o)
		})
	}

	l.end(t, "load on the healthy app during the bad-input suite", 1)
	// A bad input that was accepted may have started a deployment; its
	// outcome belongs in the comparison.
	b.waitDeployments(t, badHealthy)
	after := b.snapshot(t)
	for _, part := range slices.Sorted(maps.Keys(before)) {
		if before[part] != after[part] {
			t.Errorf("the healthy app's %s changed:\nbefore: %s\nafter:  %s", part, clip(before[part], 2000), clip(after[part], 2000))
		}
	}
	fives := controller5xx(p.logs.String())
	if len(fives) > 0 {
		t.Errorf("the controller answered %d requests with a 5xx:\n%s", len(fives), strings.Join(fives, "\n"))
	}

	vias := []string{}
	for _, v := range slices.Sorted(maps.Keys(byVia)) {
		vias = append(vias, fmt.Sprintf("%d %s", byVia[v], v))
	}
	for _, name := range slices.Sorted(maps.Keys(unexpected)) {
		t.Logf("unexpected: %s: %s", name, strings.Join(unexpected[name], "; "))
	}
	t.Logf("bad-input suite: %d cases (%s), %d unexpected; %d requests to the healthy app, %d failed; %d 5xx answers from the controller",
		len(cases), strings.Join(vias, ", "), len(unexpected), l.total(), l.failed.Load(), len(fives))
}

// badInput is the platform of TestBadInput and what its cases need.
type badInput struct {
	p       *platform
	key     string // a registered SSH key
	other   string // an SSH key never registered
	repo    string // the healthy app's work tree (remote "gantry")
	sshPort string
	client  *http.Client

	// Connections opened at the start that never complete an SSH
	// handshake; the SSH cases check that the server closed them.
	probesOpened time.Time
	silent       net.Conn // sends nothing
	garbage      net.Conn // sends an HTTP request instead of SSH
}

// newBadInput deploys the apps of the suite: healthy (a static site at
// web=2), restore (the same site at web=1 with the route badWildcard), and
// racer (no release).
func newBadInput(t *testing.T, p *platform) *badInput {
	t.Helper()
	for _, bin := range []string{"git", "ssh", "ssh-keygen"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s is required: %v", bin, err)
		}
	}
	b := &badInput{
		p:       p,
		key:     filepath.Join(p.home, ".ssh", "id_ed25519"),
		other:   filepath.Join(t.TempDir(), "unregistered"),
		repo:    t.TempDir(),
		sshPort: port(t, "ssh://"+p.sshAddr),
		client: &http.Client{
			Timeout: 30 * time.Second,
			// A redirect is an answer of its own, never followed.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
	if err := os.MkdirAll(filepath.Dir(b.key), 0o700); err != nil {
		t.Fatal(err)
	}
	sshKeygen(t, b.key)
	sshKeygen(t, b.other)
	p.ok("key", "add")

	copyDir(t, filepath.Join(repoRoot(), "slugbuilder", "testdata", "apps", "static"), b.repo)
	gitRun(t, b.repo, "init", "-q", "-b", "main")
	gitRun(t, b.repo, "add", ".")
	gitRun(t, b.repo, "commit", "-q", "-m", "a static site")
	if r := p.run(b.repo, nil, "create", badHealthy); r.code != 0 {
		t.Fatalf("create %s: %d %s %s", badHealthy, r.code, r.stdout, r.stderr)
	}
	if out, err := p.push(b.repo, b.key); err != nil {
		t.Fatalf("git push to %s: %v\n%s", badHealthy, err, out)
	}
	p.ok("scale", "-a", badHealthy, "web=2")

	p.ok("create", badRestore)
	if out, err := p.git(b.repo, b.key, "push", b.gitURL(badRestore), "main"); err != nil {
		t.Fatalf("git push to %s: %v\n%s", badRestore, err, out)
	}
	p.ok("route", "add", "-a", badRestore, badWildcard)
	p.ok("create", badRacer)

	eventually(t, 2*time.Minute, "healthy v1 at web=2", func() bool { return p.settled(badHealthy, 1, 2) })
	eventually(t, time.Minute, "the router to serve "+badRestore+" on "+badWildcard, func() bool {
		code, _, err := p.get("a.wild.test", "/")
		return err == nil && code == http.StatusOK
	})
	return b
}

// gitURL is the SSH URL of a repository path on the git receiver.
func (b *badInput) gitURL(repo string) string {
	return "ssh://git@127.0.0.1:" + b.sshPort + "/" + repo + ".git"
}

// api sends one request with the admin token (unless header sets its own
// Authorization) and reads the answer.
func (b *badInput) api(method, path string, body []byte, header http.Header) outcome {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, b.p.apiURL+strings.ReplaceAll(path, "{app}", badHealthy), bytes.NewReader(body))
	if err != nil {
		return outcome{problems: []string{"build the request: " + err.Error()}}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+b.p.token)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return outcome{problems: []string{"transport: " + err.Error()}}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return outcome{status: resp.StatusCode, problems: []string{"read the answer: " + err.Error()}}
	}
	return httpOutcome(resp.StatusCode, resp.Header.Get("Allow"), raw)
}

// httpOutcome is an HTTP answer: its error code and message when it has an
// error body, else its body.
func httpOutcome(status int, allow string, body []byte) outcome {
	o := outcome{status: status, allow: allow, exit: -1}
	var e struct {
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error != nil {
		o.text = e.Error.Code + ": " + e.Error.Message
	} else {
		o.text = clip(string(body), 300)
	}
	return o
}

// raw sends bytes as they are to the API's port and reads the answer.
func (b *badInput) raw(request string) outcome {
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(b.p.apiURL, "http://"), 10*time.Second)
	if err != nil {
		return outcome{problems: []string{"dial the API: " + err.Error()}}
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(conn, strings.ReplaceAll(request, "{token}", b.p.token)); err != nil {
		return outcome{problems: []string{"write: " + err.Error()}}
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return outcome{problems: []string{"read the answer: " + err.Error()}}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return httpOutcome(resp.StatusCode, resp.Header.Get("Allow"), body)
}

// cli runs the gantry CLI with extra env and returns its exit status and
// output.
func (b *badInput) cli(env []string, args ...string) outcome {
	for i := range args {
		args[i] = strings.ReplaceAll(args[i], "{app}", badHealthy)
	}
	env = slices.Clone(env)
	for i := range env {
		env[i] = strings.ReplaceAll(env[i], "{router}", b.p.httpURL)
	}
	r := b.p.run("", env, args...)
	return outcome{exit: r.code, text: strings.TrimSpace(r.stdout + "\n" + r.stderr)}
}

// gitOut runs git in dir with key and returns its exit status and output.
func (b *badInput) gitOut(dir, key string, args ...string) outcome {
	out, err := b.p.git(dir, key, args...)
	return outcome{exit: exitCode(err), text: strings.TrimSpace(out)}
}

// pushFiles commits files (path -> content) on top of the healthy app's
// deployed commit and force-pushes the commit to the healthy app.
func (b *badInput) pushFiles(t *testing.T, files map[string]string) outcome {
	t.Helper()
	gitRun(t, b.repo, "checkout", "-q", "-f", "--detach", "main")
	gitRun(t, b.repo, "clean", "-q", "-fdx")
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(b.repo, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	gitRun(t, b.repo, "add", "-A")
	gitRun(t, b.repo, "commit", "-q", "-m", "bad input")
	return b.gitOut(b.repo, b.key, "push", "gantry", "+HEAD:main")
}

// sshOut runs the ssh client against the git receiver with key and a
// remote command ("" for none).
func (b *badInput) sshOut(key, command string) outcome {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args := strings.Fields(b.p.sshCommand(key))[1:]
	args = append(args, "-T", "-p", b.sshPort, "git@127.0.0.1")
	if command != "" {
		args = append(args, command)
	}
	out, err := exec.CommandContext(ctx, "ssh", args...).CombinedOutput()
	return outcome{exit: exitCode(err), text: strings.TrimSpace(string(out))}
}

// openSSHProbes opens the connections that never complete a handshake.
func (b *badInput) openSSHProbes(t *testing.T) {
	t.Helper()
	b.probesOpened = time.Now()
	var err error
	if b.silent, err = net.DialTimeout("tcp", b.p.sshAddr, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.silent.Close() })
	if b.garbage, err = net.DialTimeout("tcp", b.p.sshAddr, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.garbage.Close() })
	if _, err := io.WriteString(b.garbage, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
}

// closedBy waits until the server closes conn, at the latest at deadline,
// and says what happened.
func closedBy(conn net.Conn, opened, deadline time.Time) outcome {
	_ = conn.SetReadDeadline(deadline)
	_, err := io.Copy(io.Discard, conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return outcome{exit: 0, text: fmt.Sprintf("still open %s after it was opened", time.Since(opened).Round(time.Second))}
	}
	return outcome{exit: 1, text: fmt.Sprintf("closed by the server after %s", time.Since(opened).Round(time.Second))}
}

// snapshot returns the healthy app's state as the API shows it, by part.
func (b *badInput) snapshot(t *testing.T) map[string]string {
	t.Helper()
	get := func(path string, v any) {
		t.Helper()
		b.getJSON(t, strings.ReplaceAll(path, "{app}", badHealthy), v)
	}
	var app struct {
		Release int `json:"release"`
	}
	var releases, routes, config, deploy any
	var formation struct {
		Release   int            `json:"release"`
		Processes map[string]int `json:"processes"`
	}
	get("/v1/apps/{app}", &app)
	get("/v1/apps/{app}/releases", &releases)
	get("/v1/apps/{app}/config", &config)
	get("/v1/apps/{app}/routes", &routes)
	get("/v1/apps/{app}/formation", &formation)
	get("/v1/apps/{app}/deploy", &deploy)
	parts := map[string]any{
		"current release": app.Release, "releases": releases, "config": config,
		"routes": routes, "formation": formation, "deploy settings": deploy,
	}
	out := map[string]string{}
	for k, v := range parts {
		j, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		out[k] = string(j)
	}
	return out
}

// waitDeployments waits until no deployment of app is pending or running.
func (b *badInput) waitDeployments(t *testing.T, app string) {
	t.Helper()
	eventually(t, 3*time.Minute, "the deployments of "+app+" to end", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, b.p.apiURL+"/v1/apps/"+app+"/deployments", nil)
		req.Header.Set("Authorization", "Bearer "+b.p.token)
		resp, err := b.client.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var ds []struct {
			State string `json:"state"`
		}
		if json.NewDecoder(resp.Body).Decode(&ds) != nil {
			return false
		}
		for _, d := range ds {
			if d.State == "pending" || d.State == "running" || d.State == "rolling_back" {
				return false
			}
		}
		return true
	})
}

// controllerRequest5xx matches the controller's log line of a request it
// answered with a 5xx.
var controllerRequest5xx = regexp.MustCompile(`msg=request component=controller .*status=5\d\d`)

// controller5xx returns the controller's log lines of requests answered
// with a 5xx, and of panics.
func controller5xx(logs string) []string {
	var out []string
	for line := range strings.Lines(logs) {
		if controllerRequest5xx.MatchString(line) || strings.Contains(line, "panic serving request") {
			out = append(out, strings.TrimSpace(line))
		}
	}
	return out
}

// startSteadyLoad sends GET / through the router with one Host header, as
// startLoad does but paced, so that the load stays steady for a suite that
// also builds: three keep-alive workers and one that opens a new
// connection for every request.
func startSteadyLoad(url, host string) *load {
	const workers, pace = 3, 5 * time.Millisecond
	l := &load{failures: map[string]int{}, stop: make(chan struct{})}
	keep := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	fresh := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for i := range workers + 1 {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			client, counter := keep, &l.keepAlive
			if i == workers {
				client, counter = fresh, &l.new
			}
			tick := time.NewTicker(pace)
			defer tick.Stop()
			for {
				select {
				case <-l.stop:
					return
				case <-tick.C:
				}
				l.once(client, url, host)
				counter.Add(1)
			}
		}()
	}
	return l
}

// outcome is what one bad input got back.
type outcome struct {
	status   int    // the HTTP status; 0 when the case is not one request
	exit     int    // the exit status of the CLI, git or ssh; -1 for HTTP
	allow    string // the Allow header of an HTTP answer
	text     string // the error code and message, or the output
	problems []string
}

func (o outcome) String() string {
	var parts []string
	if o.status != 0 {
		parts = append(parts, fmt.Sprintf("HTTP %d", o.status))
	}
	if o.exit >= 0 && o.status == 0 {
		parts = append(parts, fmt.Sprintf("exit %d", o.exit))
	}
	if o.allow != "" {
		parts = append(parts, "Allow: "+o.allow)
	}
	parts = append(parts, fmt.Sprintf("%q", clip(o.text, 600)))
	return strings.Join(parts, ", ")
}

// refusal is what a correct answer to a bad input is.
type refusal struct {
	statuses []int    // HTTP: one of these statuses; none: any 4xx
	names    []string // each must be in the message (case-insensitive); "a|b": either
	never    []string // none may be in the message (case-insensitive)
	allow    bool     // HTTP: the answer has an Allow header
	exitZero bool     // CLI: a zero exit status is fine, the message is what counts
	holds    bool     // no refusal wanted: only the case's own checks count
}

// refused wants a refusal with status (0: any 4xx) that names each of names.
func refused(status int, names ...string) refusal {
	r := refusal{names: names}
	if status != 0 {
		r.statuses = []int{status}
	}
	return r
}

// refusedAs wants one of statuses and each of names.
func refusedAs(statuses []int, names ...string) refusal {
	return refusal{statuses: statuses, names: names}
}

func (r refusal) without(never ...string) refusal {
	r.never = append(r.never, never...)
	return r
}

func (r refusal) withAllow() refusal {
	r.allow = true
	return r
}

func (r refusal) evenOnExitZero() refusal {
	r.exitZero = true
	return r
}

// check returns what is wrong with o as an answer to a bad input sent via.
func (r refusal) check(via string, o outcome) []string {
	problems := slices.Clone(o.problems)
	if r.holds {
		if o.status >= 500 {
			problems = append(problems, fmt.Sprintf("a %d", o.status))
		}
		return problems
	}
	switch {
	case via == "api" || via == "router":
		switch {
		case o.status >= 500:
			problems = append(problems, fmt.Sprintf("a %d, never right for client input", o.status))
		case len(r.statuses) > 0 && !slices.Contains(r.statuses, o.status):
			problems = append(problems, fmt.Sprintf("status %d, want %v", o.status, r.statuses))
		case len(r.statuses) == 0 && (o.status < 400 || o.status > 499):
			problems = append(problems, fmt.Sprintf("status %d, want a 4xx", o.status))
		}
		if r.allow && o.allow == "" {
			problems = append(problems, "a 405 without an Allow header")
		}
	case o.exit == 0 && !r.exitZero:
		problems = append(problems, "exit status 0: the bad input was accepted")
	}
	lower := strings.ToLower(o.text)
	for _, name := range r.names {
		found := false
		for alt := range strings.SplitSeq(name, "|") {
			found = found || strings.Contains(lower, strings.ToLower(alt))
		}
		if !found {
			problems = append(problems, fmt.Sprintf("the message does not name %q", name))
		}
	}
	never := r.never
	if via == "cli" {
		never = append(slices.Clone(never), "internal error")
	}
	for _, s := range never {
		if strings.Contains(lower, strings.ToLower(s)) {
			problems = append(problems, fmt.Sprintf("the message says %q", s))
		}
	}
	return problems
}

// badCase is one bad input: how it is sent and what its refusal is.
type badCase struct {
	via  string // api, cli, git, ssh or router
	name string
	send func(b *badInput, t *testing.T) outcome
	want refusal
}

// apiCase sends one API request; "{app}" in path is the healthy app.
func apiCase(name, method, path, body string, want refusal) badCase {
	return badCase{via: "api", name: name, want: want, send: func(b *badInput, _ *testing.T) outcome {
		var data []byte
		if body != "" {
			data = []byte(body)
		}
		return b.api(method, path, data, nil)
	}}
}

// authCase sends GET path with the Authorization header auth ("" for none).
func authCase(name, path, auth string, want refusal) badCase {
	return badCase{via: "api", name: name, want: want, send: func(b *badInput, _ *testing.T) outcome {
		return b.api(http.MethodGet, path, nil, http.Header{"Authorization": {auth}})
	}}
}

// cliCase runs the CLI with extra env; "{app}" in args is the healthy app.
func cliCase(name string, env []string, args []string, want refusal) badCase {
	return badCase{via: "cli", name: name, want: want, send: func(b *badInput, _ *testing.T) outcome {
		return b.cli(env, slices.Clone(args)...)
	}}
}

// pushCase force-pushes a commit with files to the healthy app.
func pushCase(name string, files map[string]string, want refusal) badCase {
	return badCase{via: "git", name: name, want: want, send: func(b *badInput, t *testing.T) outcome {
		return b.pushFiles(t, files)
	}}
}

// sshCase runs the ssh client with the registered key and command.
func sshCase(name, command string, want refusal) badCase {
	return badCase{via: "ssh", name: name, want: want, send: func(b *badInput, _ *testing.T) outcome {
		return b.sshOut(b.key, command)
	}}
}

func mustJSON(v any) string {
	j, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(j)
}

// configOf returns n config vars NAME<i> of size bytes each.
func configOf(prefix string, n, size int) string {
	vars := map[string]string{}
	for i := range n {
		vars[fmt.Sprintf("%s%d", prefix, i)] = strings.Repeat("x", size)
	}
	return mustJSON(vars)
}

// route is the body of POST .../routes.
func route(domain string, c certKey) string {
	return mustJSON(map[string]any{"domain": domain, "tls_cert": c.cert, "tls_key": c.key})
}

// badInputCases is the table of TestBadInput. The order matters only for
// what a defect does: the cases that would change the healthy app if they
// were accepted (config vars, releases, routes) come after those that read
// its state or build it, so that one accepted bad input does not make the
// later cases fail for its sake.
func badInputCases() []badCase {
	const (
		anApp      = "/v1/apps/{app}"
		releaseReq = `{"image": %q, "processes": {"web": {"command": "serve"}}}`
	)
	notFoundOr400 := []int{http.StatusBadRequest, http.StatusNotFound}
	badOr422 := []int{http.StatusBadRequest, http.StatusUnprocessableEntity}
	keys := newSSHKeys()
	certs := newCerts()

	cases := []badCase{
		// Tokens and endpoints.
		authCase("no token", "/v1/apps", "", refused(401, "token")),
		authCase("wrong token", "/v1/apps", "Bearer gty_wrong", refused(401, "token")),
		authCase("basic auth instead of a token", "/v1/apps", "Basic dXNlcjpwYXNz", refused(401, "token")),
		authCase("empty bearer token", "/v1/apps", "Bearer ", refused(401, "token")),
		apiCase("unknown endpoint", "GET", "/v1/nope", "", refused(404, "no endpoint")),
		apiCase("PUT on the app list", "PUT", "/v1/apps", "", refused(405, "PUT").withAllow()),
		apiCase("DELETE on config", "DELETE", anApp+"/config", "", refused(405, "DELETE").withAllow()),
		apiCase("POST on a release", "POST", anApp+"/releases/1", "{}", refused(405, "POST").withAllow()),
		apiCase("PATCH on the key list", "PATCH", "/v1/keys", "{}", refused(405, "PATCH").withAllow()),
		apiCase("TRACE on an app", "TRACE", anApp, "", refused(405, "TRACE").withAllow()),
		apiCase("POST on a blob", "POST", "/v1/blobs/badinput/x", "x", refused(405).withAllow()),

		// NUL bytes and invalid UTF-8 in path parameters (defect 2).
		apiCase("NUL as the app", "GET", "/v1/apps/%00", "", refusedAs(notFoundOr400, "app")),
		apiCase("invalid UTF-8 as the app of config", "GET", "/v1/apps/%FF%FE/config", "", refusedAs(notFoundOr400, "app")),
		apiCase("NUL as the app of a config change", "PATCH", "/v1/apps/%00/config", `{"A": "1"}`, refusedAs(notFoundOr400, "app")),
		apiCase("NUL inside the app of releases", "GET", "/v1/apps/a%00b/releases", "", refusedAs(notFoundOr400, "app")),
		apiCase("invalid UTF-8 as the app of formation", "PUT", "/v1/apps/%C3%28/formation", `{"web": 1}`, refusedAs(notFoundOr400, "app")),
		apiCase("NUL as the app of a rollback", "POST", "/v1/apps/%00/rollback", `{}`, refusedAs(notFoundOr400, "app")),
		apiCase("invalid UTF-8 as the app to delete", "DELETE", "/v1/apps/%FF", "", refusedAs(notFoundOr400, "app")),
		apiCase("NUL as a key", "GET", "/v1/keys/%00", "", refusedAs(notFoundOr400, "key|fingerprint")),
		apiCase("NUL as the key to delete", "DELETE", "/v1/keys/%00", "", refusedAs(notFoundOr400, "key|fingerprint")),
		apiCase("invalid UTF-8 as a key", "GET", "/v1/keys/SHA256%3A%FF%FE", "", refusedAs(notFoundOr400, "key|fingerprint")),
		apiCase("NUL as a deployment", "GET", anApp+"/deployments/%00", "", refusedAs(notFoundOr400, `deployment|"id"| id`)),
		apiCase("invalid UTF-8 as a deployment's events", "GET", anApp+"/deployments/%FF%FE/events", "", refusedAs(notFoundOr400, `deployment|"id"| id`)),
		apiCase("invalid UTF-8 as the route to delete", "DELETE", anApp+"/routes/%FF%FE", "", refusedAs(notFoundOr400, "route|domain")),
		apiCase("NUL as the route to delete", "DELETE", anApp+"/routes/a%00.test", "", refusedAs(notFoundOr400, "route|domain")),
		apiCase("NUL as a release", "GET", anApp+"/releases/%00", "", refusedAs(notFoundOr400, "release")),
		apiCase("NUL as the job to kill", "DELETE", anApp+"/jobs/%00", "", refusedAs(notFoundOr400, "job")),

		// Versions (defect 3 and its neighbours).
		apiCase("rollback to a version above int32", "POST", anApp+"/rollback", `{"version": 2147483648}`, refused(404, "release_not_found")),
		apiCase("rollback to a version above int64", "POST", anApp+"/rollback", `{"version": 99999999999999999999}`, refusedAs(badOr422, "version")),
		apiCase("rollback to a version the app does not have", "POST", anApp+"/rollback", `{"version": 99999}`, refused(404, "release_not_found")),
		apiCase("rollback to version 0", "POST", anApp+"/rollback", `{"version": 0}`, refused(422)),
		apiCase("rollback to a negative version", "POST", anApp+"/rollback", `{"version": -1}`, refused(422, "version -1")),
		apiCase("rollback to a version given as a string", "POST", anApp+"/rollback", `{"version": "1"}`, refused(400, "version")),
		apiCase("rollback to a fractional version", "POST", anApp+"/rollback", `{"version": 1.5}`, refused(400, "version")),
		apiCase("rollback with an unknown field", "POST", anApp+"/rollback", `{"release": 1}`, refused(400, "release")),
		apiCase("a release that is not a number", "GET", anApp+"/releases/abc", "", refused(404, "release_not_found")),
		apiCase("a release above int32", "GET", anApp+"/releases/2147483648", "", refused(404, "release_not_found")),
		apiCase("a release above int64", "GET", anApp+"/releases/99999999999999999999", "", refused(404, "release_not_found")),
		apiCase("release v0", "GET", anApp+"/releases/v0", "", refused(404, "release_not_found")),

		// Formation.
		apiCase("a count in exponent notation", "PUT", anApp+"/formation", `{"web": 1e2}`, refused(400, "number 100", "want an integer")),
		apiCase("a fractional count", "PUT", anApp+"/formation", `{"web": 1.5}`, refused(400, "web", "integer")),
		apiCase("a count given as a string", "PUT", anApp+"/formation", `{"web": "2"}`, refused(400, "web")),
		apiCase("a null count", "PUT", anApp+"/formation", `{"web": null}`, refused(400, "web")),
		apiCase("a negative count", "PUT", anApp+"/formation", `{"web": -1}`, refused(422, "web=-1")),
		apiCase("a count above the cap", "PUT", anApp+"/formation", `{"web": 101}`, refused(422, "100")),
		apiCase("a count above int64", "PUT", anApp+"/formation", `{"web": 99999999999999999999}`, refusedAs(badOr422, "web")),
		apiCase("an unknown process type", "PUT", anApp+"/formation", `{"worker": 1}`, refused(422, "worker")),
		apiCase("a process type in capitals", "PUT", anApp+"/formation", `{"WEB": 1}`, refused(422, "WEB")),
		apiCase("a formation that is a list", "PUT", anApp+"/formation", `[{"web": 1}]`, refused(400, "object")),
		apiCase("two JSON values", "PUT", anApp+"/formation", `{"web": 2} {"web": 3}`, refused(400, "more than one")),
		apiCase("truncated JSON", "PUT", anApp+"/formation", `{"web": 2`, refused(400, "JSON")),
		apiCase("no body", "PUT", anApp+"/formation", "", refused(400, "empty")),

		// Deploy settings, restarts, jobs, one-off runs, logs.
		apiCase("an unknown deploy strategy", "PATCH", anApp+"/deploy", `{"strategy": "fast"}`, refused(422, "fast")),
		apiCase("a deploy timeout above the cap", "PATCH", anApp+"/deploy", `{"timeout": 4000}`, refused(422, "4000", "seconds")),
		apiCase("a negative deploy timeout", "PATCH", anApp+"/deploy", `{"timeout": -3}`, refused(422, "-3", "seconds")),
		apiCase("a deploy timeout given as a string", "PATCH", anApp+"/deploy", `{"timeout": "60s"}`, refused(400, "timeout")),
		apiCase("an unknown deploy setting", "PATCH", anApp+"/deploy", `{"strategy": "one-by-one", "parallel": 2}`, refused(400, "parallel")),
		apiCase("restart of an unknown process type", "POST", anApp+"/restart", `{"type": "worker"}`, refused(422, "worker")),
		apiCase("kill of an unknown job", "DELETE", anApp+"/jobs/web.99", "", refused(404, "job")),
		apiCase("kill of another app's job", "DELETE", anApp+"/jobs/"+badRestore+".web.1.000000000000", "", refused(404, "job")),
		apiCase("a run without a command", "POST", anApp+"/run", `{"command": [], "detach": true}`, refused(422, "command")),
		apiCase("a run with a NUL byte", "POST", anApp+"/run", `{"command": ["sh", "-c", "a\u0000b"], "detach": true}`, refused(422, "NUL")),
		apiCase("a detached run with a terminal", "POST", anApp+"/run", `{"command": ["sh"], "detach": true, "tty": true}`, refused(422, "tty|terminal")),
		apiCase("an attached run without the upgrade", "POST", anApp+"/run", `{"command": ["sh"]}`, refused(400, "upgrade")),
		apiCase("a run with a bad env name", "POST", anApp+"/run", `{"command": ["sh"], "detach": true, "env": {"1X": "y"}}`, refused(422, "1X")),
		apiCase("a run with too many arguments", "POST", anApp+"/run", mustJSON(map[string]any{"command": slices.Repeat([]string{"x"}, 1025), "detach": true}), refused(422, "1024|argument")),
		apiCase("a log with lines that is not a number", "GET", anApp+"/log?lines=abc", "", refused(400, "lines")),
		apiCase("a log with negative lines", "GET", anApp+"/log?lines=-1", "", refused(400, "lines")),
		apiCase("a log since a time that does not parse", "GET", anApp+"/log?since=yesterday", "", refused(400, "since")),
		apiCase("an unknown deployment", "GET", anApp+"/deployments/nosuch", "", refused(404, "deployment")),

		// Builds and blobs.
		apiCase("a build with a commit that is not hex", "POST", anApp+"/builds?commit=ZZZZ", "x", refused(422, "commit")),
		apiCase("a build of an empty archive", "POST", anApp+"/builds?commit=abcd", "", refused(422, "empty")),
		apiCase("a blob path with a space", "PUT", "/v1/blobs/badinput/a%20b", "x", refused(422, "path")),
		{via: "api", name: "a blob whose digest does not match", want: refused(422, "digest"), send: func(b *badInput, _ *testing.T) outcome {
			return b.api("PUT", "/v1/blobs/badinput/x", []byte("x"), http.Header{"X-Gantry-Digest": {"sha256:" + strings.Repeat("0", 64)}})
		}},
		apiCase("an unknown blob", "GET", "/v1/blobs/badinput/nosuch", "", refused(404, "blob")),

		// Request bodies.
		apiCase("a body over 1 MiB", "PATCH", anApp+"/config", configOf("BIG", 3, 500<<10), refused(413, "bytes")),
		apiCase("a body of 2 MiB of spaces", "POST", "/v1/apps", strings.Repeat(" ", 2<<20), refused(413, "bytes")),
		apiCase("an app that is a list", "POST", "/v1/apps", `["demo"]`, refused(400, "object")),
		apiCase("an app name that is a number", "POST", "/v1/apps", `{"name": 5}`, refused(400, "name")),
		apiCase("an app with an unknown field", "POST", "/v1/apps", `{"nam": "demo"}`, refused(400, "nam")),
		apiCase("an app body that is not JSON", "POST", "/v1/apps", `name=demo`, refused(400, "JSON")),
		{via: "api", name: "a chunked body with a bad chunk size", want: refused(400, "chunk").without("malformed JSON"), send: func(b *badInput, _ *testing.T) outcome {
			return b.raw("PATCH /v1/apps/" + badHealthy + "/config HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer {token}\r\n" +
				"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n")
		}},

		// git push to the healthy app (defects 9 and 11), before the cases
		// whose acceptance would change what a build gets.
		pushCase("a Procfile line that is not a process", map[string]string{"Procfile": "this line is not a process\n"}, refused(0, "build failed", "Procfile")),
		pushCase("a Procfile with 101 process types", map[string]string{"Procfile": manyTypes(101)}, refused(0, "Procfile", "100|101")),
		pushCase("a Procfile of 4 MiB", map[string]string{"Procfile": hugeProcfile(4 << 20)}, refused(0, "Procfile", "size|large|bytes|KiB|MiB")),
		{via: "git", name: "deletion of the deploy branch", want: refused(0, "delet").without("not a deploy branch"), send: func(b *badInput, _ *testing.T) outcome {
			return b.gitOut(b.repo, b.key, "push", "gantry", ":main")
		}},
		{via: "git", name: "deletion of a branch that does not deploy", want: refused(0, "feature"), send: func(b *badInput, _ *testing.T) outcome {
			return b.gitOut(b.repo, b.key, "push", "gantry", ":feature")
		}},
		{via: "git", name: "a branch that does not deploy", want: refused(0, "not a deploy branch"), send: func(b *badInput, _ *testing.T) outcome {
			return b.gitOut(b.repo, b.key, "push", "gantry", "main:feature")
		}},
		{via: "git", name: "a tag", want: refused(0, "not a deploy branch"), send: func(b *badInput, t *testing.T) outcome {
			gitRun(t, b.repo, "tag", "-f", "v1", "main")
			return b.gitOut(b.repo, b.key, "push", "gantry", "refs/tags/v1")
		}},
		{via: "git", name: "a repository that is not an app name", want: refused(0, "Bad_Name").without(`"'`, `'"`), send: func(b *badInput, _ *testing.T) outcome {
			return b.gitOut(b.repo, b.key, "push", b.gitURL("Bad_Name"), "main")
		}},
		{via: "git", name: "a repository path that climbs", want: refused(0, "app repository"), send: func(b *badInput, _ *testing.T) outcome {
			return b.gitOut(b.repo, b.key, "push", b.gitURL("../etc"), "main")
		}},
		{via: "git", name: "an unknown app", want: refused(0, "no such app"), send: func(b *badInput, _ *testing.T) outcome {
			return b.gitOut(b.repo, b.key, "push", b.gitURL("nosuchapp"), "main")
		}},
		{via: "git", name: "a key that was never added", want: refused(0, "Permission denied"), send: func(b *badInput, _ *testing.T) outcome {
			return b.gitOut(b.repo, b.other, "push", "gantry", "main")
		}},
		{via: "git", name: "a fetch with a key that was never added", want: refused(0, "Permission denied"), send: func(b *badInput, _ *testing.T) outcome {
			return b.gitOut(b.repo, b.other, "ls-remote", "gantry")
		}},
		{via: "git", name: "a bad BUILDPACK_URL is shown as typed", want: refused(0, "build failed", "http://127.0.0.1/my pack").without("%20"), send: (*badInput).badBuildpackURL},

		// Config vars (defects 1 and 11).
		apiCase("a var that is a number", "PATCH", anApp+"/config", `{"GREETING_COUNT": 1}`, refusedAs(badOr422, "GREETING_COUNT")),
		apiCase("a var that is an object", "PATCH", anApp+"/config", `{"GREETING": {"a": "b"}}`, refusedAs(badOr422, "GREETING")),
		apiCase("a var name starting with a digit", "PATCH", anApp+"/config", `{"1A": "x"}`, refused(422, "1A")),
		apiCase("a var name with a dash", "PATCH", anApp+"/config", `{"A-B": "x"}`, refused(422, "A-B")),
		apiCase("a var name with an equals sign", "PATCH", anApp+"/config", `{"A=B": "x"}`, refused(422, "A=B")),
		apiCase("an empty var name", "PATCH", anApp+"/config", `{"": "x"}`, refused(422, "name")),
		apiCase("a var name of 1000 bytes", "PATCH", anApp+"/config", mustJSON(map[string]string{strings.Repeat("N", 1000): "x"}), refused(422, "name")),
		apiCase("a value with a NUL byte", "PATCH", anApp+"/config", `{"NULVAR": "a\u0000b"}`, refused(422, "NULVAR", "NUL")),
		apiCase("a value over 32 KiB", "PATCH", anApp+"/config", mustJSON(map[string]string{"BIGVALUE": strings.Repeat("x", 40000)}), refused(422, "BIGVALUE")),
		apiCase("100 vars of 1000 bytes, over 64 KiB in total", "PATCH", anApp+"/config", configOf("TOTAL", 100, 1000), refused(422, "total|64|65536|65 536")),
		apiCase("1000 vars of 900 bytes (the issue's reproduction)", "PATCH", anApp+"/config", configOf("V", 1000, 900), refused(422, "total|64|65536|65 536")),

		// Apps.
		apiCase("an app name with capitals and an underscore", "POST", "/v1/apps", `{"name": "Bad_Name"}`, refused(422, "Bad_Name")),
		apiCase("an app name starting with a dash", "POST", "/v1/apps", `{"name": "-app"}`, refused(422, "-app")),
		apiCase("an app name ending with a dash", "POST", "/v1/apps", `{"name": "app-"}`, refused(422, "app-")),
		apiCase("a one-letter app name", "POST", "/v1/apps", `{"name": "a"}`, refused(422, "name")),
		apiCase("an app name of 31 letters", "POST", "/v1/apps", mustJSON(map[string]string{"name": strings.Repeat("a", 31)}), refused(422, "name")),
		apiCase("an app name with a dot", "POST", "/v1/apps", `{"name": "a.b"}`, refused(422, "a.b")),
		apiCase("an app name with an accent", "POST", "/v1/apps", `{"name": "café"}`, refused(422, "name")),
		apiCase("an app name with a NUL byte", "POST", "/v1/apps", `{"name": "a\u0000b"}`, refused(422, "name")),
		apiCase("an app name that is taken", "POST", "/v1/apps", mustJSON(map[string]string{"name": badHealthy}), refused(409, "exists")),

		// SSH keys (defect 9).
		apiCase("a key that is not a key", "POST", "/v1/keys", `{"key": "hello"}`, refused(422, "SSH public key")),
		apiCase("a private key", "POST", "/v1/keys", mustJSON(map[string]string{"key": keys.private}), refused(422, "private")),
		apiCase("an RSA key of 1024 bits", "POST", "/v1/keys", mustJSON(map[string]string{"key": keys.rsa1024}), refused(422, "2048")),
		apiCase("two keys at once", "POST", "/v1/keys", mustJSON(map[string]string{"key": keys.plain + "\n" + keys.rsa1024}), refused(422, "one")),
		apiCase("a key with options", "POST", "/v1/keys", mustJSON(map[string]string{"key": `command="sh" ` + keys.plain}), refused(422, "option")),
		apiCase("a key with a comment of 300 bytes", "POST", "/v1/keys", mustJSON(map[string]string{"key": keys.plain + " " + strings.Repeat("c", 300)}), refused(422, "comment")),
		apiCase("a key with a NUL byte in its comment", "POST", "/v1/keys", mustJSON(map[string]string{"key": keys.plain + " a\u0000b"}), refused(422)),
		apiCase("a key field that is a list", "POST", "/v1/keys", mustJSON(map[string]any{"key": []string{keys.plain}}), refused(400, "key")),
		apiCase("an unknown key to delete", "DELETE", "/v1/keys/SHA256%3Anosuchkey", "", refused(404, "key")),

		// Image references and releases (defect 9).
		apiCase("an image that is a bare digest", "POST", anApp+"/releases", fmt.Sprintf(releaseReq, "sha256:abc"), refused(422, "image")),
		apiCase("an image in capitals", "POST", anApp+"/releases", fmt.Sprintf(releaseReq, "UPPER/case"), refused(422, "image")),
		apiCase("an image with a space", "POST", anApp+"/releases", fmt.Sprintf(releaseReq, "a b"), refused(422, "image")),
		apiCase("an image that is only a tag", "POST", anApp+"/releases", fmt.Sprintf(releaseReq, ":latest"), refused(422, "image")),
		apiCase("an image with a malformed digest", "POST", anApp+"/releases", fmt.Sprintf(releaseReq, "demo@sha256:zz"), refused(422, "image")),
		apiCase("an image reference of 1000 bytes", "POST", anApp+"/releases", fmt.Sprintf(releaseReq, strings.Repeat("a", 1000)), refused(422, "image")),
		apiCase("a release without an image", "POST", anApp+"/releases", `{"processes": {"web": {"command": "serve"}}}`, refused(422, "image")),
		apiCase("a release without a process", "POST", anApp+"/releases", `{"image": "demo:v1", "processes": {}}`, refused(422, "process")),
		apiCase("a process name in capitals", "POST", anApp+"/releases", `{"image": "demo:v1", "processes": {"Web": {"command": "serve"}}}`, refused(422, "Web")),
		apiCase("an empty command", "POST", anApp+"/releases", `{"image": "demo:v1", "processes": {"web": {"command": ""}}}`, refused(422, "command")),
		apiCase("a command with a pipe", "POST", anApp+"/releases", `{"image": "demo:v1", "processes": {"web": {"command": "serve | tee x"}}}`, refused(422, "|")),
		apiCase("a relative health path", "POST", anApp+"/releases", `{"image": "demo:v1", "processes": {"web": {"command": "serve", "health_path": "healthz"}}}`, refused(422, "health")),
		apiCase("a description over 1024 bytes", "POST", anApp+"/releases", mustJSON(map[string]any{"image": "demo:v1", "processes": map[string]any{"web": map[string]string{"command": "serve"}}, "description": strings.Repeat("d", 2000)}), refused(422, "description")),
		apiCase("a release with an unknown field", "POST", anApp+"/releases", `{"image": "demo:v1", "procs": {}}`, refused(400, "procs")),

		// Routes (defect 7).
		apiCase("a wildcard over the platform domain", "POST", anApp+"/routes", `{"domain": "*.localhost"}`, refused(0, "reserved|platform")),
		apiCase("the platform domain itself", "POST", anApp+"/routes", `{"domain": "localhost"}`, refused(0, "reserved|platform")),
		apiCase("a name under another app's default domain", "POST", anApp+"/routes", `{"domain": "x.`+badRestore+`.localhost"}`, refused(0, "reserved|platform")),
		apiCase("a name under the platform domain", "POST", anApp+"/routes", `{"domain": "www.localhost"}`, refused(0, "reserved|platform")),
		apiCase("a wildcard with one label below it", "POST", anApp+"/routes", `{"domain": "*.test"}`, refused(422, "wildcard|label")),
		apiCase("an IPv4 literal", "POST", anApp+"/routes", `{"domain": "127.0.0.1"}`, refused(422, "IP address|IP literal|an IP")),
		apiCase("an IPv6 literal", "POST", anApp+"/routes", `{"domain": "::1"}`, refused(422, "::1")),
		apiCase("a domain with an empty label", "POST", anApp+"/routes", `{"domain": "a..example.test"}`, refused(422, "label")),
		apiCase("a domain with a label starting with a dash", "POST", anApp+"/routes", `{"domain": "-a.example.test"}`, refused(422, "dash")),
		apiCase("a domain with a space", "POST", anApp+"/routes", `{"domain": "exa mple.test"}`, refused(422, "exa mple.test")),
		apiCase("a domain in capitals", "POST", anApp+"/routes", `{"domain": "WWW.EXAMPLE.TEST"}`, refused(422, "WWW.EXAMPLE.TEST")),
		apiCase("an empty domain", "POST", anApp+"/routes", `{"domain": ""}`, refused(422, "empty")),
		apiCase("a wildcard in the middle", "POST", anApp+"/routes", `{"domain": "a.*.example.test"}`, refused(422, "wildcard")),
		apiCase("a domain of 300 bytes", "POST", anApp+"/routes", mustJSON(map[string]string{"domain": strings.Repeat("a.", 150) + "test"}), refused(422, "domain")),
		apiCase("a label of 64 bytes", "POST", anApp+"/routes", mustJSON(map[string]string{"domain": strings.Repeat("a", 64) + ".example.test"}), refused(422, "label")),
		apiCase("another app's route", "POST", anApp+"/routes", mustJSON(map[string]string{"domain": badWildcard}), refused(409, "taken")),
		apiCase("another app's default domain", "POST", anApp+"/routes", `{"domain": "`+badRestore+`.localhost"}`, refused(422, "reserved")),
		apiCase("https_only that is a string", "POST", anApp+"/routes", `{"domain": "www.example.test", "https_only": "yes"}`, refused(400, "https_only")),
		apiCase("removal of the default route", "DELETE", anApp+"/routes/"+badHealthy+".localhost", "", refused(422, "default")),
		apiCase("removal of an unknown route", "DELETE", anApp+"/routes/nosuch.example.test", "", refused(404, "route")),
		apiCase("removal of another app's route", "DELETE", anApp+"/routes/%2A.wild.test", "", refused(404, "route")),

		// Certificates (defect 8).
		apiCase("a certificate that is not yet valid", "POST", anApp+"/routes", route("future.example.test", certs.future), refused(422, "not yet valid|not valid before|notbefore|valid from|future")),
		apiCase("a certificate with an RSA key of 1024 bits", "POST", anApp+"/routes", route("weak.example.test", certs.rsa1024), refused(422, "2048")),
		apiCase("a chain of 11 certificates", "POST", anApp+"/routes", route("chain.example.test", certs.longChain), refused(422, "chain|certificates")),
		apiCase("an expired certificate", "POST", anApp+"/routes", route("expired.example.test", certs.expired), refused(422, "expired")),
		apiCase("a certificate for another domain", "POST", anApp+"/routes", route("other.example.test", certs.good), refused(422, "other.example.test")),
		apiCase("a key that does not match the certificate", "POST", anApp+"/routes", route("good.example.test", certKey{certs.good.cert, certs.expired.key}), refused(422, "match")),
		apiCase("a certificate without a key", "POST", anApp+"/routes", route("good.example.test", certKey{cert: certs.good.cert}), refused(422, "key")),
		apiCase("a key without a certificate", "POST", anApp+"/routes", route("good.example.test", certKey{key: certs.good.key}), refused(422, "certificate")),
		apiCase("a certificate that is not PEM", "POST", anApp+"/routes", route("good.example.test", certKey{"not a certificate", certs.good.key}), refused(422, "certificate")),

		// The CLI (defects 3 and 11).
		cliCase("rollback to v99999999999", nil, []string{"rollback", "-a", "{app}", "v99999999999"}, refused(0, "has no release|release_not_found|99999999999")),
		cliCase("show release v99999999999", nil, []string{"release", "show", "-a", "{app}", "v99999999999"}, refused(0, "99999999999")),
		cliCase("unset a var that is not set", nil, []string{"env", "unset", "-a", "{app}", "NOPE"}, refused(0, "not set|no config var|has no").without("Unset NOPE").evenOnExitZero()),
		cliCase("a negative deploy timeout", nil, []string{"deploy", "timeout", "-a", "{app}", "-3"}, refused(0, "-3", "seconds").without("unknown flag")),
		cliCase("GANTRY_URL pointing at the router", []string{"GANTRY_URL=" + "{router}"}, []string{"apps"}, refused(0, "not a gantry|not the gantry|no gantry|not look like a gantry").without("invalid character", "<")),
		cliCase("a token with a newline", []string{"GANTRY_TOKEN=gty_abc\ndef"}, []string{"apps"}, refused(0, "token").without("cannot reach")),
		cliCase("a count in exponent notation", nil, []string{"scale", "-a", "{app}", "web=1e2"}, refused(0, "1e2")),
		cliCase("a count above the cap", nil, []string{"scale", "-a", "{app}", "web=101"}, refused(0, "100")),
		cliCase("an unknown process type", nil, []string{"scale", "-a", "{app}", "worker=1"}, refused(0, "worker")),
		cliCase("a var name starting with a digit", nil, []string{"env", "set", "-a", "{app}", "1A=x"}, refused(0, "1A")),
		cliCase("an assignment without =", nil, []string{"env", "set", "-a", "{app}", "NOEQUALS"}, refused(0, "NOEQUALS")),
		cliCase("an invalid app name", nil, []string{"create", "Bad_Name"}, refused(0, "Bad_Name")),
		cliCase("an app name with the reserved prefix", nil, []string{"create", "gantry-x"}, refused(0, "reserved")),
		cliCase("destroy with the wrong confirmation", nil, []string{"destroy", "-a", "{app}", "--confirm", "wrong"}, refused(0, badHealthy)),
		cliCase("an unknown deploy strategy", nil, []string{"deploy", "strategy", "-a", "{app}", "fast"}, refused(0, "fast")),
		cliCase("an unknown app", nil, []string{"info", "-a", "nosuchapp"}, refused(0, "nosuchapp")),
		cliCase("a route over the platform domain", nil, []string{"route", "add", "-a", "{app}", "*.localhost"}, refused(0, "reserved|platform")),
		cliCase("removal of the default route", nil, []string{"route", "remove", "-a", "{app}", badHealthy + ".localhost"}, refused(0, "default")),
		cliCase("kill of an unknown job", nil, []string{"kill", "-a", "{app}", "web.99"}, refused(0, "web.99")),

		// Cases whose input is valid and must leave consistent state
		// (defects 4, 5 and 10), and the router (defect 7).
		{via: "git", name: "three concurrent force-pushes to one app", want: refusal{holds: true}, send: (*badInput).concurrentPushes},
		{via: "git", name: "an app created after a destroy has an empty repository", want: refusal{holds: true}, send: (*badInput).destroyedRepo},
		{via: "cli", name: "a config-only deploy that fails restores the config", want: refused(0, "restor"), send: (*badInput).failedConfigDeploy},
		{via: "router", name: "a literal * in Host never matches a wildcard route", want: refused(0, "no such app|host"), send: func(b *badInput, _ *testing.T) outcome {
			code, body, err := b.p.get(badWildcard, "/")
			if err != nil {
				return outcome{problems: []string{err.Error()}}
			}
			return outcome{status: code, exit: -1, text: clip(body, 300)}
		}},

		// SSH (defect 6 and the commands the receiver refuses).
		sshCase("a command that is not git", "ls -la", refused(0, "only serves git")),
		sshCase("no command", "", refused(0, "only serves git")),
		sshCase("a shell command after the repository", "git-receive-pack 'healthy.git; id'", refused(0, "one repository")),
		sshCase("an upload-pack of a path that climbs", "git-upload-pack '../../etc'", refused(0, "app repository")),
		{via: "ssh", name: "a key that was never added", want: refused(0, "Permission denied"), send: func(b *badInput, _ *testing.T) outcome {
			return b.sshOut(b.other, "git-upload-pack '"+badHealthy+".git'")
		}},
		{via: "ssh", name: "a version line of 300 bytes", want: refused(0, "closed by the server"), send: func(b *badInput, _ *testing.T) outcome {
			conn, err := net.DialTimeout("tcp", b.p.sshAddr, 10*time.Second)
			if err != nil {
				return outcome{problems: []string{err.Error()}}
			}
			defer conn.Close()
			opened := time.Now()
			if _, err := io.WriteString(conn, "SSH-2.0-"+strings.Repeat("x", 300)+"\r\n"); err != nil {
				return outcome{problems: []string{err.Error()}}
			}
			return closedBy(conn, opened, opened.Add(sshCloseDeadline))
		}},
		{via: "ssh", name: "a connection that sends HTTP is closed", want: refused(0, "closed by the server"), send: func(b *badInput, _ *testing.T) outcome {
			return closedBy(b.garbage, b.probesOpened, b.probesOpened.Add(sshCloseDeadline))
		}},
		{via: "ssh", name: "a silent connection is closed", want: refused(0, "closed by the server"), send: func(b *badInput, _ *testing.T) outcome {
			return closedBy(b.silent, b.probesOpened, b.probesOpened.Add(sshCloseDeadline))
		}},
		{via: "ssh", name: "150 silent connections from one address", want: refused(0, "closed by the server"), send: (*badInput).manySilent},
	}
	return cases
}

// manyTypes is a Procfile with n process types, web among them.
func manyTypes(n int) string {
	var sb strings.Builder
	sb.WriteString("web: gantryd slugrunner static\n")
	for i := 1; i < n; i++ {
		fmt.Fprintf(&sb, "p%d: sleep 1000\n", i)
	}
	return sb.String()
}

// hugeProcfile is a valid Procfile of about size bytes, most of them
// comments.
func hugeProcfile(size int) string {
	var sb strings.Builder
	sb.WriteString("web: gantryd slugrunner static\n")
	line := "# " + strings.Repeat("x", 100) + "\n"
	for sb.Len() < size {
		sb.WriteString(line)
	}
	return sb.String()
}

// badBuildpackURL sets a BUILDPACK_URL that is refused on racer (which
// has no release, so nothing deploys) and pushes to it.
func (b *badInput) badBuildpackURL(t *testing.T) outcome {
	r := b.p.run("", nil, "env", "set", "-a", badRacer, "BUILDPACK_URL=http://127.0.0.1/my pack")
	if r.code != 0 {
		t.Fatalf("env set BUILDPACK_URL: %d %s %s", r.code, r.stdout, r.stderr)
	}
	defer func() {
		if r := b.p.run("", nil, "env", "unset", "-a", badRacer, "BUILDPACK_URL"); r.code != 0 {
			t.Fatalf("env unset BUILDPACK_URL: %d %s %s", r.code, r.stdout, r.stderr)
		}
	}()
	return b.gitOut(b.repo, b.key, "push", b.gitURL(badRacer), "main:main")
}

// concurrentPushes force-pushes three different commits to racer at once.
// Each push either deploys and moves the ref, or does neither, and says
// which; afterwards the ref names the commit of the current release.
func (b *badInput) concurrentPushes(t *testing.T) outcome {
	const n = 3
	clones := make([]string, n)
	for i := range clones {
		clones[i] = t.TempDir()
		copyDir(t, b.repo, clones[i])
		gitRun(t, clones[i], "checkout", "-q", "-f", "main")
		if err := os.WriteFile(filepath.Join(clones[i], "public", "clone.txt"), []byte(fmt.Sprintf("clone %d\n", i)), 0o644); err != nil {
			t.Fatal(err)
		}
		gitRun(t, clones[i], "add", "-A")
		gitRun(t, clones[i], "commit", "-q", "-m", fmt.Sprintf("clone %d", i))
	}
	outs := make([]outcome, n)
	var wg sync.WaitGroup
	for i := range clones {
		wg.Go(func() { outs[i] = b.gitOut(clones[i], b.key, "push", "-f", b.gitURL(badRacer), "main:main") })
	}
	wg.Wait()

	var o outcome
	o.exit = -1
	deployedLine := regexp.MustCompile(`Deployed v\d+`)
	for i, out := range outs {
		sha := gitRun(t, clones[i], "rev-parse", "--short=7", "HEAD")
		deployed := deployedLine.MatchString(out.text)
		o.text += fmt.Sprintf("push %d (%s): exit %d, deployed %v; ", i, sha, out.exit, deployed)
		switch {
		case deployed && out.exit != 0:
			o.problems = append(o.problems, fmt.Sprintf("push %d (%s) says it deployed, and was rejected:\n%s", i, sha, lastLines(out.text, 4)))
		case !deployed && out.exit == 0:
			o.problems = append(o.problems, fmt.Sprintf("push %d (%s) was accepted without a deploy:\n%s", i, sha, lastLines(out.text, 4)))
		}
	}
	ref := ""
	for line := range strings.Lines(b.gitOut(b.repo, b.key, "ls-remote", b.gitURL(badRacer), "refs/heads/main").text) {
		if f := strings.Fields(line); len(f) == 2 && f[1] == "refs/heads/main" {
			ref = f[0]
		}
	}
	var app struct {
		Release int `json:"release"`
	}
	var rel struct {
		Description string `json:"description"`
	}
	b.getJSON(t, "/v1/apps/"+badRacer, &app)
	b.getJSON(t, fmt.Sprintf("/v1/apps/%s/releases/%d", badRacer, app.Release), &rel)
	o.text += fmt.Sprintf("refs/heads/main %.7s, current release v%d %q", ref, app.Release, rel.Description)
	if len(ref) < 7 || !strings.Contains(rel.Description, ref[:7]) {
		o.problems = append(o.problems, fmt.Sprintf("refs/heads/main is %.7s but the current release v%d is %q", ref, app.Release, rel.Description))
	}
	return o
}

// destroyedRepo destroys racer, creates it again and lists its refs: a new
// app starts with an empty repository.
func (b *badInput) destroyedRepo(t *testing.T) outcome {
	b.p.ok("destroy", "-a", badRacer, "--confirm", badRacer)
	b.p.ok("create", badRacer)
	o := b.gitOut(b.repo, b.key, "ls-remote", b.gitURL(badRacer))
	if strings.Contains(o.text, "refs/") {
		o.problems = append(o.problems, "the new app's repository has the destroyed app's refs")
	}
	if o.exit != 0 {
		o.problems = append(o.problems, "git ls-remote of the new app failed")
	}
	return o
}

// failedConfigDeploy sets PATH=/nonexistent on restore: the deploy fails,
// the old release keeps running, and the config is what it was before.
func (b *badInput) failedConfigDeploy(t *testing.T) outcome {
	o := b.cli(nil, "env", "set", "-a", badRestore, "PATH=/nonexistent")
	b.waitDeployments(t, badRestore)
	var config map[string]string
	b.getJSON(t, "/v1/apps/"+badRestore+"/config", &config)
	if _, ok := config["PATH"]; ok {
		o.problems = append(o.problems, fmt.Sprintf("the config keeps the value whose deploy failed: %v", config))
	}
	return o
}

// manySilent opens 150 connections to the SSH port that send nothing: the
// server closes those beyond its cap on unauthenticated connections.
func (b *badInput) manySilent(_ *testing.T) outcome {
	const n = 150
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range n {
		c, err := net.DialTimeout("tcp", b.p.sshAddr, 10*time.Second)
		if err != nil {
			// A server that refuses connections beyond its cap is right.
			return outcome{exit: 1, text: fmt.Sprintf("closed by the server: connection %d refused: %v", len(conns)+1, err)}
		}
		conns = append(conns, c)
	}
	// The first connection the server closes answers the case: one over
	// the cap at once, or else one at the end of its handshake timeout.
	opened := time.Now()
	first := make(chan int, n)
	for i, c := range conns {
		go func() {
			if o := closedBy(c, opened, opened.Add(sshCloseDeadline)); o.exit == 1 {
				first <- i + 1
			}
		}()
	}
	select {
	case i := <-first:
		return outcome{exit: 1, text: fmt.Sprintf("connection %d of %d closed by the server after %s", i, n, time.Since(opened).Round(time.Second))}
	case <-time.After(time.Until(opened.Add(sshCloseDeadline))):
		return outcome{exit: 0, text: fmt.Sprintf("all %d connections still open after %s", n, time.Since(opened).Round(time.Second))}
	}
}

// getJSON reads an API answer into v and fails the test unless it is 200.
func (b *badInput) getJSON(t *testing.T, path string, v any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, b.p.apiURL+path, nil)
	req.Header.Set("Authorization", "Bearer "+b.p.token)
	resp, err := b.client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

// exitCode is the exit status of a finished command: 0 without an error,
// -1 when it did not run.
func exitCode(err error) int {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	return -1
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
