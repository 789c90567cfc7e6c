package cli

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	urfave "github.com/urfave/cli/v2"

	"github.com/gantryhq/gantry/layer1/controller/types"
)

func (r *runner) metricsCommand() *urfave.Command {
	return &urfave.Command{
		Name:  "metrics",
		Usage: "show an app's request rate, errors, latency, CPU and memory",
		Description: "Prints each of the app's key series with its latest value and a sparkline\n" +
			"of the span: the request rate, the 5xx rate and the latency percentiles\n" +
			"the routers measured, and CPU and resident memory per process type. The\n" +
			"platform keeps 10 s points for the last hour and minute means for the\n" +
			"last 24 h. --json prints the series.",
		Flags: []urfave.Flag{
			clusterFlag(), appFlag(), jsonFlag(),
			&urfave.StringFlag{Name: "since", Value: "1h", Usage: "the span to show, `DURATION` from 1m to 24h"},
		},
		Action: r.metrics,
	}
}

func (r *runner) metrics(c *urfave.Context) error {
	if err := checkArgs(c, 0, 0); err != nil {
		return err
	}
	since, err := time.ParseDuration(c.String("since"))
	if err != nil || since < time.Minute || since > 24*time.Hour {
		return usagef(c, "--since %q: want a duration from 1m to 24h, e.g. 1h or 30m", c.String("since"))
	}
	app, err := r.app(c)
	if err != nil {
		return err
	}
	cl, err := r.client(c)
	if err != nil {
		return err
	}
	m, err := cl.AppMetrics(c.Context, app, since.String())
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return writeJSON(r.stdout, m)
	}
	fmt.Fprintf(r.stdout, "=== %s: last %s, %s steps\n", printable(m.App), formatSpan(since), formatSpan(parseStep(m.Step)))
	if len(m.Series) == 0 {
		fmt.Fprintln(r.stdout, "No figures yet: the platform reads them every 10 s")
		return nil
	}
	end := r.now()
	tw := newTable(r.stdout)
	for _, s := range orderSeries(m.Series) {
		name := metricLabel(s.Name)
		if s.Type != "" {
			name = printable(s.Type) + " " + name
		}
		latest := "-"
		if n := len(s.Points); n > 0 {
			latest = formatMetric(s.Name, s.Points[n-1].Value)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", name, latest, sparkline(s.Points, end.Add(-since), end, sparkWidth))
	}
	return tw.Flush()
}

// sparkWidth is the number of columns of a sparkline.
const sparkWidth = 40

// orderSeries puts the app's figures first (requests, errors, latency),
// then each process type's CPU and memory.
func orderSeries(series []types.MetricSeries) []types.MetricSeries {
	rank := map[string]int{types.MetricRequests: 0, types.MetricErrors: 1, types.MetricP50: 2, types.MetricP95: 3,
		types.MetricP99: 4, types.MetricCPU: 5, types.MetricMemory: 6}
	r := func(name string) int {
		if v, ok := rank[name]; ok {
			return v
		}
		return len(rank)
	}
	out := slices.Clone(series)
	slices.SortStableFunc(out, func(a, b types.MetricSeries) int {
		return cmp.Or(cmp.Compare(a.Type, b.Type), cmp.Compare(r(a.Name), r(b.Name)), cmp.Compare(a.Name, b.Name))
	})
	return out
}

func metricLabel(name string) string {
	switch name {
	case types.MetricRequests:
		return "requests"
	case types.MetricErrors:
		return "5xx errors"
	case types.MetricP50:
		return "latency p50"
	case types.MetricP95:
		return "latency p95"
	case types.MetricP99:
		return "latency p99"
	case types.MetricCPU:
		return "cpu"
	case types.MetricMemory:
		return "memory"
	}
	return printable(name)
}

// formatMetric prints a value in the unit of its series.
func formatMetric(name string, v float64) string {
	switch name {
	case types.MetricRequests, types.MetricErrors:
		return strconv.FormatFloat(v, 'f', 1, 64) + "/s"
	case types.MetricP50, types.MetricP95, types.MetricP99:
		return formatSeconds(v)
	case types.MetricCPU:
		return strconv.FormatFloat(v*100, 'f', 0, 64) + "%"
	case types.MetricMemory:
		return formatBytes(uint64(math.Max(v, 0)))
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

func formatSeconds(v float64) string {
	switch {
	case v < 0.001:
		return strconv.FormatFloat(v*1e6, 'f', 0, 64) + " µs"
	case v < 1:
		return strconv.FormatFloat(v*1e3, 'f', 0, 64) + " ms"
	}
	return strconv.FormatFloat(v, 'f', 2, 64) + " s"
}

// formatSpan prints whole hours and minutes without their zero parts:
// 1h, 30m, 10s, 1h30m.
func formatSpan(d time.Duration) string {
	switch {
	case d > 0 && d%time.Hour == 0:
		return strconv.Itoa(int(d/time.Hour)) + "h"
	case d > 0 && d%time.Minute == 0:
		return strings.TrimSuffix(d.String(), "0s")
	}
	return d.String()
}

func parseStep(s string) time.Duration {
	d, _ := time.ParseDuration(s)
	return d
}

// sparkline draws points between from and to in width columns of block
// characters, each column the highest value that falls in it, scaled from
// zero to the highest value of all; a column without points is a space.
func sparkline(points []types.MetricPoint, from, to time.Time, width int) string {
	const blocks = "▁▂▃▄▅▆▇█"
	cols := make([]float64, width)
	have := make([]bool, width)
	span := to.Sub(from)
	top := 0.0
	for _, p := range points {
		if p.Time.Before(from) || p.Time.After(to) || span <= 0 {
			continue
		}
		i := min(int(float64(width)*float64(p.Time.Sub(from))/float64(span)), width-1)
		if !have[i] || p.Value > cols[i] {
			cols[i], have[i] = p.Value, true
		}
		top = math.Max(top, p.Value)
	}
	levels := []rune(blocks)
	var b strings.Builder
	for i := range cols {
		switch {
		case !have[i]:
			b.WriteByte(' ')
		case top <= 0:
			b.WriteRune(levels[0])
		default:
			b.WriteRune(levels[min(int(cols[i]/top*float64(len(levels)-1)+0.5), len(levels)-1)])
		}
	}
	return strings.TrimRight(b.String(), " ")
}
