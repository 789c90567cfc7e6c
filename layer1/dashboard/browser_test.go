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
