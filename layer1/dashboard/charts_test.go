package dashboard_test

import (
	"encoding/json"
	"math"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/chromedp"
)

// metricsAnswer is the body of GET /v1/apps/{app}/metrics?since=... as
// docs/API.md gives it.
type metricsAnswer struct {
	App    string         `json:"app"`
	Since  string         `json:"since"`
	Step   string         `json:"step"`
	Series []metricSeries `json:"series"`
}

type metricSeries struct {
	Name   string        `json:"name"`
	Type   string        `json:"type"`
	Points []metricPoint `json:"points"`
}

type metricPoint struct {
	T time.Time `json:"t"`
	V float64   `json:"v"`
}

// fakeMetrics makes the series of the last hour (10 s steps) or day (1 min
// steps), ending now; with empty, the series have no points.
func fakeMetrics(app, since string, empty bool) metricsAnswer {
	step, n := 10*time.Second, 360
	if since == "24h" {
		step, n = time.Minute, 1440
	}
	now := time.Now().UTC().Truncate(step)
	series := func(name, typ string, f func(i int) float64) metricSeries {
		s := metricSeries{Name: name, Type: typ, Points: []metricPoint{}}
		for i := 0; i < n && !empty; i++ {
			s.Points = append(s.Points, metricPoint{T: now.Add(time.Duration(i-n+1) * step), V: f(i)})
		}
		return s
	}
	wave := func(base, amp float64) func(int) float64 {
		return func(i int) float64 { return base + amp*math.Sin(float64(i)/20) }
	}
	return metricsAnswer{App: app, Since: since, Step: step.String(), Series: []metricSeries{
		series("requests_per_second", "", wave(12, 4)),
		series("errors_5xx_per_second", "", wave(0.2, 0.2)),
		series("latency_p50_seconds", "", wave(0.012, 0.004)),
		series("latency_p95_seconds", "", wave(0.045, 0.01)),
		series("latency_p99_seconds", "", wave(0.12, 0.03)),
		series("cpu_cores", "web", wave(0.3, 0.1)),
		series("memory_bytes", "web", wave(60<<20, 4<<20)),
	}}
}

// TestBrowserMetricsCharts draws the charts of the app page from answers of
// the metrics endpoint in the format of docs/API.md. Chromium's request
// interception answers for the apps "charts" (points) and "empty" (series
// without points); the requests for any other app go on to the controller.
func TestBrowserMetricsCharts(t *testing.T) {
	t.Parallel()
	p := startPlatform(t)
	ctx := browser(t)
	for _, app := range []string{"charts", "empty", "other"} {
		if _, err := p.c.CreateApp(t.Context(), app); err != nil {
			t.Fatal(err)
		}
	}
	paused := chromedp.Events(ctx, fetch.RequestPaused)
	if _, err := chromedp.Call(ctx, fetch.Enable, fetch.EnableParams{
		Patterns: []*fetch.RequestPattern{{URLPattern: "*/v1/apps/*/metrics?*"}},
	}); err != nil {
		t.Fatal(err)
	}
	go func() {
		for ev, err := range paused {
			if err != nil {
				return
			}
			u, _ := url.Parse(ev.Request.URL)
			app := strings.Split(u.Path, "/")[3]
			if app != "charts" && app != "empty" {
				_, _ = chromedp.Call(ctx, fetch.ContinueRequest, fetch.ContinueRequestParams{RequestID: ev.RequestID})
				continue
			}
			body, _ := json.Marshal(fakeMetrics(app, u.Query().Get("since"), app == "empty"))
			_, _ = chromedp.Call(ctx, fetch.FulfillRequest, fetch.FulfillRequestParams{
				RequestID: ev.RequestID, ResponseCode: http.StatusOK, Body: body,
				ResponseHeaders: []*fetch.HeaderEntry{{Name: "Content-Type", Value: "application/json"}},
			})
		}
	}()
	signInPage(t, ctx, p)

	t.Run("request rate in the apps list", func(t *testing.T) {
		waitJS(t, ctx, "the rate of charts", `/^\d+(\.\d+)?$/.test(document.querySelector("tr[data-app=charts] .app-rate").innerText)`)
		waitText(t, ctx, "tr[data-app=other] .app-rate", "—")
	})

	t.Run("last hour and last day", func(t *testing.T) {
		do(t, ctx, "open the app page", chromedp.Navigate(p.url+"/apps/charts"))
		polylines := `[...document.querySelectorAll("#metrics figure")].map(f => f.querySelectorAll("polyline").length).join(",")`
		waitJS(t, ctx, "five charts", polylines+` === "1,1,3,1,1"`)
		points := `document.querySelector("#metrics polyline").getAttribute("points").split(" ").length`
		if n := eval[int](t, ctx, points); n != 360 {
			t.Errorf("the request chart of the last hour has %d points, want 360", n)
		}
		waitText(t, ctx, "#metrics", "p99")
		do(t, ctx, "show the last day", chromedp.Click(chromedp.CSS(`#metrics button[data-since="24h"]`)))
		waitJS(t, ctx, "the day's points", points+` === 1440`)
		if got := eval[string](t, ctx, `document.querySelector('#metrics button[data-since="24h"]').getAttribute("aria-pressed")`); got != "true" {
			t.Errorf("the Last day button is not pressed: %q", got)
		}
		waitText(t, ctx, "#metrics", "last day")
	})

	t.Run("no points", func(t *testing.T) {
		do(t, ctx, "open the app page", chromedp.Navigate(p.url+"/apps/empty"))
		waitJS(t, ctx, "five empty charts", `document.querySelectorAll("#metrics figure .nodata").length === 5`)
	})

	t.Run("no endpoint or no metrics", func(t *testing.T) {
		do(t, ctx, "open the app page", chromedp.Navigate(p.url+"/apps/other"))
		waitText(t, ctx, "#metrics", "No data yet")
	})
}
