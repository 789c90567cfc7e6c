package dashboard_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/gantryhq/gantry/deploy/testenv"
	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer1/controller/types"
)

// screenshot, when set, is where TestBrowserAppPage writes a PNG of the
// app page (the README's docs/dashboard.png:
// go test -run TestBrowserAppPage ./layer1/dashboard -screenshot $PWD/docs/dashboard.png).
var screenshot = flag.String("screenshot", "", "write a screenshot of the app page to this PNG file")

// browserTimeout bounds each step the tests take in the browser: generous,
// for loaded machines.
const browserTimeout = 60 * time.Second

// chromium returns the path of the Chromium binary. A missing one fails
// the test; under -short the test is skipped.
func chromium(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("needs Chromium; skipped under -short")
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	t.Fatal("Chromium is missing: install it (apt-get install chromium, or deploy/install-deps.sh); -short skips the browser tests")
	return ""
}

// browser starts a headless Chromium with a fresh profile and a
// 1280x900 window, closed when the test ends, and returns its tab.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	if os.Geteuid() == 0 {
		// Chromium refuses to run as root inside its sandbox.
		opts = append(opts, chromedp.NoSandbox)
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	// The first action starts the browser, tied to ctx rather than to the
	// deadline of one step.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	return ctx
}

// do runs steps in the tab within browserTimeout.
func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, browserTimeout)
	defer cancel()
	if err := chromedp.Do(sctx, steps...); err != nil {
		t.Fatalf("%s: %v\npage:\n%s", what, err, pageText(ctx))
	}
}

