package metricstore

import (
	"bytes"
	"errors"
	"math"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)

func TestQuery(t *testing.T) {
	k := Key{App: "web1", Name: "requests"}
	for _, tc := range []struct {
		name  string
		add   func(s *Store)
		now   time.Time
		since time.Duration
		want  []Point
	}{
		{"empty", func(*Store) {}, t0, time.Hour, nil},
		{"10 s points of the last minute", func(s *Store) {
			for i := range 12 {
				s.Add(k, t0.Add(time.Duration(i)*10*time.Second), float64(i))
			}
		}, t0.Add(115 * time.Second), time.Minute, []Point{
			{t0.Add(60 * time.Second), 6}, {t0.Add(70 * time.Second), 7}, {t0.Add(80 * time.Second), 8},
			{t0.Add(90 * time.Second), 9}, {t0.Add(100 * time.Second), 10}, {t0.Add(110 * time.Second), 11},
		}},
		{"a later value replaces its slot", func(s *Store) {
			s.Add(k, t0, 1)
			s.Add(k, t0.Add(5*time.Second), 2)
		}, t0.Add(5 * time.Second), time.Minute, []Point{{t0, 2}}},
		{"gaps stay gaps", func(s *Store) {
			s.Add(k, t0, 1)
			s.Add(k, t0.Add(30*time.Second), 4)
		}, t0.Add(30 * time.Second), time.Minute, []Point{{t0, 1}, {t0.Add(30 * time.Second), 4}}},
		{"an hour ago is overwritten by now", func(s *Store) {
			s.Add(k, t0, 1)
			s.Add(k, t0.Add(time.Hour), 9)
		}, t0.Add(time.Hour), time.Hour, []Point{{t0.Add(time.Hour), 9}}},
		{"minute means beyond an hour", func(s *Store) {
			for i := range 18 { // three minutes of 10 s points: 0..5, 6..11, 12..17
				s.Add(k, t0.Add(time.Duration(i)*10*time.Second), float64(i))
			}
		}, t0.Add(3 * time.Minute), 2 * time.Hour, []Point{{t0, 2.5}, {t0.Add(time.Minute), 8.5}, {t0.Add(2 * time.Minute), 14.5}}},
		{"a day at most", func(s *Store) {
			s.Add(k, t0, 1)
			s.Add(k, t0.Add(25*time.Hour), 2)
		}, t0.Add(25 * time.Hour), 48 * time.Hour, []Point{{t0.Add(25 * time.Hour), 2}}},
		{"NaN and infinities are not values", func(s *Store) {
			s.Add(k, t0, math.NaN())
			s.Add(k, t0.Add(10*time.Second), math.Inf(1))
		}, t0.Add(10 * time.Second), time.Minute, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(0)
			tc.add(s)
			got := s.Query(k, tc.since, tc.now)
			if len(got) != len(tc.want) {
				t.Fatalf("Query = %v, want %v", got, tc.want)
			}
			for i := range got {
				if !got[i].Time.Equal(tc.want[i].Time) || math.Abs(got[i].Value-tc.want[i].Value) > 1e-6 {
					t.Fatalf("Query = %v, want %v", got, tc.want)
				}
			}
		})
	}
}

func TestBounds(t *testing.T) {
	s := New(3)
	for i, app := range []string{"a", "b", "c"} {
		if err := s.Add(Key{App: app, Name: "cpu"}, t0, float64(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Add(Key{App: "d", Name: "cpu"}, t0, 1); !errors.Is(err, ErrTooManySeries) {
		t.Fatalf("a fourth series: %v, want ErrTooManySeries", err)
	}
	if err := s.Add(Key{App: "a", Name: "cpu"}, t0.Add(10*time.Second), 1); err != nil {
		t.Fatalf("an existing series: %v", err)
	}
	s.DeleteApp("a")
	if s.Len() != 2 || s.Keys("a") != nil {
		t.Fatalf("after DeleteApp: %d series, keys of a %v", s.Len(), s.Keys("a"))
	}
	s.Add(Key{App: "b", Name: "cpu"}, t0.Add(23*time.Hour), 1)
	s.Prune(t0.Add(24*time.Hour + time.Minute))
	if s.Len() != 1 || len(s.Keys("b")) != 1 {
		t.Fatalf("after Prune: %d series, keys of b %v", s.Len(), s.Keys("b"))
	}
}

func TestSaveLoad(t *testing.T) {
	s := New(0)
	k := Key{App: "web1", Type: "web", Name: "memory"}
	s.Add(k, t0, 1<<20)
	s.Add(Key{App: "web1", Name: "requests"}, t0, 3)
	var buf bytes.Buffer
	if err := s.Save(&buf); err != nil {
		t.Fatal(err)
	}
	t.Logf("a snapshot of 2 series: %d bytes", buf.Len())
	loaded := New(1)
	if err := loaded.Load(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	if loaded.Len() != 1 {
		t.Errorf("Load into a store of at most 1 series kept %d", loaded.Len())
	}
	all := New(0)
	if err := all.Load(&buf); err != nil {
		t.Fatal(err)
	}
	if got := all.Query(k, time.Minute, t0); len(got) != 1 || got[0].Value != 1<<20 {
		t.Errorf("after Load: %v", got)
	}
	if err := New(0).Load(bytes.NewReader([]byte("not gob"))); err == nil {
		t.Error("Load of garbage: no error")
	}
}

// BenchmarkAdd is one reading of 1,000 series, as the collector adds every
// 10 s for 100 apps.
func BenchmarkAdd(b *testing.B) {
	s := New(0)
	keys := make([]Key, 1000)
	for i := range keys {
		keys[i] = Key{App: string(rune('a'+i%26)) + string(rune('a'+i/26)), Name: "cpu", Type: "web"}
	}
	now := t0
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(FineStep)
		for _, k := range keys {
			s.Add(k, now, 1)
		}
	}
}
