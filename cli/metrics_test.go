package cli

import (
	"testing"
	"time"

	"github.com/gantryhq/gantry/layer1/controller/types"
)

func TestSparkline(t *testing.T) {
	from := testNow.Add(-time.Minute)
	pt := func(sec int, v float64) types.MetricPoint {
		return types.MetricPoint{Time: from.Add(time.Duration(sec) * time.Second), Value: v}
	}
	for _, tc := range []struct {
		name   string
		points []types.MetricPoint
		width  int
		want   string
	}{
		{"no points", nil, 6, ""},
		{"zeros are the lowest block", []types.MetricPoint{pt(0, 0), pt(59, 0)}, 6, "▁    ▁"},
		{"scaled to the highest", []types.MetricPoint{pt(0, 0), pt(10, 1), pt(20, 2), pt(30, 4), pt(40, 6), pt(50, 8)}, 6, "▁▂▃▅▆█"},
		{"the highest of a column", []types.MetricPoint{pt(0, 8), pt(5, 1), pt(59, 4)}, 2, "█▅"},
		{"gaps stay blank, trailing ones cut", []types.MetricPoint{pt(0, 1), pt(30, 1)}, 6, "█  █"},
		{"points outside the span are left out", []types.MetricPoint{pt(-10, 100), pt(0, 1), pt(70, 100)}, 3, "█"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := sparkline(tc.points, from, testNow, tc.width); got != tc.want {
				t.Errorf("sparkline = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestFormatMetric(t *testing.T) {
	for _, tc := range []struct {
		name string
		v    float64
		want string
	}{
		{types.MetricRequests, 12.345, "12.3/s"},
		{types.MetricErrors, 0, "0.0/s"},
		{types.MetricP50, 0.0004, "400 µs"},
		{types.MetricP95, 0.0123, "12 ms"},
		{types.MetricP99, 2.5, "2.50 s"},
		{types.MetricCPU, 0.523, "52%"},
		{types.MetricMemory, 48 << 20, "48 MiB"},
		{"other", 1234567, "1.23e+06"},
	} {
		t.Run(tc.name+"/"+tc.want, func(t *testing.T) {
			if got := formatMetric(tc.name, tc.v); got != tc.want {
				t.Errorf("formatMetric(%s, %v) = %q, want %q", tc.name, tc.v, got, tc.want)
			}
		})
	}
}