// eval returns the value of a JavaScript expression in the tab; a promise
// is awaited.
func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, browserTimeout)
	defer cancel()
	v, err := chromedp.Run(sctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

// waitJS waits until a JavaScript expression is true in the tab. It asks
// again and again rather than with one long poll in the page, which a
// navigation would end.
func waitJS(t *testing.T, ctx context.Context, what, js string) {
	t.Helper()
	expr := fmt.Sprintf(`(() => { try { return !!(%s); } catch (e) { return false; } })()`, js)
	deadline := time.Now().Add(browserTimeout)
	var lastErr error
	for {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		ok, err := chromedp.Run(sctx, chromedp.Evaluate[bool](expr))
		cancel()
		if err == nil && ok {
			return
		}
		lastErr = err
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s (last error: %v)\npage:\n%s", what, lastErr, pageText(ctx))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitText waits until the element of the CSS selector shows text.
func waitText(t *testing.T, ctx context.Context, selector, text string) {
	t.Helper()
	waitJS(t, ctx, fmt.Sprintf("%s to show %q", selector, text),
		fmt.Sprintf(`(() => { const e = document.querySelector(%s); return !!e && e.innerText.includes(%s); })()`,
			jsString(selector), jsString(text)))
}

// jsString quotes s as a JavaScript string.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// pageText is the text of the tab's page, for failure messages.
func pageText(ctx context.Context) string {
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	text, err := chromedp.Run(sctx, chromedp.Evaluate[string](`location.href + "\n" + document.body.innerText`))
	if err != nil {
		return "(unreadable: " + err.Error() + ")"
	}
	return text
}

// signInPage signs in through the login page, pressing Enter in the token
// field, and waits for the apps page.
func signInPage(t *testing.T, ctx context.Context, p *platform) {
	t.Helper()
	do(t, ctx, "open the dashboard", chromedp.Navigate(p.url+"/"))
	waitJS(t, ctx, "the login page", `location.pathname === "/login" && !!document.getElementById("token")`)
	do(t, ctx, "type the token", chromedp.SendKeys(chromedp.ID("token"), p.token+"\r"))
	waitJS(t, ctx, "the apps page", `location.pathname === "/" && document.body.dataset.appsRenderedMs !== undefined`)
}

// fitsWidth reports whether the page needs no horizontal scrolling.
const fitsWidth = `document.documentElement.scrollWidth <= window.innerWidth`

// sessionCookie returns the browser's session cookie.
func sessionCookie(t *testing.T, ctx context.Context) *network.Cookie {
	t.Helper()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range res.Cookies {
		if c.Name == "gantry_session" {
			return c
		}
	}
	t.Fatalf("no session cookie among %d cookies", len(res.Cookies))
	return nil
}

func TestBrowserSignInAndApps(t *testing.T) {
	t.Parallel()
	p := startPlatform(t)
	ctx := browser(t)
	const apps = 100
	for i := range apps {
		if _, err := p.c.CreateApp(t.Context(), fmt.Sprintf("app-%03d", i)); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("a wrong token is refused", func(t *testing.T) {
		do(t, ctx, "open the dashboard", chromedp.Navigate(p.url+"/apps/app-001"))
		waitJS(t, ctx, "the login page", `location.pathname === "/login" && !!document.getElementById("token")`)
		do(t, ctx, "type a wrong token", chromedp.SendKeys(chromedp.ID("token"), "gty_wrong\r"))
		waitText(t, ctx, "#login-msg", "the API token was rejected")
	})

	t.Run("sign in", func(t *testing.T) {
		signInPage(t, ctx, p)
		c := sessionCookie(t, ctx)
		if !c.HTTPOnly || c.SameSite != network.CookieSameSiteStrict || strings.Contains(c.Value, p.token) {
			t.Errorf("session cookie %+v: want HttpOnly, SameSite=Strict, no token", c)
		}
		if got := eval[string](t, ctx, `document.cookie`); got != "" {
			t.Errorf("scripts read the cookies %q", got)
		}
	})

	t.Run("the apps list", func(t *testing.T) {
		do(t, ctx, "open the apps page", chromedp.Navigate(p.url+"/"))
		waitJS(t, ctx, "the list", `document.body.dataset.appsRenderedMs !== undefined`)
		ms := eval[string](t, ctx, `document.body.dataset.appsRenderedMs`)
		t.Logf("apps page with %d apps: list drawn %s ms after the navigation started", apps, ms)
		if n := eval[int](t, ctx, `document.querySelectorAll("#apps tbody tr").length`); n != apps {
			t.Fatalf("%d rows, want %d", n, apps)
		}
		if href := eval[string](t, ctx, `document.querySelector("tr[data-app=app-042] a").getAttribute("href")`); href != "/apps/app-042" {
			t.Errorf("app-042 links to %q", href)
		}
		// The rows on screen fill in their state.
		waitText(t, ctx, "tr[data-app=app-000] .app-state", "no release")
		do(t, ctx, "filter", chromedp.SendKeys(chromedp.ID("filter"), "app-04"))
		waitJS(t, ctx, "ten rows", `[...document.querySelectorAll("#apps tbody tr")].filter(r => !r.hidden).length === 10`)
	})

	t.Run("keyboard", func(t *testing.T) {
		// From the filter field, Tab reaches the first app shown, with a
		// visible focus ring, and Enter opens it.
		do(t, ctx, "focus the filter", chromedp.Focus(chromedp.ID("filter")))
		do(t, ctx, "press Tab", chromedp.KeyEvent("\t"))
		waitJS(t, ctx, "app-040's link to have the focus", `document.activeElement.getAttribute("href") === "/apps/app-040"`)
		if style := eval[string](t, ctx, `getComputedStyle(document.activeElement).outlineStyle`); style == "none" {
			t.Error("the focused link has no outline")
		}
		do(t, ctx, "press Enter", chromedp.KeyEvent("\r"))
		waitJS(t, ctx, "app-040's page", `location.pathname === "/apps/app-040" && !!document.getElementById("processes")`)
	})

	t.Run("a change without the CSRF token is refused", func(t *testing.T) {
		create := `fetch("/v1/apps", {method: "POST", headers: {"Content-Type": "application/json"%s},
			body: JSON.stringify({name: %s})}).then(r => r.status)`
		if got := eval[int](t, ctx, fmt.Sprintf(create, "", `"csrf-probe"`)); got != http.StatusForbidden {
			t.Errorf("POST /v1/apps without the CSRF token: %d, want 403", got)
		}
		if _, err := p.c.GetApp(t.Context(), "csrf-probe"); err == nil {
			t.Error("the app was made without the CSRF token")
		}
		withToken := `fetch("/session").then(r => r.json()).then(s => ` +
			fmt.Sprintf(create, `, "Gantry-CSRF-Token": s.csrf_token`, `"csrf-ok"`) + `)`
		if got := eval[int](t, ctx, withToken); got != http.StatusCreated {
			t.Errorf("POST /v1/apps with the CSRF token: %d, want 201", got)
		}
		if _, err := p.c.GetApp(t.Context(), "csrf-ok"); err != nil {
			t.Errorf("the app made with the CSRF token: %v", err)
		}
	})

	t.Run("phone-sized screen", func(t *testing.T) {
		do(t, ctx, "a phone's screen", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile),
			chromedp.Navigate(p.url+"/"))
		waitJS(t, ctx, "the list", `document.body.dataset.appsRenderedMs !== undefined`)
		if !eval[bool](t, ctx, fitsWidth) {
			t.Errorf("the apps page is wider than the screen: %d > %d", eval[int](t, ctx, `document.documentElement.scrollWidth`),
				eval[int](t, ctx, `window.innerWidth`))
		}
		do(t, ctx, "back to a desktop screen", chromedp.ResetViewport())
	})

	t.Run("sign out", func(t *testing.T) {
		cookie := sessionCookie(t, ctx)
		do(t, ctx, "sign out", chromedp.Click(chromedp.ID("signout")))
		waitJS(t, ctx, "the login page", `location.pathname === "/login"`)
		resp, body := p.do(t, "GET", "/v1/apps", "", http.Header{"Cookie": {cookie.Name + "=" + cookie.Value}})
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("the signed-out session: %d %s, want 401", resp.StatusCode, body)
		}
		do(t, ctx, "open an app page", chromedp.Navigate(p.url+"/apps/app-001"))
		waitJS(t, ctx, "the login page", `location.pathname === "/login"`)
	})
}

// getURL returns the status of GET url, or 0 when it fails.
func getURL(url string) int {
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(url)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// TestBrowserAppPage follows an app's page while the app deploys on a real
// scheduler, host agent and Docker Engine: the deployment's live progress,
// live log lines, CPU and memory, config vars, domains, and scaling from
// the page, checked through the API.
func TestBrowserAppPage(t *testing.T) {
	t.Parallel()
	p := startPlatform(t)
	docker := testenv.Docker(t)
	image := testenv.BuildTestImage(t, docker, "testdata/app")
	p.startLayer0(t, docker)
	ctx := browser(t)
	api := p.c
	if _, err := api.CreateApp(t.Context(), "demo"); err != nil {
		t.Fatal(err)
	}
	// HOLD=1: the new job's health check fails until the test lets it pass.
	if _, err := api.UpdateConfig(t.Context(), "demo", map[string]*string{
		"HOLD": new("1"), "DATABASE_URL": new("postgres://u:hunter2@db/demo"),
	}); err != nil {
		t.Fatal(err)
	}
	signInPage(t, ctx, p)
	do(t, ctx, "open the app page", chromedp.Navigate(p.url+"/apps/demo"))
	waitText(t, ctx, "#deploys-body", "No deployment yet")
	waitText(t, ctx, "#processes-body", "No release yet")

	// The page notices the deployment and follows its progress.
	if _, _, err := api.CreateReleaseDeployment(t.Context(), "demo", types.ReleaseRequest{Image: image,
		Processes: map[string]types.Process{"web": {Command: "serve", HealthPath: "/healthz"}}}); err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, "#deploy-list", "Deploying v1 (one-by-one): web 0/1")
	waitJS(t, ctx, "a progress bar", `document.querySelector('#deploy-list progress[max="1"]').value === 0`)
	waitText(t, ctx, "#log", "app[web.1]: tick")
	var job types.Job
	waitFor(t, "web.1 to start", func() bool {
		jobs, err := api.ListJobs(t.Context(), "demo")
		if err != nil || len(jobs) != 1 || jobs[0].Addr == "" {
			return false
		}
		job = jobs[0]
		return true
	})
	waitFor(t, "web.1 to answer", func() bool { return getURL("http://"+job.Addr+"/ready") == http.StatusOK })
	waitText(t, ctx, "#deploy-list", "Deployed v1")
	waitText(t, ctx, "#current-release", "Release v1")
	waitText(t, ctx, `tr[data-release="1"]`, "current")

	t.Run("live log lines", func(t *testing.T) {
		last := `Math.max(0, ...[...document.querySelectorAll("#log div")].map(d => +(d.innerText.match(/app\[web\.1\]: tick (\d+)$/) || [0, 0])[1]))`
		seen := eval[int](t, ctx, last)
		waitJS(t, ctx, "a newer log line", fmt.Sprintf("%s > %d", last, seen+2))
	})

	t.Run("CPU and memory", func(t *testing.T) {
		waitJS(t, ctx, "web.1's CPU and memory", `(() => { const r = document.querySelector("#jobs tr[data-job]");
			return r.querySelector(".job-cpu").innerText.endsWith("%") && /iB/.test(r.querySelector(".job-mem").innerText); })()`)
	})

	t.Run("config vars hidden until revealed", func(t *testing.T) {
		waitText(t, ctx, "#config-list", "DATABASE_URL")
		if strings.Contains(pageText(ctx), "hunter2") {
			t.Fatal("the page shows a config var's value before it is revealed")
		}
		do(t, ctx, "reveal DATABASE_URL", chromedp.Click(chromedp.CSS(`button[aria-label="Reveal DATABASE_URL"]`)))
		waitText(t, ctx, "tr[data-var=DATABASE_URL]", "postgres://u:hunter2@db/demo")
	})

	t.Run("domains and metrics", func(t *testing.T) {
		waitText(t, ctx, "#domain-list", "demo.localhost")
		waitText(t, ctx, "#domain-list", "router's default")
		// No request went through a router: the charts have no data.
		waitText(t, ctx, "#metrics", "No data yet")
	})

	t.Run("scale", func(t *testing.T) {
		do(t, ctx, "scale web to 2",
			chromedp.SetValue(chromedp.ID("scale-web"), "2"),
			chromedp.Click(chromedp.CSS(`#scale button[type=submit]`)))
		waitText(t, ctx, "#scale-msg", "Scaled: web=2")
		f, err := api.GetFormation(t.Context(), "demo")
		if err != nil {
			t.Fatal(err)
		}
		if f.Processes["web"] != 2 {
			t.Fatalf("formation %+v, want web=2", f.Processes)
		}
		var second types.Job
		waitFor(t, "web.2 to start", func() bool {
			jobs, err := api.ListJobs(t.Context(), "demo")
			if err != nil {
				t.Fatal(err)
			}
			for _, j := range jobs {
				if j.Index == 2 && j.Addr != "" {
					second = j
					return true
				}
			}
			return false
		})
		waitFor(t, "web.2 to answer", func() bool { return getURL("http://"+second.Addr+"/ready") == http.StatusOK })
		waitJS(t, ctx, "two jobs up in the page", `document.querySelectorAll("#jobs tr[data-job] .state.up").length === 2`)
	})

	t.Run("rollback", func(t *testing.T) {
		// v2 runs without HOLD; rolling back to v1 brings it back.
		if _, err := api.UpdateConfig(t.Context(), "demo", map[string]*string{"HOLD": nil}); err != nil {
			t.Fatal(err)
		}
		waitText(t, ctx, "#deploy-list", "Deployed v2")
		waitText(t, ctx, `tr[data-release="2"]`, "current")
		do(t, ctx, "roll back to v1", chromedp.Click(chromedp.CSS(`button[aria-label="Roll back to v1"]`)))
		do(t, ctx, "confirm", chromedp.Click(chromedp.CSS(`tr[data-release="1"] button.danger`)))
		waitText(t, ctx, "#rollback-msg", "Made v3 from v1")
		waitText(t, ctx, "#deploy-list", "Deploying v3")
		// v3 has v1's HOLD=1: let its jobs pass their health checks.
		waitFor(t, "v3's jobs to be up", func() bool {
			jobs, err := api.ListJobs(t.Context(), "demo")
			if err != nil {
				t.Fatal(err)
			}
			up := 0
			for _, j := range jobs {
				if j.Release == 3 && j.Addr != "" {
					getURL("http://" + j.Addr + "/ready")
				}
				if j.Release == 3 && j.State == types.JobUp {
					up++
				}
			}
			return up == 2
		})
		waitText(t, ctx, "#deploy-list", "Deployed v3")
		waitText(t, ctx, `tr[data-release="3"]`, "current")
	})

	t.Run("hosts page", func(t *testing.T) {
		// The host "spare" was drained and its agent is gone: it is down.
		flag := keyspace.MustNew(p.cluster).HostFlag("spare")
		pctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		b, err := json.Marshal(keyspace.HostFlags{Drain: true, DrainedAt: time.Now().UTC()})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.etcd.Put(pctx, flag, string(b)); err != nil {
			t.Fatal(err)
		}
		do(t, ctx, "open the hosts page", chromedp.Navigate(p.url+"/hosts"))
		// The host runs demo's two jobs, is up, and its agent reports its
		// CPU, memory and disks.
		waitJS(t, ctx, "a host with its state, jobs and usage", `(() => {
			const tr = document.querySelector('#hosts tbody tr:not([data-host=spare])');
			return !!tr && tr.cells[1].innerText.trim() === 'up' && tr.cells[5].innerText.trim() === '2' &&
				/cores/.test(tr.cells[2].innerText) && /iB/.test(tr.cells[4].innerText);
		})()`)
		if got := eval[string](t, ctx, `document.querySelector('#hosts tr[data-host=spare] .state').className + ': ' + document.querySelector('#hosts tr[data-host=spare] .state').innerText`); got != "state down: down" {
			t.Errorf("the state of spare is %q, want down", got)
		}
		if _, err := p.etcd.Delete(pctx, flag); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("phone-sized screen", func(t *testing.T) {
		do(t, ctx, "a phone's screen", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
		if !eval[bool](t, ctx, fitsWidth) {
			t.Errorf("the app page is wider than the screen: %d > %d", eval[int](t, ctx, `document.documentElement.scrollWidth`),
				eval[int](t, ctx, `window.innerWidth`))
		}
		do(t, ctx, "back to a desktop screen", chromedp.ResetViewport())
	})

	if *screenshot != "" {
		waitJS(t, ctx, "the usage of both jobs", `[...document.querySelectorAll("#jobs .job-mem")].every(e => /iB/.test(e.innerText))`)
		do(t, ctx, "a desktop's screen", chromedp.EmulateViewport(1280, 900))
		if strings.Contains(pageText(ctx), "hunter2") {
			t.Fatal("a config var's value is on the page")
		}
		png := fullScreenshot(t, ctx)
		if err := os.WriteFile(*screenshot, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", *screenshot)
	}
}

// fullScreenshot takes a screenshot of the whole page.
func fullScreenshot(t *testing.T, ctx context.Context) []byte {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, browserTimeout)
	defer cancel()
	png, err := chromedp.Run(sctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	return png
}
